#!/usr/bin/env python3
"""Quality table: perplexity of every virtual GGUF file of a model, read through the mount,
with llama.cpp (npm libllama via tests/ref/qfs-llama-ref, llama-perplexity's method).

  bench/quality.py [--model DIR] [--chunks 400] [--ctx 256] [--imatrix FILE] [--markdown]

Default model: ../shared/models/tinyllama-256 on ../shared/models/eval/heldout.txt.
Prints: type, bits per weight, file size, perplexity, delta vs F16."""
import argparse
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import qfstest as q  # noqa: E402


def bpw(path):
    kv, tensors, start = q.gguf_header(path)
    n = 0
    for _, ne, _, _ in tensors:
        e = 1
        for x in ne:
            e *= x
        n += e
    return (os.path.getsize(path) - start) * 8 / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(q.SHARED, "models", "tinyllama-256"))
    ap.add_argument("--text", default=os.path.join(q.SHARED, "models", "eval", "heldout.txt"))
    ap.add_argument("--chunks", type=int, default=400)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--imatrix", default=None, help="importance matrix for the model")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    q.need_fuse()
    q.need_llama()
    t = q.tmpdir("quality")
    src = os.path.join(t, "src")
    os.makedirs(src)
    name = os.path.basename(os.path.abspath(a.model))
    shutil.copytree(os.path.abspath(a.model), os.path.join(src, name))  # symlinks out of SOURCE are not followed
    opts = f"cache={t}/cache"
    if a.imatrix:
        opts += f",imatrix={name}={os.path.abspath(a.imatrix)}"
    rows = []
    with q.Mount(src, os.path.join(t, "mnt"), opts) as m:
        d = os.path.join(m.mnt, name)
        files = sorted((n for n in os.listdir(d) if n.endswith(".gguf")),
                       key=lambda n: -os.path.getsize(os.path.join(d, n)))
        for n in files:
            path = os.path.join(d, n)
            r = subprocess.run([q.LLAMA_REF, "perplexity", path, a.text, str(a.ctx), str(a.chunks),
                                str(a.threads)], capture_output=True, text=True)
            mm = re.search(r"ppl: ([0-9.]+)", r.stdout)
            ppl = float(mm.group(1)) if mm else float("nan")
            rows.append((n[len(name) + 1:-5], bpw(path), os.path.getsize(path), ppl))
            print(f"  {rows[-1][0]}: {ppl:.4f}", file=sys.stderr, flush=True)
    f16 = next((r[3] for r in rows if r[0] == "F16"), float("nan"))
    print(f"{name}, {a.chunks} windows of {a.ctx} tokens of {os.path.basename(a.text)}"
          + (f", imatrix {os.path.basename(a.imatrix)}" if a.imatrix else ""))
    print()
    print("| type | bits/weight | file size (bytes) | perplexity | Δ vs F16 |")
    print("|---|---:|---:|---:|---:|")
    for ty, b, size, ppl in rows:
        print(f"| {ty} | {b:.2f} | {size} | {ppl:.4f} | {ppl - f16:+.4f} |")


if __name__ == "__main__":
    main()
