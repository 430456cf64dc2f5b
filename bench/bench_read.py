#!/usr/bin/env python3
"""Benchmark (not a test): reading a virtual GGUF file through the mount against
llama.cpp's own quantizer, measured in one run on one machine.

  cold   read the whole virtual TYPE file with an empty cache (every chunk quantized)
  ref    llama_model_quantize (npm libllama, THREADS threads) from the F16 GGUF of the
         same model (our F16 file, byte-identical to convert_hf_to_gguf.py's)
  warm   read it again after dropping the kernel page cache: served from quantfs's cache
  hot    read it again with the page cache warm (what a second llama.cpp run sees)
  file   the same reads of a regular file of the same size (dropped / page cache warm)

Usage: bench_read.py [--type Q8_0] [--hidden 2048 --layers 8 --ff 5632 --vocab 32000]
       bench_read.py --type Q4_K_M --layers 22 --heads 32 --kv-heads 4   (TinyLlama-1.1B shapes)
       bench_read.py --type Q4_K_M --gen "--preset qwen3-30b-a3b --layers 2"   (MoE shapes)
       bench_read.py --format fp8 --gen "--preset tinyllama-1.1b --dtype f16"
         (a format directory's model.safetensors: there is no reference tool for these
         on this machine, so only our cold read is timed; --imatrix adds a synthetic
         importance matrix, which W4A16 and GPTQ search scales with)
Needs root for drop_caches (skipped otherwise) and the npm reference (tests/setup-ref.sh).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import qfstest as q  # noqa: E402


def daemon_cpu(m):
    """User + system CPU seconds of the mount's daemon so far."""
    with open(f"/proc/{m.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_format(a, work, src, model):
    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    q.drop_caches()
    opts = f"cache={cache},formats={a.format}"
    if a.imatrix:
        # a synthetic importance matrix (tests/ref/make_imatrix.py) for the scale searches
        f16 = os.path.join(work, "bench.F16.gguf")
        im = os.path.join(work, "bench.imatrix.gguf")
        if not os.path.exists(f16):
            subprocess.run([os.path.join(q.BUILD, "tools", "qfs-convert"), model, "F16", f16], check=True)
        subprocess.run([sys.executable, os.path.join(os.path.dirname(os.path.abspath(q.__file__)), "ref", "make_imatrix.py"), f16, im], check=True)
        opts += f",imatrix=bench={im}"
    with q.Mount(src, os.path.join(work, "mnt"), opts) as m:
        root = os.path.join(m.mnt, "bench")
        d = [n for n in os.listdir(root)
             if n.startswith(f"bench.{a.format}") and os.path.isdir(os.path.join(root, n))]
        for name in sorted(d):
            path = os.path.join(m.mnt, "bench", name, "model.safetensors")
            c0 = daemon_cpu(m)
            n, t = q.read_all(path)
            cpu = daemon_cpu(m) - c0
            print(f"{name}/model.safetensors: {n / 1e6:.0f} MB, cold read {t:.2f} s, "
                  f"{n / 1e6 / t:.0f} MB/s, daemon CPU {cpu:.1f} s ({cpu / t:.2f} per wall second)")
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--type", default="Q8_0")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--ff", type=int, default=5632)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--heads", type=int, default=0, help="default hidden/64")
    ap.add_argument("--kv-heads", type=int, default=0, help="default hidden/256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--gen", default=None, help="qfs-genmodel arguments instead of the shape options")
    ap.add_argument("--format", default=None, help="read <model>.FORMAT/model.safetensors instead")
    ap.add_argument("--imatrix", action="store_true", help="with --format: a synthetic importance matrix")
    a = ap.parse_args()
    q.need_fuse()
    q.need_llama()
    work = a.dir or q.tmpdir("bench")
    src = os.path.join(work, "src")
    model = os.path.join(src, "bench")
    if not os.path.exists(os.path.join(model, "config.json")):
        os.makedirs(src, exist_ok=True)
        shape = a.gen.split() if a.gen else [
            "--hidden", str(a.hidden), "--layers", str(a.layers), "--heads",
            str(a.heads or a.hidden // 64), "--kv-heads", str(a.kv_heads or a.hidden // 256),
            "--ff", str(a.ff), "--vocab", str(a.vocab)]
        q.genmodel(model, shape)
    if a.format:
        return bench_format(a, work, src, model)
    f16 = os.path.join(work, "bench.F16.gguf")
    if not os.path.exists(f16):
        subprocess.run([os.path.join(q.BUILD, "tools", "qfs-convert"), model, "F16", f16], check=True)
    out = os.path.join(work, f"ref.{a.type}.gguf")
    t = time.perf_counter()
    subprocess.run([q.LLAMA_REF, "quantize", f16, out, a.type, str(a.threads)], check=True,
                   stdout=subprocess.DEVNULL)
    t_ref = time.perf_counter() - t
    size_ref = os.path.getsize(out)

    cache = os.path.join(work, "cache")
    shutil.rmtree(cache, ignore_errors=True)
    dropped = q.drop_caches()
    with q.Mount(src, os.path.join(work, "mnt"), f"cache={cache}") as m:
        path = os.path.join(m.mnt, "bench", f"bench.{a.type}.gguf")
        n, t_cold = q.read_all(path)
        q.drop_caches()
        _, t_warm = q.read_all(path)
        _, t_hot = q.read_all(path)
        st = m.status()
    # a regular file of the same size
    reg = os.path.join(work, "regular.bin")
    with open(reg, "wb") as f:
        f.truncate(0)
        chunk = os.urandom(1 << 20)
        left = n
        while left > 0:
            f.write(chunk[:min(left, len(chunk))])
            left -= len(chunk)
    q.drop_caches()
    _, t_reg_cold = q.read_all(reg)
    _, t_reg_hot = q.read_all(reg)
    os.unlink(reg)
    os.unlink(out)

    mb = n / 1e6
    src_mb = sum(os.path.getsize(os.path.join(model, n)) for n in os.listdir(model)
                 if n.endswith(".safetensors")) / 1e6
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    files = {f["name"]: f for mm in st["models"] for f in mm["files"]}
    print(f"machine: {os.cpu_count()} cores, {cpu}")
    with open(os.path.join(model, "config.json")) as f:
        c = json.load(f)
    experts = c.get("num_experts") or c.get("num_local_experts")
    print(f"model: {c['architectures'][0]}, hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, "
          f"ffn {c.get('moe_intermediate_size') if experts else c['intermediate_size']}"
          f"{f' x {experts} experts' if experts else ''}, vocab {c['vocab_size']}: "
          f"{src_mb:.0f} MB of safetensors; {a.type} file {mb:.0f} MB "
          f"(llama-quantize's: {size_ref / 1e6:.0f} MB)")
    print(f"chunks quantized on the cold read: {files[f'bench.{a.type}.gguf']['chunks_quantized']}")
    print(f"{'what':42} {'seconds':>8} {'MB/s':>8}")
    rows = [
        (f"llama_model_quantize F16 -> {a.type}, {a.threads} threads", t_ref),
        (f"cold read through the mount (empty cache)", t_cold),
        ("warm read, page cache dropped (quantfs cache)" if dropped else "warm read (page cache not dropped)", t_warm),
        ("hot read (page cache)", t_hot),
        ("regular file, page cache dropped" if dropped else "regular file", t_reg_cold),
        ("regular file, page cache warm", t_reg_hot),
    ]
    for name, s in rows:
        print(f"{name:42} {s:8.3f} {mb / s:8.0f}")
    print(f"ratio cold read / llama_model_quantize: {t_cold / t_ref:.2f} "
          f"({'faster' if t_cold < t_ref else 'slower'} than llama-quantize: {t_ref / t_cold:.2f}x its speed)")
    print(f"ratio warm read / regular file read (dropped caches): {t_warm / t_reg_cold:.2f}")
    print(f"ratio hot read / regular file read (page cache): {t_hot / t_reg_hot:.2f}")
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
