#!/usr/bin/env python3
"""Memory of a big tokenizer: a model whose tokenizer.json has QFS_MEM_TOKENS (500k)
tokens and as many merges is mounted; the daemon's resident memory once the mount is up
(VmRSS) must stay within 4x the GGUF header (what the tokens and merges become, one copy
shared by every GGUF file) plus a fixed allowance over the same model with a tiny
tokenizer (the rest of the daemon).  The jansson tree of tokenizer.json is freed after
use; each GGUF file used to keep its own copy of the header (24 of them).
VmHWM (the peak while loading) is reported, not bounded: parsing needs the tree.  In an
ASan build only the numbers are printed (its allocator holds freed memory back)."""
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

N = int(os.environ.get("QFS_MEM_TOKENS", "500000"))
ALLOWANCE = 64 << 20


def gen(path, vocab):
    r = os.system(f"{q.GENMODEL} --out {path} --arch qwen3 --hidden 64 --layers 2 --heads 4 "
                  f"--kv-heads 2 --ff 128 --vocab {vocab} >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")


def big_tokenizer(d, n):
    """tokenizer.json with n tokens (the last one an added <|endoftext|>) and n merges."""
    rnd = random.Random(5)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {}
    for i in range(n - 1):
        vocab["\u0120tok%07d%s" % (i, "".join(rnd.choice(letters) for _ in range(24)))] = i
    keys = list(vocab)
    merges = ["%s %s" % (keys[i % len(keys)][:18], keys[(i * 7 + 1) % len(keys)][10:]) for i in range(n)]
    t = {"version": "1.0", "added_tokens": [{"id": n - 1, "content": "<|endoftext|>", "special": True}],
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
         "decoder": {"type": "ByteLevel"},
         "model": {"type": "BPE", "vocab": vocab, "merges": merges}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(t, f, ensure_ascii=False)
    for x in ("tokenizer.model", "special_tokens_map.json"):
        if os.path.exists(os.path.join(d, x)):
            os.unlink(os.path.join(d, x))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>"}, f)


def proc_mem(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def mounted(t, name, n):
    src = os.path.join(t, name + "-src")
    model = os.path.join(src, name)
    os.makedirs(src)
    gen(model, n)
    big_tokenizer(model, n)
    size = os.path.getsize(os.path.join(model, "tokenizer.json"))
    with q.Mount(src, os.path.join(t, name + "-mnt"), f"cache={t}/cache-{name}") as m:
        st = m.status()
        q.check([mm["name"] for mm in st["models"]] == [name], f"{name}: served")
        path = os.path.join(m.mnt, name, name + ".Q8_0.gguf")
        with open(path, "rb") as f:
            kv, _, start = q.gguf_header(path, lambda _p, off, k: (f.seek(off), f.read(k))[1])
        mem = proc_mem(m.proc.pid)
        ggufs = [x for x in os.listdir(os.path.join(m.mnt, name)) if x.endswith(".gguf")]
        q.check(len(kv.get("tokenizer.ggml.tokens", [])) == n and
                len(kv.get("tokenizer.ggml.merges", [])) == n,
                f"{name}: {n} tokens and merges in the header")
    shutil.rmtree(src)
    return size, start, mem, len(ggufs)


def main():
    q.need_fuse()
    t = q.tmpdir("tokmem")
    size0, head0, mem0, _ = mounted(t, "small", 1000)
    size, head, mem, nfiles = mounted(t, "big", N)
    mib = lambda x: f"{x / 1048576:.1f} MiB"  # noqa: E731
    print(f"tiny tokenizer: VmRSS {mib(mem0['VmRSS'])}, VmHWM {mib(mem0['VmHWM'])}")
    print(f"tokenizer.json {mib(size)} ({N} tokens, {N} merges), GGUF header {mib(head)}, "
          f"{nfiles} GGUF files: VmRSS {mib(mem['VmRSS'])} (anonymous {mib(mem['RssAnon'])}, "
          f"file-backed {mib(mem['RssFile'])}), VmHWM {mib(mem['VmHWM'])}")
    limit = 4 * head + mem0["VmRSS"] + ALLOWANCE
    with open(q.QUANTFS, "rb") as f:
        asan = b"__asan_init" in f.read()
    if asan:  # its allocator keeps freed memory (quarantine): the bound is glibc's
        print("ASan build: resident memory not bounded")
        shutil.rmtree(t, ignore_errors=True)
        q.finish()
    q.check(mem["VmRSS"] < limit,
            f"resident after the mount {mib(mem['VmRSS'])} < 4 x header + tiny-model RSS + "
            f"{mib(ALLOWANCE)} = {mib(limit)}")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
