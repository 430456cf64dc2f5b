#!/usr/bin/env python3
"""Benchmark (not a test): reading whole virtual GGUF files through the mount with
-o device=cuda against -o device=cpu, cold (empty chunk cache, page cache dropped).

The source is a synthetic model of Llama-3-8B shapes made by qfs-genmodel (hidden 4096,
32 layers, ffn 14336, vocab 128256, heads 32, kv heads 8; F16 or BF16): about 16 GB with
32 layers, so --layers makes it smaller (--layers 2 is ~2.9 GB: embeddings dominate).
For each TYPE (default Q4_K_M and Q8_0) and each device it mounts with cache=none (a
fresh memory cache), drops the page cache (root; otherwise a warning: the source then
comes from the page cache), reads the file sequentially, and reports seconds, the output
GB/s and the source GB/s consumed (safetensors bytes / seconds), plus the status file's
device and gpu counters.  Without a usable GPU the cuda run says so (the mount falls back
to the CPU) and the ratio is meaningless.

Usage: bench_gpu.py [--layers 32] [--types Q4_K_M,Q8_0] [--devices cuda,cpu]
                    [--dtype bf16] [--dir WORK] [--gpu-mem 2G] [--keep]
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import qfstest as q  # noqa: E402


def src_bytes(model):
    return sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model)
               if f.endswith(".safetensors"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--ff", type=int, default=14336)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--dtype", default="bf16", choices=["f16", "bf16"])
    ap.add_argument("--types", default="Q4_K_M,Q8_0")
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--gpu-mem", default="2G")
    ap.add_argument("--extra", default="", help="more -o options, comma-separated")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the generated model")
    a = ap.parse_args()
    q.need_fuse()
    work = a.dir or q.tmpdir("bench-gpu")
    src = os.path.join(work, "src")
    name = f"llama3-{a.layers}l"
    model = os.path.join(src, name)
    if not os.path.exists(os.path.join(model, "config.json")):
        os.makedirs(src, exist_ok=True)
        t = time.perf_counter()
        subprocess.run([q.GENMODEL, "--out", model, "--hidden", str(a.hidden), "--layers", str(a.layers),
                        "--heads", str(a.heads), "--kv-heads", str(a.kv_heads), "--ff", str(a.ff),
                        "--vocab", str(a.vocab), "--dtype", a.dtype, "--seed", "3"],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"generated {model} in {time.perf_counter() - t:.1f} s")
    sb = src_bytes(model)
    print(f"source: {sb / 1e9:.2f} GB of {a.dtype.upper()} ({a.layers} layers)")
    dropped = q.drop_caches()
    if not dropped:
        print("warning: cannot drop the page cache (not root): source reads are not cold")
    results = {}
    for ty in a.types.split(","):
        for dev in a.devices.split(","):
            mnt = os.path.join(work, f"mnt-{dev}-{ty}")
            opts = f"cache=none,device={dev},gpu_mem={a.gpu_mem}" + (f",{a.extra}" if a.extra else "")
            with q.Mount(src, mnt, opts) as m:
                q.drop_caches()
                path = os.path.join(m.mnt, name, f"{name}.{ty}.gguf")
                n, secs = q.read_all(path, 4 << 20)
                st = m.status()
                gpu = st.get("gpu", {})
                results[(ty, dev)] = secs
                print(f"{ty:7s} device={dev:5s} [{st.get('device')}] {n / 1e9:6.2f} GB in {secs:7.2f} s: "
                      f"out {n / secs / 1e9:5.2f} GB/s, source {sb / secs / 1e9:5.2f} GB/s; "
                      f"gpu_chunks {gpu.get('gpu_chunks')} cpu_chunks {gpu.get('cpu_chunks')} "
                      f"fallbacks {gpu.get('fallbacks')}" +
                      (f"; note: {st['device_note']}" if st.get("device_note") else ""))
                sys.stdout.flush()
        if (ty, "cuda") in results and (ty, "cpu") in results:
            print(f"{ty}: cuda {results[(ty, 'cpu')] / results[(ty, 'cuda')]:.2f}x the CPU's speed")
    if not a.keep and not a.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
