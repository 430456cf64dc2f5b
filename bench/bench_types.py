#!/usr/bin/env python3
"""Benchmark (not a test): every GGUF type given, quantfs's cold read through a fresh mount
against llama.cpp's own llama-quantize from the same F16 GGUF, in one run on one machine,
plus hot-read and mmap ratios against a regular file of the same bytes.

  bench_types.py [--types Q4_K_M,Q6_K,...] [--gen "qfs-genmodel args"] [--threads 2]
                 [--imatrix] [--quantize PATH | --npm]

  per type   llama-quantize F16 -> TYPE (seconds), our cold read of the whole file with an
             empty cache (cat-like sequential 1 MiB reads, not hashed while timed) with the
             source's page cache dropped, the speed-up, the daemon's CPU seconds per wall
             second, MB/s of output, the daemon's anonymous RSS after the read, whether the
             files are byte-identical (ours hashed from a second read; with --imatrix all
             but the key quantize.imatrix.file, see content_digest); then the same cold
             read with the source safetensors already in the page cache
  then       for the last type: hot reads (page cache warm), an mmap page-touch of the
             whole file, and a read through a fresh mount from the filled disk cache with the
             page cache dropped, each against a regular file holding the same bytes

The reference is the llama-quantize CLI built natively by bench/build_llama_quantize.sh
(cached in the build directory), or with --npm (or when it cannot be built) the npm
library's llama_model_quantize; the output says which.  --imatrix: a synthetic importance
matrix (tests/ref/make_imatrix.py) given to both, which the IQ1/IQ2/IQ3 types need.
Default model: TinyLlama-1.1B shapes (qfs-genmodel --preset tinyllama-1.1b, 2.2 GB F16);
Llama-3-8B shapes: --gen "--preset llama3-8b" (16 GB: generated into the work directory and
removed afterwards unless --dir is given).  Needs root for drop_caches and the mount's
readahead (it still runs without)."""
import argparse
import hashlib
import mmap
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import qfstest as q  # noqa: E402

DEFAULT_TYPES = "Q4_K_M,Q5_K_M,Q6_K,Q3_K_M,Q2_K,IQ4_XS,Q8_0,Q4_0"


def daemon_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def daemon_rss_anon_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def content_digest(path, ignore_keys):
    """SHA-256 of a GGUF file's content but for some metadata keys: the other keys (name,
    value), the tensor infos (name, shape, type, offset in the data section) and the data
    section's bytes.  With an importance matrix the files differ by design in
    quantize.imatrix.file (we record the file's name, llama-quantize the path it was
    given), which also shifts the data section."""
    kv, tensors, start = q.gguf_header(path)
    h = hashlib.sha256()
    h.update(repr(sorted((k, repr(v)) for k, v in kv.items() if k not in ignore_keys)).encode())
    h.update(repr([(n, list(ne), ty, off - start) for n, ne, ty, off in tensors]).encode())
    with open(path, "rb") as f:
        f.seek(start)
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_sha(path, hash_it=True):
    """Read a whole file sequentially in 1 MiB reads (as cat does), hashing it unless
    hash_it is False (a timed read: on 2 cores the hash would take CPU from the daemon):
    (bytes, seconds, sha or None)."""
    h = hashlib.sha256() if hash_it else None
    n = 0
    buf = bytearray(1 << 20)
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            n += k
            if h:
                h.update(memoryview(buf)[:k])
    return n, time.perf_counter() - t, h.hexdigest() if h else None


def touch_mmap(path):
    """Fault every page of a shared read-only mapping in order: seconds."""
    t = time.perf_counter()
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        s = 0
        for off in range(0, len(m), 4096):
            s += m[off]
        m.close()
    return time.perf_counter() - t


def reference_tool(a):
    if not a.npm:
        path = a.quantize
        if not path:
            build = os.path.join(q.BUILD or ".", "llama-quantize")
            r = subprocess.run(["sh", os.path.join(HERE, "build_llama_quantize.sh"), build],
                               capture_output=True, text=True)
            path = r.stdout.strip().splitlines()[-1] if r.returncode == 0 and r.stdout.strip() else None
            if not path:
                print(f"(llama-quantize could not be built: {r.stderr.strip()[-300:]}; using the npm library)")
        if path and os.access(path, os.X_OK):
            return "llama-quantize CLI (llama.cpp of node-llama-cpp 3.22.1, native build)", \
                lambda f16, out, ty, im: [path] + (["--imatrix", im] if im else []) + \
                [f16, out, ty, str(a.threads)]
    q.need_llama()
    return "llama_model_quantize (npm libllama 3.22.1)", \
        lambda f16, out, ty, im: [q.LLAMA_REF, "quantize", f16, out, ty, str(a.threads)] + \
        ([im, os.path.basename(im)] if im else [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default=DEFAULT_TYPES)
    ap.add_argument("--gen", default="--preset tinyllama-1.1b --dtype f16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--imatrix", action="store_true")
    ap.add_argument("--quantize", default=None, help="a llama-quantize binary to use")
    ap.add_argument("--npm", action="store_true", help="use the npm library's llama_model_quantize")
    ap.add_argument("--dir", default=None, help="work directory, kept (default: a temp dir, removed)")
    a = ap.parse_args()
    q.need_fuse()
    tool, cmd = reference_tool(a)
    work = a.dir or q.tmpdir("bench-types")
    src = os.path.join(work, "src")
    model = os.path.join(src, "bench")
    try:
        if not os.path.exists(os.path.join(model, "config.json")):
            os.makedirs(src, exist_ok=True)
            q.genmodel(model, a.gen.split())
        f16 = os.path.join(work, "bench.F16.gguf")
        if not os.path.exists(f16):
            subprocess.run([os.path.join(q.BUILD, "tools", "qfs-convert"), model, "F16", f16], check=True)
        opts_extra, im = "", None
        if a.imatrix:
            im = os.path.join(work, "bench.imatrix.gguf")
            subprocess.run([sys.executable, os.path.join(HERE, "..", "tests", "ref", "make_imatrix.py"),
                            f16, im], check=True)
            opts_extra = f",imatrix=bench={im}"
        cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                             capture_output=True, text=True).stdout.strip()
        src_mb = sum(os.path.getsize(os.path.join(model, n)) for n in os.listdir(model)
                     if n.endswith(".safetensors")) / 1e6
        print(f"machine: {os.cpu_count()} cores, {cpu}")
        print(f"model: qfs-genmodel {a.gen} ({src_mb:.0f} MB of safetensors){' + synthetic imatrix' if im else ''}")
        print(f"reference: {tool}, {a.threads} threads, from the F16 GGUF")
        print()
        print("| type | llama-quantize | quantfs cold | speed-up | CPU s / wall s | MB/s | RSS anon | identical "
              "| cold, source cached | speed-up | CPU s / wall s |")
        print("|---|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|")
        cache = os.path.join(work, "cache")
        last = None
        for ty in a.types.split(","):
            out = os.path.join(work, f"ref.{ty}.gguf")
            t = time.perf_counter()
            r = subprocess.run(cmd(f16, out, ty, im), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, errors="replace")
            t_ref = time.perf_counter() - t
            if r.returncode:
                print(f"| {ty} | refused | | | | | | |")
                continue
            # with an imatrix: equal but for quantize.imatrix.file (see content_digest)
            ignore = ("quantize.imatrix.file",) if im else ()
            ref_sha = content_digest(out, ignore) if im else sha_file(out)
            os.unlink(out)
            runs = []
            # 1: the source on disk (page cache dropped); 2: the source already in the page
            # cache (a model just downloaded or read), the quantfs cache empty both times
            for source_cached in (False, True):
                shutil.rmtree(cache, ignore_errors=True)
                q.drop_caches()
                if source_cached:
                    for name in os.listdir(model):
                        if name.endswith(".safetensors"):
                            sha_file(os.path.join(model, name))
                with q.Mount(src, os.path.join(work, "mnt"), f"cache={cache}{opts_extra}") as m:
                    path = os.path.join(m.mnt, "bench", f"bench.{ty}.gguf")
                    if not os.path.exists(path):
                        break
                    pid = m.proc.pid
                    c0 = daemon_cpu(pid)
                    n, t_cold, _ = read_sha(path, hash_it=False)
                    cpu_s = daemon_cpu(pid) - c0
                    rss = daemon_rss_anon_mb(pid)
                    # the bytes served, from the cache
                    our_sha = content_digest(path, ignore) if im else read_sha(path)[2]
                runs.append((n, t_cold, cpu_s, rss, our_sha))
            if len(runs) < 2:
                print(f"| {ty} | {t_ref:.1f} s | not offered | | | | | | | | |")
                continue
            (n, t_cold, cpu_s, rss, sha1), (_, t_c2, cpu2, _, sha2) = runs
            same = ("yes" if not im else "yes*") if sha1 == ref_sha and sha2 == ref_sha else "NO"
            print(f"| {ty} | {t_ref:.1f} s | {t_cold:.2f} s | {t_ref / t_cold:.2f}x | {cpu_s / t_cold:.2f} | "
                  f"{n / 1e6 / t_cold:.0f} | {rss:.0f} MB | {same} | {t_c2:.2f} s | {t_ref / t_c2:.2f}x | "
                  f"{cpu2 / t_c2:.2f} |", flush=True)
            last = ty
        if im:
            print()
            print("yes*: identical but for the key quantize.imatrix.file (the imatrix file's name "
                  "against the path llama-quantize was given) and so the data section's offset")
        if last:
            reg = os.path.join(work, "regular.bin")
            with q.Mount(src, os.path.join(work, "mnt"), f"cache={cache}{opts_extra}") as m:
                path = os.path.join(m.mnt, "bench", f"bench.{last}.gguf")
                shutil.copyfile(path, reg)
                n, _, _ = read_sha(path)  # the page cache of both warm
                read_sha(reg)
                hot = min(q.read_all(path)[1] for _ in range(3))
                hot_reg = min(q.read_all(reg)[1] for _ in range(3))
                mm = min(touch_mmap(path) for _ in range(3))
                mm_reg = min(touch_mmap(reg) for _ in range(3))
            # A fresh mount over the filled cache with no page cache (a remount or a reboot):
            # every chunk read back from its disk entry and verified, against the regular
            # file read from disk
            disk, disk_reg = [], []
            for _ in range(2):
                q.drop_caches()
                with q.Mount(src, os.path.join(work, "mnt"), f"cache={cache}{opts_extra}") as m:
                    disk.append(read_sha(os.path.join(m.mnt, "bench", f"bench.{last}.gguf"),
                                         hash_it=False)[1])
                q.drop_caches()
                disk_reg.append(read_sha(reg, hash_it=False)[1])
            os.unlink(reg)
            print()
            print(f"hot read of {last} (page cache warm, 1 MiB reads): {n / 1e9 / hot:.2f} GB/s, regular file "
                  f"{n / 1e9 / hot_reg:.2f} GB/s: {hot_reg / hot:.2f}x of a regular file")
            print(f"mmap page-touch of {last}: {n / 1e9 / mm:.2f} GB/s, regular file {n / 1e9 / mm_reg:.2f} GB/s: "
                  f"{mm_reg / mm:.2f}x of a regular file")
            print(f"remount read of {last} (chunks from quantfs's disk cache, page cache dropped): "
                  f"{n / 1e9 / min(disk):.2f} GB/s, regular file from disk {n / 1e9 / min(disk_reg):.2f} GB/s: "
                  f"{min(disk_reg) / min(disk):.2f}x of a regular file")
    finally:
        if not a.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
