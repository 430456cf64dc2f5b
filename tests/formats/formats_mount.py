#!/usr/bin/env python3
"""The fp8 / w4a16 / gptq / mlx directories read through a mount, checked by the
independent readers (qfs_formats.py, written from the format descriptions, not from
quantfs' code):

  - every dense fixture of ../shared/models gets exactly the directories whose group rules
    its tensors meet (and the others one log line naming the tensor); the MoE fixture gets
    none of them (one log line per format);
  - each directory lists config.json, model.safetensors and the model's tokenizer and
    generation files; config.json's quantization block is what vLLM / transformers /
    mlx_lm read (field by field), the safetensors file passes the strict reader (sorted
    keys, 8-byte aligned contiguous data, dtypes, shapes, names), and sampled rows of every
    quantized linear dequantize to the source within the format's rounding bound;
  - listing, stat and reading config.json quantize nothing;
  - the extended attributes name the format and variant;
  - options: formats= picks formats, <fmt>_group= sets the group (seen in config.json),
    an unknown format or group is refused at mount with the list of what is allowed."""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import qfstest as q  # noqa: E402
import qfs_formats as qf  # noqa: E402

DENSE = ["babyllama-105", "tinyllama-256", "qwen2-bpe-tiny", "llama31-tiny", "qwen3-tiny",
         "gemma3-tiny", "phi3-tiny"]
MOE = ["qwen3moe-tiny"]
# directory suffix -> (format name, group size, the checker's name)
FORMATS = {"fp8": ("fp8", 0), "w4a16": ("w4a16", 128), "gptq": ("gptq", 128),
           "mlx-4bit": ("mlx", 64), "mlx-8bit": ("mlx", 64)}


def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def source_tensors(model):
    d = os.path.join(q.SHARED, "models", model)
    out = {}
    for n in os.listdir(d):
        if n.endswith(".safetensors"):
            h = st_header(os.path.join(d, n))
            h.pop("__metadata__", None)
            out.update(h)
    return out


def linear(name, shape):
    return len(shape) == 2 and name.startswith("model.layers.") and name.endswith(".weight")


def expected(model, suffix):
    """Does the model's layout meet the format's rules (default group sizes)?"""
    fmt, g = FORMATS[suffix]
    for name, t in source_tensors(model).items():
        shape = t["shape"]
        quant = linear(name, shape) or (fmt == "mlx" and len(shape) == 2 and
                                        name in ("model.embed_tokens.weight", "lm_head.weight"))
        if not quant:
            continue
        if g and shape[1] % g:
            return False
        if fmt == "gptq" and shape[0] % 8:
            return False
    return True


def quantized_count(m, path):
    st = m.status()
    for mm in st["models"]:
        for f in mm["files"]:
            if path.endswith(f["name"]):
                return f.get("chunks_quantized", 0)
    return 0


def main():
    q.need_fuse()
    q.need_shared()
    t = q.tmpdir("formats")
    src = os.path.join(q.SHARED, "models")
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        # laziness first: nothing read yet but listings, stats and config.json
        before = [f for mm in m.status()["models"] for f in mm["files"]]
        for model in DENSE:
            for suffix in FORMATS:
                d = os.path.join(m.mnt, model, f"{model}.{suffix}")
                if os.path.isdir(d):
                    for n in os.listdir(d):
                        os.stat(os.path.join(d, n))
                    with open(os.path.join(d, "config.json")) as f:
                        json.load(f)
        status = m.status()
        busy = [(mm["name"], f["name"]) for mm in status["models"] for f in mm["files"]
                if f.get("chunks_quantized")]
        q.check(not busy and before is not None,
                f"listing, stat and config.json of every directory quantize nothing ({busy[:3]})")
        log = m.log()
        for model in DENSE:
            listing = os.listdir(os.path.join(m.mnt, model))
            src_files = os.listdir(os.path.join(src, model))
            for suffix, (fmt, g) in FORMATS.items():
                name = f"{model}.{suffix}"
                want = expected(model, suffix)
                have = name in listing
                q.check(have == want, f"{name}: offered exactly when its tensors fit "
                        f"({'offered' if have else 'not offered'})")
                if not have:
                    q.check(f"{model}: not offering {fmt}: tensor " in log,
                            f"{name}: the refusal is logged, naming a tensor")
                    continue
                d = os.path.join(m.mnt, model, name)
                entries = sorted(os.listdir(d))
                passthrough = sorted(n for n in src_files if n.startswith(
                    ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges",
                     "generation_config", "chat_template")))
                q.check(entries == sorted(["config.json", "model.safetensors"] + passthrough),
                        f"{name}/ lists config.json, model.safetensors and {passthrough}")
                problems = qf.check_dir(d, suffix, source=os.path.join(src, model), rows=3)
                q.check(not problems, f"{name}: independent reader: "
                        f"{'ok' if not problems else problems[:5]}")
                ms = os.path.join(d, "model.safetensors")
                fa = os.getxattr(ms, "user.quantfs.format").decode()
                va = os.getxattr(ms, "user.quantfs.variant").decode()
                q.check(fa == fmt and va == suffix.upper(),
                        f"{name}/model.safetensors: xattrs format={fa} variant={va}")
                q.check(os.getxattr(d, "user.quantfs.format").decode() == fmt,
                        f"{name}/: xattr format={fmt}")
        for model in MOE:
            listing = os.listdir(os.path.join(m.mnt, model))
            for suffix, (fmt, g) in FORMATS.items():
                q.check(f"{model}.{suffix}" not in listing, f"{model}.{suffix}: MoE, not offered")
            for fmt in ("fp8", "w4a16", "gptq", "mlx"):
                n = log.count(f"{model}: not offering {fmt}: mixture-of-experts")
                q.check(n == 1, f"{model}: one log line for {fmt} ({n})")
        q.check(m.unmount() == 0, "clean exit")

    # options
    opts = f"cache={t}/cache,formats=gguf:w4a16,w4a16_group=64"
    with q.Mount(src, os.path.join(t, "mnt2"), opts) as m:
        listing = os.listdir(os.path.join(m.mnt, "tinyllama-256"))
        q.check("tinyllama-256.w4a16" in listing and "tinyllama-256.fp8" not in listing and
                "tinyllama-256.awq" not in listing and any(n.endswith(".gguf") for n in listing),
                "formats=gguf:w4a16 offers exactly those")
        with open(os.path.join(m.mnt, "tinyllama-256", "tinyllama-256.w4a16", "config.json")) as f:
            qc = json.load(f)["quantization_config"]
        g = qc["config_groups"]["group_0"]["weights"]["group_size"]
        q.check(g == 64, f"w4a16_group=64 is in config.json ({g})")
        probs = qf.validate_w4a16_config({"quantization_config": qc}, group_size=64)
        q.check(not probs, f"w4a16 group 64 config: {probs[:3]}")
        mm = [x for x in m.status()["models"] if x["name"] == "tinyllama-256"][0]
        q.check(mm.get("w4a16_group") == 64 and "w4a16" in mm.get("formats", []),
                f"status shows w4a16_group 64 ({mm.get('w4a16_group')})")
    for opt, want in (("formats=gguf:nosuch", "unknown format 'nosuch'"),
                      ("mlx_group=100", "expected one of 32, 64, 128"),
                      ("gguf_group=64", "has no group size")):
        r = subprocess.run([q.QUANTFS, src, os.path.join(t, "mntbad"), "-f", "-o", opt],
                           capture_output=True, text=True, timeout=30)
        q.check(r.returncode == 2 and want in r.stderr,
                f"-o {opt} refused at mount ({r.returncode}: {r.stderr.strip()[:120]})")
    q.finish()


if __name__ == "__main__":
    main()
