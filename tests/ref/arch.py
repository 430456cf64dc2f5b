#!/usr/bin/env python3
"""The architecture fixtures against llama.cpp's quantizer, for every mix, with and
without an importance matrix.

  arch.py [MODEL ...]      default: every architecture fixture of ../shared/models

ref-digests already proves the converter outputs (F16, BF16) and the ten reference types
equal to convert_hf_to_gguf.py + llama-quantize.  Here every other mix is checked: each
is offered exactly when llama_model_quantize (npm libllama 3.22.1) accepts it for the
model, and then every tensor and key equals what it writes from our mounted converter
file (F16; BF16 for a BF16 source, the path quantfs reproduces).  The same again with a
synthetic importance matrix (make_imatrix.py: llama.cpp made none for these fixtures),
given to both, which adds the imatrix-only IQ1/IQ2/IQ3 mixes.  The MoE fixture gets a
representative subset unless QFS_REF_FULL=1 (see QUICK)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GGUF_REF = os.path.join(HERE, "gguf_ref.py")
MAKE_IMATRIX = os.path.join(HERE, "make_imatrix.py")
MODELS = ["llama31-tiny", "qwen3-tiny", "qwen3moe-tiny", "gemma3-tiny", "phi3-tiny"]
BF16_SOURCES = {"gemma3-tiny"}
QTYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
          "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "TQ2_0", "TQ1_0",
          "Q2_0", "Q1_0"]
# The MoE fixture is 10x the others (its experts): in a default run it is checked for the
# mixes whose rules differ per tensor kind (K-mixes, the IQ mixes' expert and attention
# rules) and one of each block family; QFS_REF_FULL=1 checks every mix for it too.
QUICK = {"qwen3moe-tiny": {"Q8_0", "Q6_K", "Q5_K_S", "Q4_K_M", "Q4_0", "IQ4_XS", "Q3_K_M", "Q2_K",
                           "TQ1_0", "Q1_0", "IQ3_M", "IQ3_XXS", "IQ2_S", "IQ2_XXS", "IQ1_M"}}
IQTYPES = ["IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "IQ2_M", "IQ2_S", "IQ2_XS", "IQ2_XXS", "IQ1_M",
           "IQ1_S"]


def llama(*args):
    return subprocess.run([q.LLAMA_REF, *args], capture_output=True, text=True, errors="replace")


def compare(mnt, model, types, base, tmp, imatrix=None):
    if model in QUICK and os.environ.get("QFS_REF_FULL") != "1":
        types = [t for t in types if t in QUICK[model]]
    d = os.path.join(mnt, model)
    offered = {n[len(model) + 1:-5] for n in os.listdir(d) if n.endswith(".gguf")}
    tag = " (imatrix)" if imatrix else ""
    for ty in types:
        ref = os.path.join(tmp, f"{model}.{ty}.ref.gguf")
        args = ["quantize", base, ref, ty, "2"]
        if imatrix:
            args += [imatrix, os.path.basename(imatrix)]
        r = llama(*args)
        if r.returncode != 0:
            q.check(ty not in offered, f"{model}.{ty}{tag}: llama-quantize refuses it, not offered")
            continue
        if not q.check(ty in offered, f"{model}.{ty}{tag}: llama-quantize accepts it, offered"):
            continue
        dump = subprocess.run([sys.executable, GGUF_REF, "dump", ref], capture_output=True, text=True)
        os.unlink(ref)
        refjson = ref + ".json"
        with open(refjson, "w") as f:
            f.write(dump.stdout)
        c = subprocess.run([sys.executable, GGUF_REF, "compare", os.path.join(d, f"{model}.{ty}.gguf"), refjson],
                           capture_output=True, text=True)
        lines = (c.stdout + c.stderr).strip().splitlines()
        q.check(c.returncode == 0, f"{model}.{ty}{tag} equals llama-quantize: {lines[-1] if lines else ''}")
        if c.returncode:
            print("\n".join(lines[:15]))
        os.unlink(refjson)


def main():
    q.need_fuse()
    q.need_shared()
    q.need_llama()
    models = sys.argv[1:] or MODELS
    t = q.tmpdir("arch")
    src = os.path.join(q.SHARED, "models")
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        bases = {}
        for model in models:
            kind = "BF16" if model in BF16_SOURCES else "F16"
            base = os.path.join(t, f"{model}.{kind}.gguf")
            with open(os.path.join(m.mnt, model, f"{model}.{kind}.gguf"), "rb") as f, open(base, "wb") as o:
                o.write(f.read())
            bases[model] = base
            compare(m.mnt, model, QTYPES, base, t)
    opts = f"cache={t}/cache"
    for model in models:
        im = os.path.join(t, f"{model}.imatrix.gguf")
        r = subprocess.run([sys.executable, MAKE_IMATRIX, bases[model], im, "7"], capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"make_imatrix {model}: {r.stderr}")
        opts += f",imatrix={model}={im}"
    with q.Mount(src, os.path.join(t, "mnt2"), opts) as m:
        for model in models:
            compare(m.mnt, model, QTYPES + IQTYPES, bases[model], t,
                    imatrix=os.path.join(t, f"{model}.imatrix.gguf"))
    q.finish()


if __name__ == "__main__":
    main()
