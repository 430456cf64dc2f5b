#!/usr/bin/env python3
"""The mounted fixtures against llama.cpp's own output.

  ref_mount.py digests   every type of both fixtures: tensor names, shapes, types, offsets,
                         data SHA-256 and metadata equal the reference files (F16/BF16
                         byte-identical to the converter's files)
  ref_mount.py imatrix   tinyllama-256 with llama.cpp's importance matrix: every type
                         (including the imatrix-only IQ types) equals llama-quantize --imatrix
                         and loads and generates in llama.cpp
  ref_mount.py llama     every mounted file loads in llama.cpp (npm libllama, mmap) and
                         generates text;
                         32-token greedy generations from our F16 equal the reference F16's;
                         perplexity of our F16 and Q8_0 equals the reference files'
                         (Q8_0 made by llama_model_quantize in this run); the qwen2
                         tokenizer reproduces llama.cpp's tokenizer test vectors
"""
import filecmp
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

FIXTURES = ["babyllama-105", "tinyllama-256"]
# Random-weight checkpoints laid out as the Hub's (reference types: the ten llama.cpp made)
ARCH_FIXTURES = ["llama31-tiny", "qwen3-tiny", "qwen3moe-tiny", "gemma3-tiny", "phi3-tiny"]
GGUF_REF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_ref.py")


def ref(model, name):
    return os.path.join(q.SHARED, "reference", model, name)


def llama(*args, timeout=600):
    r = subprocess.run([q.LLAMA_REF, *args], capture_output=True, text=True, errors="replace",
                       timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def ref_types(model, prefix=""):
    """Every type llama.cpp's references exist for (<model>.<prefix><TYPE>.json)."""
    out = []
    for n in sorted(os.listdir(os.path.join(q.SHARED, "reference", model))):
        head = f"{model}.{prefix}"
        if n.startswith(head) and n.endswith(".json"):
            t = n[len(head):-5]
            if "." not in t:
                out.append(t)
    return out


def digests(mnt):
    for model in FIXTURES + ARCH_FIXTURES:
        offered = {n[len(model) + 1:-5] for n in os.listdir(os.path.join(mnt, model)) if n.endswith(".gguf")}
        types = ref_types(model)
        q.check(set(types) <= offered, f"{model}: every reference type is offered "
                f"(missing: {sorted(set(types) - offered)})")
        if model in FIXTURES:  # references for every type llama-quantize accepts
            q.check(offered <= set(types), f"{model}: nothing offered that llama-quantize refuses "
                    f"(extra: {sorted(offered - set(types))})")
        # besides the source files and the GGUF types: the other formats' files and
        # directories only (AWQ's for every dense model; formats-mount checks which of the
        # safetensors directories a model's shapes allow), each named <model>.<format...>
        listed = set(os.listdir(os.path.join(mnt, model)))
        awq = {f"{model}.awq.safetensors", f"{model}.awq"}
        extra = listed - set(os.listdir(os.path.join(q.SHARED, "models", model))) - \
            {f"{model}.{t}.gguf" for t in offered}
        fmts = {n: os.getxattr(os.path.join(mnt, model, n), "user.quantfs.format").decode()
                for n in extra if n.startswith(model + ".")}
        moe = "moe" in model
        q.check(set(fmts) == extra and set(fmts.values()) <= {"awq", "fp8", "w4a16", "gptq", "mlx"}
                and all(n.startswith(f"{model}.{f}") for n, f in fmts.items())
                and (not extra if moe else awq <= extra),
                f"{model}: the other entries are the other formats' ({sorted(extra)})")
        # a BF16 source: quantfs quantizes its exact values, as llama-quantize does from the
        # converter's BF16 file (from-bf16.*); the converter outputs are the plain ones
        from_bf16 = set(ref_types(model, "from-bf16."))
        for t in types:
            if t not in offered:
                continue
            path = os.path.join(mnt, model, f"{model}.{t}.gguf")
            refname = f"{model}.from-bf16.{t}.json" if t in from_bf16 else f"{model}.{t}.json"
            r = subprocess.run([sys.executable, GGUF_REF, "compare", path, ref(model, refname)],
                               capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip().splitlines()
            q.check(r.returncode == 0, f"{refname[:-5]}: {out[-1] if out else ''}")
            if r.returncode:
                print("\n".join(out[:20]))
            if t in ("F16", "BF16") and os.path.exists(ref(model, f"{model}.{t}.gguf")):
                q.check(filecmp.cmp(path, ref(model, f"{model}.{t}.gguf"), shallow=False),
                        f"{model}.{t}: byte-identical to the converter's file")


def imatrix_digests(mnt):
    """tinyllama-256 mounted with llama.cpp's importance matrix: every quantized type equals
    llama-quantize --imatrix's output.  quantize.imatrix.file differs by design (we record
    the file's name, llama-quantize the path it was given), which also shifts offsets."""
    model = "tinyllama-256"
    offered = {n[len(model) + 1:-5] for n in os.listdir(os.path.join(mnt, model)) if n.endswith(".gguf")}
    types = ref_types(model, "imatrix.")
    q.check(set(types) <= offered, f"{model} with imatrix: every reference type is offered "
            f"(missing: {sorted(set(types) - offered)})")
    for t in types:
        if t not in offered:
            continue
        path = os.path.join(mnt, model, f"{model}.{t}.gguf")
        r = subprocess.run([sys.executable, GGUF_REF, "compare", path, ref(model, f"{model}.imatrix.{t}.json"),
                            "--ignore-key", "quantize.imatrix.file", "--ignore-order"],
                           capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip().splitlines()
        q.check(r.returncode == 0, f"{model}.{t} (imatrix): {out[-1] if out else ''}")
        if r.returncode:
            print("\n".join(out[:20]))
        if os.path.exists(os.path.join(q.LLAMA_LIB_DIR, "libllama.v0.5.0.so")):
            rc, gout, gerr = llama("generate", path, "8", "The")
            lines = gout.strip().splitlines()
            ok = rc == 0 and len(lines) >= 1 and len(lines[0].split()) == 8
            q.check(ok, f"{model}.{t} (imatrix) loads in llama.cpp and generates: {lines[-1:] if ok else ''}")
            if not ok:
                print(gerr[-1500:])


def ppl(path, chunks):
    rc, out, err = llama("perplexity", path, os.path.join(q.SHARED, "models", "eval", "heldout.txt"),
                         "256", str(chunks), "2")
    m = re.search(r"ppl: ([0-9.]+)", out)
    if rc or not m:
        print(out, err)
        return None
    return m.group(1)


def llama_checks(mnt, tmp):
    models = FIXTURES + ["qwen2-bpe-tiny"] + ARCH_FIXTURES
    for model in models:
        for n in sorted(os.listdir(os.path.join(mnt, model))):
            if not n.endswith(".gguf"):
                continue
            t = n[len(model) + 1:-5]
            path = os.path.join(mnt, model, n)
            rc, out, err = llama("generate", path, "8", "Once upon a time")
            lines = out.strip().splitlines()
            ok = rc == 0 and len(lines) >= 1 and len(lines[0].split()) == 8
            q.check(ok, f"llama.cpp loads {model}.{t}.gguf (mmap) and generates: {lines[-1:] if ok else ''}")
            if not ok:
                print(out[-500:], err[-2000:])
    for model in FIXTURES + ARCH_FIXTURES:
        if not os.path.exists(ref(model, f"{model}.F16.gguf")):
            continue  # qwen3moe-tiny: too large to keep; its F16 digests equal (ref-digests)
        ours = llama("generate", os.path.join(mnt, model, f"{model}.F16.gguf"), "32", "Once upon a time")
        theirs = llama("generate", ref(model, f"{model}.F16.gguf"), "32", "Once upon a time")
        q.check(ours[0] == 0 and ours[1] == theirs[1] and len(ours[1].split("\n")[0].split()) == 32,
                f"{model}: 32-token greedy generation equals the reference F16's: {ours[1].splitlines()[-1:]}")

    model = "tinyllama-256"
    chunks = int(os.environ.get("QFS_PPL_CHUNKS", "40"))
    ref_q8 = os.path.join(tmp, f"{model}.Q8_0.gguf")
    rc, out, err = llama("quantize", ref(model, f"{model}.F16.gguf"), ref_q8, "Q8_0", "2")
    q.check(rc == 0, "llama_model_quantize made the reference Q8_0")
    for t, reference in (("F16", ref(model, f"{model}.F16.gguf")), ("Q8_0", ref_q8)):
        a = ppl(os.path.join(mnt, model, f"{model}.{t}.gguf"), chunks)
        b = ppl(reference, chunks)
        q.check(a is not None and a == b, f"{model}.{t}: perplexity ({chunks} windows) {a} == reference {b}")

    # qwen2: llama.cpp's tokenizer test vectors through our tokenizer.json conversion
    qdir = os.path.join(q.SHARED, "reference", "qwen2-bpe-tiny")
    with open(os.path.join(qdir, "tokenize.inp"), encoding="utf-8") as f:
        inputs = f.read().split("\n__ggml_vocab_test__\n")
    with open(os.path.join(qdir, "tokenize.out"), encoding="utf-8") as f:
        expected = f.read().split("\n")
    if inputs and inputs[-1].endswith("\n__ggml_vocab_test__"):
        inputs[-1] = inputs[-1][: -len("\n__ggml_vocab_test__")]
    inputs = [s for s in inputs]
    path = os.path.join(mnt, "qwen2-bpe-tiny", "qwen2-bpe-tiny.F16.gguf")
    good = 0
    for i, text in enumerate(inputs):
        if i >= len(expected):
            break
        rc, out, err = llama("tokenize", path, text)
        got = " ".join(out.split())
        if rc == 0 and got == " ".join(expected[i].split()):
            good += 1
        else:
            print(f"  vector {i}: {text!r}: got {got!r} want {expected[i]!r}")
    q.check(good == len(inputs) and good > 40, f"qwen2 tokenizer: {good}/{len(inputs)} test vectors equal")


def main():
    what = sys.argv[1]
    q.need_fuse()
    q.need_shared()
    if what == "llama":
        q.need_llama()
    t = q.tmpdir("ref")
    opts = f"cache={t}/cache"
    if what == "imatrix":
        opts += ",imatrix=tinyllama-256=" + ref("tinyllama-256", "tinyllama-256.imatrix.gguf")
    with q.Mount(os.path.join(q.SHARED, "models"), os.path.join(t, "mnt"), opts) as m:
        if what == "imatrix":
            imatrix_digests(m.mnt)
        elif what == "digests":
            digests(m.mnt)
        else:
            llama_checks(m.mnt, t)
    q.finish()


if __name__ == "__main__":
    main()
