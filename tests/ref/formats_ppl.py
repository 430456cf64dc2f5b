#!/usr/bin/env python3
"""Perplexity of tinyllama-256 through the fp8 / w4a16 / gptq / mlx directories, measured
by llama.cpp.

Each <model>.<fmt>/model.safetensors is read through the mount and dequantized by the
independent readers (tests/formats/qfs_formats.py, written from the format descriptions)
into an F16 model directory; those are mounted and llama.cpp (npm libllama 3.22.1)
evaluates their F16 GGUFs against the source's own F16 GGUF in one pass
(qfs-llama-ref kld: perplexity, KL divergence from F16, same top token).  W4A16 and GPTQ
are measured twice: round-to-nearest (the plain model) and with llama.cpp's reference
importance matrix (a copy of the model with it as imatrix.gguf).  Checks: every perplexity
is finite; the 8-bit formats (fp8, mlx-8bit) are within 1 % of F16 and the 4-bit ones
within 5 %; with the importance matrix W4A16 and GPTQ are no further from F16 than
round-to-nearest (KL divergence).  QFS_PPL_CHUNKS (default 100) windows of 256 tokens;
the table it prints is the README's.  Standard library only."""
import json
import math
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(HERE, "..", "formats"))
import qfstest as q  # noqa: E402
from ppl_common import f16_bytes, kld, log, write_st  # noqa: E402
import qfs_formats as qf  # noqa: E402

MODEL = "tinyllama-256"
# (directory suffix, reader name, with the imatrix)
VARIANTS = [("fp8", "fp8", False), ("w4a16", "w4a16", False), ("w4a16", "w4a16", True),
            ("gptq", "gptq", False), ("gptq", "gptq", True), ("mlx-8bit", "mlx-8bit", False),
            ("mlx-4bit", "mlx-4bit", False)]






def dequantized_model(fmt_dir, fmt, src_dir, out_dir):
    st = qf.STFile(os.path.join(fmt_dir, "model.safetensors"))
    names = set(st.tensors)
    tensors = {}
    bits = 8 if fmt == "mlx-8bit" else 4
    with open(os.path.join(fmt_dir, "config.json")) as f:
        cfg = json.load(f)
    group = (cfg.get("quantization") or {}).get("group_size", 64)
    for n in sorted(names):
        t = st.info(n)
        if fmt == "fp8" and n.endswith(".weight_scale"):
            continue
        if fmt == "fp8" and t.dtype == "F8_E4M3":
            rows = qf.fp8_dequant(st, n[:-len(".weight")])
        elif fmt == "w4a16" and n.endswith(".weight_packed"):
            pre = n[:-len(".weight_packed")]
            rows = qf.w4a16_dequant(st, pre)
            n = pre + ".weight"
        elif fmt == "w4a16" and (n.endswith(".weight_scale") or n.endswith(".weight_shape")):
            continue
        elif fmt == "gptq" and n.endswith(".qweight"):
            pre = n[:-len(".qweight")]
            rows = qf.gptq_dequant(st, pre)
            n = pre + ".weight"
        elif fmt == "gptq" and n.endswith((".qzeros", ".scales", ".g_idx")):
            continue
        elif fmt.startswith("mlx") and n[:-len(".weight")] + ".scales" in names and n.endswith(".weight"):
            rows = qf.mlx_dequant(st, n[:-len(".weight")], bits, group)
        elif fmt.startswith("mlx") and (n.endswith(".scales") or n.endswith(".biases")):
            continue
        else:
            tensors[n] = (list(t.shape), f16_bytes(qf.decode(t.dtype, st.raw(n))))
            continue
        tensors[n] = ([len(rows), len(rows[0])], f16_bytes([v for r in rows for v in r]))
    os.makedirs(out_dir)
    write_st(os.path.join(out_dir, "model.safetensors"), tensors)
    cfg.pop("quantization_config", None)
    cfg.pop("quantization", None)
    cfg["torch_dtype"] = "float16"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for n in os.listdir(src_dir):
        if n != "config.json" and (n.endswith(".json") or n.startswith("tokenizer")):
            shutil.copy(os.path.join(src_dir, n), out_dir)




def label(v):
    return f"{v[0]}{' + imatrix' if v[2] else ''}"


def main():
    q.need_fuse()
    q.need_shared()
    q.need_llama()
    chunks = int(os.environ.get("QFS_PPL_CHUNKS", "100"))
    src = os.path.join(q.SHARED, "models", MODEL)
    imx = os.path.join(q.SHARED, "reference", MODEL, f"{MODEL}.imatrix.gguf")
    t = q.tmpdir("fmtppl")
    root, deq = os.path.join(t, "src"), os.path.join(t, "deq")
    shutil.copytree(src, os.path.join(root, MODEL))
    shutil.copytree(src, os.path.join(root, MODEL + "-im"))
    shutil.copy(imx, os.path.join(root, MODEL + "-im", "imatrix.gguf"))
    shutil.copytree(src, os.path.join(deq, MODEL))
    names = {}
    with q.Mount(root, os.path.join(t, "mnt"), f"cache={t}/cache,formats=fp8:w4a16:gptq:mlx") as m:
        for v in VARIANTS:
            model = MODEL + ("-im" if v[2] else "")
            d = os.path.join(m.mnt, model, f"{model}.{v[0]}")
            name = f"{MODEL}-{v[0]}{'-im' if v[2] else ''}"
            dequantized_model(d, v[1], src, os.path.join(deq, name))
            names[v] = name
            log(f"{name}: read through the mount and dequantized")
    with q.Mount(deq, os.path.join(t, "mnt2"), f"cache={t}/cache,formats=gguf") as m:
        f16 = os.path.join(m.mnt, MODEL, f"{MODEL}.F16.gguf")
        files = {v: os.path.join(m.mnt, names[v], f"{names[v]}.F16.gguf") for v in VARIANTS}
        res = kld(f16, [files[v] for v in VARIANTS], chunks)
    if not q.check(res is not None and all(files[v] in res for v in VARIANTS),
                   "llama.cpp evaluated every file"):
        q.finish()
    base = res["ppl_base"]
    print(f"{MODEL}, {chunks} windows of 256 tokens of heldout.txt (qfs-llama-ref kld):")
    print(f"| format | perplexity | Δ vs F16 | KL from F16 | same top token |")
    print(f"|---|---:|---:|---:|---:|")
    print(f"| F16 | {base:.4f} | +0.0000 | — | — |")
    for v in VARIANTS:
        r = res[files[v]]
        print(f"| {label(v)} | {r['ppl']:.4f} | {r['ppl'] - base:+.4f} | {r['kld']:.6f} ±{r['kld_err']:.6f} "
              f"| {r['same_top']:.4f} |")
    for v in VARIANTS:
        p = res[files[v]]["ppl"]
        bound = 1.01 if v[0] in ("fp8", "mlx-8bit") else 1.05
        q.check(math.isfinite(p) and p < base * bound,
                f"{label(v)}: perplexity {p:.4f} within {round((bound - 1) * 100)}% of F16 {base:.4f}")
    for fmt in ("w4a16", "gptq"):
        a, r = res[files[(fmt, fmt, True)]], res[files[(fmt, fmt, False)]]
        q.check(a["kld"] <= r["kld"], f"{fmt}: with the imatrix no further from F16 than "
                f"round-to-nearest (KL {a['kld']:.6f} <= {r['kld']:.6f})")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
