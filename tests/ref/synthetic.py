#!/usr/bin/env python3
"""Synthetic models made by qfs-genmodel, mounted, against llama.cpp's quantizer.

For each variant (odd row sizes that force every fallback, tied and untied embeddings,
sharded sources, Mistral, a sharded Mixtral whose shards split a layer's experts, Llama 3.2
style with rope_freqs) and every mix: if llama_model_quantize accepts the mix, we offer
it and every tensor and key equals what it writes from our mounted F16 file (which the
fixture tests prove equal to convert_hf_to_gguf.py's); if it refuses, we do not offer it.
BF16 and F32 sources are checked for loading and for their F16/BF16/F32 views."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

GGUF_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_ref.py")
# every llama-quantize mix that needs no importance matrix
QTYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
          "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "Q2_K_S", "TQ2_0", "TQ1_0",
          "Q2_0", "Q1_0"]

VARIANTS = {
    # rows of 80 and 200: not multiples of 32 -> every type falls back to F16; output Q8_0->F16
    "odd-rows": ["--hidden", "80", "--heads", "5", "--kv-heads", "5", "--ff", "200", "--vocab", "300"],
    # rows of 96 and 288: 32-aligned but not 256 -> output falls back Q6_K -> Q8_0
    "tied-96": ["--hidden", "96", "--heads", "6", "--kv-heads", "2", "--ff", "288", "--tied"],
    # 256-aligned, untied, 3 shards: output.weight becomes Q6_K
    "sharded-256": ["--hidden", "256", "--heads", "4", "--kv-heads", "2", "--ff", "512", "--shards", "3"],
    "mistral": ["--arch", "mistral", "--hidden", "128", "--heads", "4", "--kv-heads", "1", "--ff", "256"],
    # Mixtral as published: 8 experts stacked per layer, shards that split a layer's experts
    "mixtral-sharded": ["--arch", "mixtral", "--hidden", "128", "--heads", "4", "--kv-heads", "2",
                        "--ff", "256", "--experts", "8", "--experts-used", "2", "--shards", "2"],
    # Llama 3.2 style: llama3 rope_freqs, tied embeddings
    "llama32-tied": ["--arch", "llama3", "--hidden", "256", "--heads", "4", "--kv-heads", "1",
                     "--ff", "512", "--tied"],
}
SOURCES = {"bf16-src": ["--dtype", "bf16"], "f32-src": ["--dtype", "f32", "--tied"]}


def llama(*args):
    return subprocess.run([q.LLAMA_REF, *args], capture_output=True, text=True)


def main():
    q.need_fuse()
    q.need_llama()
    t = q.tmpdir("synth")
    src = os.path.join(t, "src")
    os.makedirs(src)
    for name, extra in {**VARIANTS, **SOURCES}.items():
        r = subprocess.run([q.GENMODEL, "--out", os.path.join(src, name), "--layers", "3", "--seed", "5", *extra],
                           capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"qfs-genmodel {name}: {r.stderr}")
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        for name in VARIANTS:
            d = os.path.join(m.mnt, name)
            f16 = os.path.join(d, f"{name}.F16.gguf")
            offered = {n[len(name) + 1:-5] for n in os.listdir(d) if n.endswith(".gguf")}
            for ty in QTYPES:
                ref = os.path.join(t, f"{name}.{ty}.ref.gguf")
                r = llama("quantize", f16, ref, ty, "2")
                if r.returncode != 0:
                    q.check(ty not in offered, f"{name}.{ty}: llama-quantize refuses it, not offered")
                    continue
                if not q.check(ty in offered, f"{name}.{ty}: llama-quantize accepts it, offered"):
                    continue
                dump = subprocess.run([sys.executable, GGUF_REF, "dump", ref], capture_output=True, text=True)
                refjson = ref + ".json"
                with open(refjson, "w") as f:
                    f.write(dump.stdout)
                c = subprocess.run([sys.executable, GGUF_REF, "compare", os.path.join(d, f"{name}.{ty}.gguf"), refjson],
                                   capture_output=True, text=True)
                lines = (c.stdout + c.stderr).strip().splitlines()
                q.check(c.returncode == 0, f"{name}.{ty} equals llama-quantize: {lines[-1] if lines else ''}")
                if c.returncode:
                    print("\n".join(lines[:15]))
                types = {x["type"] for x in json.loads(dump.stdout)["tensors"]}
                print(f"   tensor types in {name}.{ty}: {sorted(types)}")
                os.unlink(ref)
            r = llama("load", os.path.join(d, f"{name}.Q4_0.gguf"))
            q.check(r.returncode == 0, f"{name}.Q4_0 loads in llama.cpp")
        for name in SOURCES:
            for ty in ["F32", "F16", "BF16", "Q8_0", "Q4_0"]:
                r = llama("load", os.path.join(m.mnt, name, f"{name}.{ty}.gguf"))
                q.check(r.returncode == 0, f"{name}.{ty} loads in llama.cpp")
    q.finish()


if __name__ == "__main__":
    main()
