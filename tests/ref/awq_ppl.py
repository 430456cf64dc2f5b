#!/usr/bin/env python3
"""Perplexity of tinyllama-256 through our AWQ output, measured by llama.cpp.

For each variant (round-to-nearest and activation-aware with llama.cpp's importance matrix,
group sizes 128 and 64) the AWQ file is produced with the codec's produce path
(`test_awq dump`), dequantized HERE (written from the format description: nibble i of word
c is output column 8c + [0,2,4,6,1,3,5,7][i]; w = (q - zero) * scale) into an F16
safetensors model directory (the folded norms come from the AWQ file itself; config and
tokenizer files copied from the source), every directory is mounted with quantfs, and
llama.cpp evaluates each one's F16 GGUF (qfs-llama-ref perplexity FILE heldout.txt 256
CHUNKS 2).  The source's own F16 GGUF is the baseline.  Checks: the mounted
<model>.awq.safetensors equals the dumped bytes (RTN, default group 128); every AWQ
perplexity is finite and within 10% of F16; activation-aware is not worse than RTN at
each group size.  QFS_PPL_CHUNKS (default 100) windows of 256 tokens.
Standard library only.
"""
import array
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

MODEL = "tinyllama-256"
DUMP = os.path.join(q.BUILD, "tests", "codecs", "test_awq")
ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # output column 8c + ORDER[i] lives in nibble i


def read_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack_from("<Q", b, 0)[0]
    hdr = json.loads(b[8:8 + n])
    hdr.pop("__metadata__", None)
    return b, 8 + n, hdr


def tensor_bytes(b, base, info):
    s, e = info["data_offsets"]
    return b[base + s:base + e]


def dequant(b, base, hdr, prefix):
    """F16 bytes of the [out, in] weight of linear `prefix` (row-major)."""
    qw, qz, sc = (hdr[prefix + s] for s in (".qweight", ".qzeros", ".scales"))
    n_in, w8 = qw["shape"]
    n_out = w8 * 8
    n_groups = sc["shape"][0]
    g = n_in // n_groups
    words = array.array("I", tensor_bytes(b, base, qw))
    zwords = array.array("I", tensor_bytes(b, base, qz))
    scales = struct.unpack(f"<{n_groups * n_out}e", tensor_bytes(b, base, sc))
    if sys.byteorder != "little":
        words.byteswap()
        zwords.byteswap()
    zeros = [0] * (n_groups * n_out)
    for k in range(n_groups):
        for c in range(w8):
            w = zwords[k * w8 + c]
            for i in range(8):
                zeros[k * n_out + 8 * c + ORDER[i]] = (w >> (4 * i)) & 15
    out = [0.0] * (n_out * n_in)
    for j in range(n_in):
        k = j // g
        row = j * w8
        for c in range(w8):
            w = words[row + c]
            for i in range(8):
                o = 8 * c + ORDER[i]
                out[o * n_in + j] = (((w >> (4 * i)) & 15) - zeros[k * n_out + o]) * scales[k * n_out + o]
    return [n_out, n_in], struct.pack(f"<{len(out)}e", *out)


def write_st(path, tensors):
    """tensors: name -> (shape, F16 bytes); keys sorted, offsets 8-aligned, contiguous."""
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for n in names:
        shape, data = tensors[n]
        assert len(data) % 8 == 0
        hdr[n] = {"dtype": "F16", "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(hdr, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n in names:
            f.write(tensors[n][1])


def dequantized_model(awq_path, src_dir, out_dir):
    b, base, hdr = read_st(awq_path)
    tensors = {}
    for name, info in hdr.items():
        if name.endswith(".qweight"):
            prefix = name[:-len(".qweight")]
            tensors[prefix + ".weight"] = dequant(b, base, hdr, prefix)
        elif name.endswith(".qzeros") or name.endswith(".scales"):
            continue
        else:
            assert info["dtype"] == "F16", name
            tensors[name] = (info["shape"], tensor_bytes(b, base, info))
    os.makedirs(out_dir)
    write_st(os.path.join(out_dir, "model.safetensors"), tensors)
    for n in os.listdir(src_dir):
        if n.endswith(".json") or n.startswith("tokenizer"):
            shutil.copy(os.path.join(src_dir, n), out_dir)


def ppl(path, chunks):
    r = subprocess.run([q.LLAMA_REF, "perplexity", path,
                        os.path.join(q.SHARED, "models", "eval", "heldout.txt"), "256", str(chunks), "2"],
                       capture_output=True, text=True, timeout=900)
    m = re.search(r"ppl: ([0-9.]+)", r.stdout)
    if r.returncode or not m:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return None
    return float(m.group(1))


def main():
    q.need_fuse()
    q.need_shared()
    q.need_llama()
    if not os.access(DUMP, os.X_OK):
        q.skip(f"{DUMP} not built")
    chunks = int(os.environ.get("QFS_PPL_CHUNKS", "100"))
    src = os.path.join(q.SHARED, "models", MODEL)
    imx = os.path.join(q.SHARED, "reference", MODEL, f"{MODEL}.imatrix.gguf")
    t = q.tmpdir("awq")
    root = os.path.join(t, "src")
    os.makedirs(root)
    shutil.copytree(src, os.path.join(root, MODEL))  # the F16 baseline (and the RTN file)
    variants = [(mode, g) for g in (128, 64) for mode in ("rtn", "aware")]
    for mode, g in variants:
        name = f"{MODEL}-awq-{mode}-g{g}"
        awq = os.path.join(t, name + ".awq.safetensors")
        r = subprocess.run([DUMP, "dump", src, str(g), imx if mode == "aware" else "-", awq,
                            os.path.join(t, name + ".config.json")], capture_output=True, text=True)
        if not q.check(r.returncode == 0, f"{name}: AWQ file produced ({os.path.getsize(awq) if r.returncode == 0 else r.stderr[-500:]} bytes)"):
            q.finish()
        dequantized_model(awq, src, os.path.join(root, name))

    results = {}
    with q.Mount(root, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        mounted = os.path.join(m.mnt, MODEL, f"{MODEL}.awq.safetensors")
        if os.path.exists(mounted):
            with open(mounted, "rb") as a, open(os.path.join(t, f"{MODEL}-awq-rtn-g128.awq.safetensors"), "rb") as b:
                q.check(a.read() == b.read(), "the mounted AWQ file equals the produce path's bytes")
        else:
            print(f"note: {mounted} not offered by this build's namespace")
        results["F16"] = ppl(os.path.join(m.mnt, MODEL, f"{MODEL}.F16.gguf"), chunks)
        for mode, g in variants:
            name = f"{MODEL}-awq-{mode}-g{g}"
            results[(mode, g)] = ppl(os.path.join(m.mnt, name, f"{name}.F16.gguf"), chunks)
    print(f"perplexity of {MODEL} ({chunks} windows of 256 tokens, heldout.txt):")
    print(f"  F16                  {results['F16']}")
    for mode, g in variants:
        print(f"  AWQ {mode:<5} g={g:<3}      {results[(mode, g)]}")
    f16 = results["F16"]
    q.check(f16 is not None, "F16 perplexity measured")
    for mode, g in variants:
        p = results[(mode, g)]
        q.check(p is not None and math.isfinite(p) and f16 and p < f16 * 1.10,
                f"AWQ {mode} g={g}: perplexity {p} within 10% of F16 {f16}")
    for g in (128, 64):
        a, r = results[("aware", g)], results[("rtn", g)]
        q.check(a is not None and r is not None and a <= r,
                f"g={g}: activation-aware {a} is not worse than round-to-nearest {r}")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
