#!/usr/bin/env python3
"""The AWQ entries of every model: <m>.awq.safetensors and the loadable directory <m>.awq/
(config.json with quantization_config, model.safetensors = the AWQ file, the tokenizer and
generation files passed through).

Checked on a copy of the tinyllama-256 fixture and on models made by qfs-genmodel:
  - both entries are listed (default group 128), listing and stat quantize nothing;
  - <m>.awq/ lists exactly config.json, model.safetensors and the source's tokenizer and
    generation files (in-tree symlinks followed, others and non-matching names not);
  - config.json is the source config plus quantization_config and torch_dtype float16;
  - model.safetensors has the bytes of <m>.awq.safetensors, the passthrough files those of
    the source; the safetensors header rules hold, every decoder linear is quantized;
  - inode numbers of <m>.awq/ and its entries survive a rescan;
  - -o awq_group=64 gives group 64; -o noawq lists neither entry; a model AWQ cannot
    quantize has neither; a source entry named <m>.awq hides the virtual directory;
    awq_group=100 is a usage error."""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

PASSTHROUGH = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges",
               "generation_config", "chat_template", "preprocessor_config")
LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
DTYPE_SIZE = {"F16": 2, "BF16": 2, "F32": 4, "I32": 4}


def genmodel(path, *extra):
    r = subprocess.run([q.GENMODEL, "--out", path, "--seed", "3", *extra], capture_output=True,
                       text=True)
    if r.returncode:
        sys.exit(f"qfs-genmodel {path}: {r.stderr}")


def st_header(read):
    """(header length N, keys in file order, dict) of a safetensors file; read(off, n)."""
    n = struct.unpack("<Q", read(0, 8))[0]
    orders = []  # the key order of every object, the outermost last

    def hook(pairs):
        orders.append([k for k, _ in pairs])
        return dict(pairs)
    h = json.loads(read(8, n), object_pairs_hook=hook)
    return n, orders[-1], h


def file_reader(path):
    def read(off, n):
        with open(path, "rb") as f:
            f.seek(off)
            return f.read(n)
    return read


def direct_reader(path):
    """Exactly [off, off+n) through O_DIRECT (no readahead into the tensors)."""
    return lambda off, n: q.pread_direct(path, off, n)


def source_shapes(model_dir):
    """name -> shape of every tensor of the source model's safetensors files."""
    out = {}
    for fn in sorted(os.listdir(model_dir)):
        if fn.endswith(".safetensors"):
            _, _, h = st_header(file_reader(os.path.join(model_dir, fn)))
            out.update({k: v["shape"] for k, v in h.items() if k != "__metadata__"})
    return out


def prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def quantizable(shape, g):
    return len(shape) == 2 and shape[1] % g == 0 and shape[0] % 8 == 0


def expected_listing(model_dir):
    names = {"config.json", "model.safetensors"}
    for fn in os.listdir(model_dir):
        p = os.path.join(model_dir, fn)
        if fn.startswith(PASSTHROUGH) and os.path.isfile(p):
            real = os.path.realpath(p)
            if real.startswith(os.path.dirname(os.path.realpath(model_dir)) + os.sep):
                names.add(fn)
    return sorted(names)


def check_header(tag, path, src_dir, g):
    """The safetensors rules on the mounted file, and the AWQ tensors of every decoder
    linear of the source.  Reads the header only."""
    size = os.path.getsize(path)
    n, keys, h = st_header(direct_reader(path))
    q.check(keys == sorted(keys) and keys[0] == "__metadata__" and
            h["__metadata__"] == {"format": "pt"}, f"{tag}: keys sorted, __metadata__ first")
    q.check((8 + n) % 8 == 0, f"{tag}: 8 + N = {8 + n} is a multiple of 8")
    data = size - 8 - n
    ts = sorted((v["data_offsets"], k, v) for k, v in h.items() if k != "__metadata__")
    pos, ok_layout, bad = 0, True, []
    for (b, e), k, v in ts:
        if b != pos or e > data or e - b != prod(v["shape"]) * DTYPE_SIZE.get(v["dtype"], 0) \
                or b % 8:
            ok_layout = False
            bad.append(k)
        pos = e
    q.check(ok_layout and pos == data,
            f"{tag}: {len(ts)} tensors back to back, 8-aligned, sized by shape, end at EOF {bad[:3]}")
    src = source_shapes(src_dir)
    cfg = json.load(open(os.path.join(src_dir, "config.json")))
    missing, wrong, skipped = [], [], []
    for layer in range(cfg["num_hidden_layers"]):
        for lin in LINEARS:
            p = f"model.layers.{layer}.{lin}"
            out_f, in_f = src[p + ".weight"]
            if not quantizable((out_f, in_f), g):
                skipped.append(p)
                continue
            want = {".qweight": ("I32", [in_f, out_f // 8]),
                    ".qzeros": ("I32", [in_f // g, out_f // 8]),
                    ".scales": ("F16", [in_f // g, out_f])}
            for suf, (dt, shape) in want.items():
                v = h.get(p + suf)
                if v is None:
                    missing.append(p + suf)
                elif v["dtype"] != dt or v["shape"] != shape:
                    wrong.append(f"{p + suf} {v['dtype']} {v['shape']} (want {dt} {shape})")
            if p + ".weight" in h:
                wrong.append(p + ".weight is still there")
    q.check(not missing and not wrong and not skipped,
            f"{tag}: every decoder linear is qweight/qzeros/scales, group {g} "
            f"(missing {missing[:3]}, wrong {wrong[:3]}, not quantized {skipped[:3]})")
    others = [k for k in src if not any(k.startswith(f"model.layers.{i}.{lin}.")
                                        for i in range(cfg["num_hidden_layers"]) for lin in LINEARS)]
    q.check(all(h.get(k, {}).get("dtype") == "F16" and h[k]["shape"] == src[k] for k in others),
            f"{tag}: the other {len(others)} tensors are F16 with their shapes")


def check_config(tag, path, src_dir, g):
    with open(os.path.join(src_dir, "config.json")) as f:
        want = json.load(f)
    try:
        with open(path) as f:
            got = json.load(f)
    except (OSError, ValueError) as e:
        q.check(False, f"{tag}: config.json parses ({e})")
        return
    src = source_shapes(src_dir)
    skip = sorted(k[:-len(".weight")] for k, s in src.items()
                  if k.endswith(".weight") and any(f".{lin}." in k for lin in LINEARS) and
                  not quantizable(s, g))
    qc = got.pop("quantization_config", None)
    q.check(isinstance(qc, dict) and qc.get("quant_method") == "awq" and qc.get("bits") == 4 and
            qc.get("group_size") == g and qc.get("zero_point") is True and
            qc.get("version") == "gemm" and isinstance(qc.get("modules_to_not_convert"), list) and
            sorted(qc["modules_to_not_convert"]) == skip,
            f"{tag}: quantization_config {qc}")
    want["torch_dtype"] = "float16"
    q.check(got == want, f"{tag}: the rest is the source config with torch_dtype float16")


def quantized(m, model):
    return sum(f["chunks_quantized"] + f["cache_hits"] for mm in m.status()["models"]
               if mm["name"] == model for f in mm["files"])


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_model(m, src, model, g, full=True):
    """The AWQ entries of one model of mount m (source directory src/model)."""
    d = os.path.join(m.mnt, model)
    sd = os.path.join(src, model)
    awq_file, awq_dir = os.path.join(d, f"{model}.awq.safetensors"), os.path.join(d, f"{model}.awq")
    names = os.listdir(d)
    if not q.check(f"{model}.awq.safetensors" in names and f"{model}.awq" in names,
                   f"{model}: {model}.awq.safetensors and {model}.awq/ are listed"):
        return
    q.check(os.path.isdir(awq_dir) and not os.path.islink(awq_dir), f"{model}.awq is a directory")
    got = sorted(os.listdir(awq_dir))
    want = expected_listing(sd)
    q.check(got == want, f"{model}.awq/ lists {got} (want {want})")
    for n in got:
        os.stat(os.path.join(awq_dir, n))
    st_f, st_m = os.stat(awq_file), os.stat(os.path.join(awq_dir, "model.safetensors"))
    q.check(st_f.st_size == st_m.st_size and st_f.st_size > 0,
            f"{model}: model.safetensors has the AWQ file's size ({st_m.st_size})")
    check_config(f"{model}.awq/config.json", os.path.join(awq_dir, "config.json"), sd, g)
    check_header(f"{model}.awq/model.safetensors", os.path.join(awq_dir, "model.safetensors"),
                 sd, g)
    q.check(quantized(m, model) == 0,
            f"{model}: listing, stat, config.json and the header quantize nothing")
    for n in got:
        if n not in ("config.json", "model.safetensors"):
            q.check(same_bytes(os.path.join(awq_dir, n), os.path.join(sd, n)),
                    f"{model}.awq/{n} has the source's bytes")
    if full:
        q.check(same_bytes(awq_file, os.path.join(awq_dir, "model.safetensors")),
                f"{model}.awq/model.safetensors has the bytes of {model}.awq.safetensors")


def inodes(mnt, model):
    d = os.path.join(mnt, model, f"{model}.awq")
    out = {".": os.stat(d).st_ino}
    out.update({n: os.stat(os.path.join(d, n)).st_ino for n in os.listdir(d)})
    return out


def wait_generation(m, gen, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if m.status()["generation"] >= gen:
            return True
        time.sleep(0.1)
    return False


def main():
    q.need_fuse()
    q.need_shared()
    t = q.tmpdir("awqdir")
    src = os.path.join(t, "src")
    os.makedirs(src)
    tiny = os.path.join(src, "tinyllama-256")
    shutil.copytree(os.path.join(q.SHARED, "models", "tinyllama-256"), tiny)
    for root, dirs, files in os.walk(tiny):
        for x in dirs + files:
            os.chmod(os.path.join(root, x), 0o755 if x in dirs else 0o644)
    # gen: every linear quantizable at 128 and 64, plus passthrough edge cases
    gen = os.path.join(src, "gen")
    genmodel(gen, "--hidden", "256", "--layers", "2", "--heads", "4", "--kv-heads", "2",
             "--ff", "512", "--vocab", "512")
    with open(os.path.join(gen, "chat_template.jinja"), "w") as f:
        f.write("{{ messages }}\n")
    with open(os.path.join(gen, "notes.txt"), "w") as f:
        f.write("not a tokenizer file\n")
    os.makedirs(os.path.join(gen, "vocab_dir"))  # a directory: not passed through
    os.symlink("../tinyllama-256/special_tokens_map.json", os.path.join(gen, "special_tokens_map.json"))
    outside = os.path.join(t, "outside.json")
    with open(outside, "w") as f:
        f.write("{}\n")
    os.symlink(outside, os.path.join(gen, "tokenizer_outside.json"))  # leaves SOURCE: hidden
    # small: no linear with in_features divisible by 128 (or 64): no AWQ entries
    genmodel(os.path.join(src, "small"), "--hidden", "96", "--heads", "4", "--kv-heads", "2",
             "--ff", "160", "--vocab", "320")
    # clash: a source directory named clash.awq hides the virtual one
    clash = os.path.join(src, "clash")
    genmodel(clash, "--hidden", "128", "--heads", "4", "--kv-heads", "2", "--ff", "256")
    os.makedirs(os.path.join(clash, "clash.awq"))
    with open(os.path.join(clash, "clash.awq", "mine.txt"), "w") as f:
        f.write("a real file\n")

    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache,rescan=0,nowatch") as m:
        check_model(m, src, "tinyllama-256", 128)
        check_model(m, src, "gen", 128, full=False)
        got = sorted(os.listdir(os.path.join(m.mnt, "gen", "gen.awq")))
        q.check("chat_template.jinja" in got and "special_tokens_map.json" in got and
                "notes.txt" not in got and "vocab_dir" not in got and
                "tokenizer_outside.json" not in got,
                "gen.awq/: in-tree symlinks followed; other names, directories and symlinks "
                "out of SOURCE are not passed through")
        sm = os.listdir(os.path.join(m.mnt, "small"))
        q.check(any(n.endswith(".gguf") for n in sm) and "small.awq" not in sm and
                "small.awq.safetensors" not in sm,
                "a model AWQ cannot quantize has neither AWQ entry (but its GGUF files)")
        cl = os.listdir(os.path.join(m.mnt, "clash"))
        q.check("clash.awq.safetensors" in cl and
                os.listdir(os.path.join(m.mnt, "clash", "clash.awq")) == ["mine.txt"],
                "a source directory named clash.awq hides the virtual one")
        q.check("the virtual directory is not listed" in m.log(), "the hiding is logged")
        st = {mm["name"]: mm for mm in m.status()["models"]}
        q.check(st["tinyllama-256"]["awq_group"] == 128 and st["small"]["awq_group"] is None,
                "the status shows the AWQ group size (null without AWQ)")

        # an unchanged model keeps the numbers of <m>.awq/ and its entries across a rescan
        before = inodes(m.mnt, "tinyllama-256")
        genmodel(os.path.join(src, "late"), "--layers", "1")
        gen0 = m.status()["generation"]
        os.kill(m.proc.pid, signal.SIGHUP)
        q.check(wait_generation(m, gen0 + 1) and "late.awq" in os.listdir(os.path.join(m.mnt, "late")),
                "after a rescan the new model has its AWQ directory")
        q.check(inodes(m.mnt, "tinyllama-256") == before,
                "tinyllama-256.awq/ and its entries kept their inode numbers")
        q.check(m.proc.poll() is None, "the mount is up")
        q.check(m.unmount() == 0, "clean exit")

    with q.Mount(src, os.path.join(t, "mnt64"), f"cache={t}/cache,awq_group=64") as m:
        check_model(m, src, "gen", 64, full=False)
        d = os.path.join(m.mnt, "tinyllama-256", "tinyllama-256.awq")
        check_config("awq_group=64: tinyllama-256", os.path.join(d, "config.json"),
                     tiny, 64)
        _, _, h = st_header(direct_reader(os.path.join(d, "model.safetensors")))
        qz = h["model.layers.0.mlp.down_proj.qzeros"]["shape"]
        q.check(qz == [768 // 64, 256 // 8], f"awq_group=64: down_proj qzeros {qz}")
        q.check(m.unmount() == 0, "awq_group=64: clean exit")

    with q.Mount(src, os.path.join(t, "mntno"), f"cache={t}/cache,noawq") as m:
        names = [n for mod in ("tinyllama-256", "gen", "clash") for n in os.listdir(os.path.join(m.mnt, mod))]
        q.check(not any(n.endswith(".awq") or n.endswith(".awq.safetensors") for n in names
                        if n != "clash.awq"),
                "noawq: no AWQ file or directory")
        q.check(any(n.endswith(".gguf") for n in names), "noawq: the GGUF files are there")
        q.check(all(mm["awq_group"] is None for mm in m.status()["models"]),
                "noawq: the status shows no AWQ")
        q.check(m.unmount() == 0, "noawq: clean exit")
    r = subprocess.run([q.QUANTFS, src, os.path.join(t, "mntbad"), "-f", "-o", "awq_group=100"],
                       capture_output=True, text=True, timeout=30)
    q.check(r.returncode == 2 and "expected one of 32, 64, 128" in r.stderr,
            f"awq_group=100 is a usage error ({r.returncode})")
    r = subprocess.run([q.QUANTFS, "--help"], capture_output=True, text=True, timeout=30)
    q.check("noawq" in r.stdout and "awq_group=N" in r.stdout, "--help documents noawq and awq_group")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
