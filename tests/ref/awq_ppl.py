#!/usr/bin/env python3
"""Perplexity and fidelity of tinyllama-256 through our AWQ output, measured by llama.cpp.

What a user reads: the source model is mounted twice (default group 128, then
-o awq_group=64), each time as two model directories, the plain one (round-to-nearest)
and a copy with the reference importance matrix as imatrix.gguf (activation-aware); each
<model>.awq/model.safetensors is read through the mount and dequantized HERE (written from
the format description: nibble i of word c is output column 8c + [0,2,4,6,1,3,5,7][i];
w = (q - zero) * scale) into an F16 safetensors model directory (the folded norms come
from the AWQ file itself; config and tokenizer files copied from the source).  Those
directories are mounted, and llama.cpp evaluates their F16 GGUFs against the source's own
F16 GGUF in one pass (qfs-llama-ref kld): perplexity, KL divergence from F16 per token,
and the paired NLL difference.  Checks: <model>.awq/config.json says the group size;
every AWQ perplexity is finite and within 10% of F16; at each group size the
activation-aware file is closer to F16 than round-to-nearest (lower mean KL divergence)
and its perplexity is not higher.  QFS_PPL_CHUNKS (default 100) windows of 256 tokens.
Standard library only.
"""
import array
import json
import math
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402
from ppl_common import kld, log, write_st  # noqa: E402

MODEL = "tinyllama-256"
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




def main():
    q.need_fuse()
    q.need_shared()
    q.need_llama()
    chunks = int(os.environ.get("QFS_PPL_CHUNKS", "100"))
    src = os.path.join(q.SHARED, "models", MODEL)
    imx = os.path.join(q.SHARED, "reference", MODEL, f"{MODEL}.imatrix.gguf")
    t = q.tmpdir("awq")
    root = os.path.join(t, "src")  # plain and with-imatrix copies of the model
    deq = os.path.join(t, "deq")   # the source again, and the dequantized AWQ models
    shutil.copytree(src, os.path.join(root, MODEL))
    shutil.copytree(src, os.path.join(root, MODEL + "-im"))
    shutil.copy(imx, os.path.join(root, MODEL + "-im", "imatrix.gguf"))
    shutil.copytree(src, os.path.join(deq, MODEL))
    variants = [(mode, g) for g in (128, 64) for mode in ("rtn", "aware")]
    for g in (128, 64):
        opts = f"cache={t}/cache" + ("" if g == 128 else f",awq_group={g}")
        with q.Mount(root, os.path.join(t, "mnt"), opts) as m:
            for mode in ("rtn", "aware"):
                model = MODEL + ("-im" if mode == "aware" else "")
                d = os.path.join(m.mnt, model, model + ".awq")
                with open(os.path.join(d, "config.json")) as f:
                    qc = json.load(f).get("quantization_config", {})
                q.check(qc.get("group_size") == g and qc.get("quant_method") == "awq",
                        f"{model}.awq/config.json: quant_method awq, group_size {g}")
                name = f"{MODEL}-awq-{mode}-g{g}"
                dequantized_model(os.path.join(d, "model.safetensors"), src, os.path.join(deq, name))
                log(f"{name}: read through the mount and dequantized")

    with q.Mount(deq, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        f16 = os.path.join(m.mnt, MODEL, f"{MODEL}.F16.gguf")
        files = {v: os.path.join(m.mnt, f"{MODEL}-awq-{v[0]}-g{v[1]}", f"{MODEL}-awq-{v[0]}-g{v[1]}.F16.gguf")
                 for v in variants}
        res = kld(f16, [files[v] for v in variants], chunks)
    if not q.check(res is not None and all(files[v] in res for v in variants), "llama.cpp evaluated every file"):
        q.finish()
    base = res["ppl_base"]
    print(f"{MODEL}, {chunks} windows of 256 tokens of heldout.txt (qfs-llama-ref kld):")
    print(f"  F16                 perplexity {base:.4f}")
    for v in variants:
        r = res[files[v]]
        print(f"  AWQ {v[0]:<5} g={v[1]:<3}   perplexity {r['ppl']:.4f}  KL from F16 {r['kld']:.6f} "
              f"+- {r['kld_err']:.6f}  same top token {r['same_top']:.4f}  "
              f"NLL - F16 {r['dnll']:+.6f} +- {r['dnll_err']:.6f}")
    for v in variants:
        p = res[files[v]]["ppl"]
        q.check(math.isfinite(p) and p < base * 1.10, f"AWQ {v[0]} g={v[1]}: perplexity {p} within 10% of F16 {base}")
    for g in (128, 64):
        a, r = res[files[("aware", g)]], res[files[("rtn", g)]]
        q.check(a["kld"] < r["kld"], f"g={g}: activation-aware is closer to F16 than round-to-nearest "
                f"(KL {a['kld']:.6f} < {r['kld']:.6f})")
        q.check(a["ppl"] <= r["ppl"], f"g={g}: activation-aware perplexity {a['ppl']} is not worse "
                f"than round-to-nearest {r['ppl']}")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
