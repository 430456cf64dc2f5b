#!/usr/bin/env python3
"""Bad input through the mount: each broken model is passed through as a plain directory
with its errno in the status file and one log line naming the file and the problem, and
the mount stays up serving the good model."""
import errno
import json
import os
import shutil
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402


def gen(path, *extra):
    r = os.system(f"{q.GENMODEL} --out {path} --hidden 64 --layers 2 --heads 4 --kv-heads 2 "
                  f"--ff 128 {' '.join(extra)} >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")


def read_st(path):
    with open(path, "rb") as f:
        d = f.read()
    n = struct.unpack_from("<Q", d)[0]
    return json.loads(d[8:8 + n]), d[8 + n:]


def write_st(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def main():
    q.need_fuse()
    t = q.tmpdir("bad")
    src = os.path.join(t, "src")
    outside = os.path.join(t, "outside")
    os.makedirs(src)
    os.makedirs(outside)
    gen(os.path.join(src, "good"))
    cases = {}  # dir -> (errno name or None, words expected in one log line)

    d = os.path.join(src, "truncated-shard")
    gen(d, "--shards", "2")
    shard = sorted(p for p in os.listdir(d) if p.endswith(".safetensors"))[1]
    size = os.path.getsize(os.path.join(d, shard))
    os.truncate(os.path.join(d, shard), size - 100)
    cases[d] = ("EIO", [shard, "truncated"])

    d = os.path.join(src, "header-beyond-file")
    gen(d)
    p = os.path.join(d, "model.safetensors")
    with open(p, "r+b") as f:
        f.write(struct.pack("<Q", os.path.getsize(p) + 4096))
    cases[d] = ("EINVAL", ["model.safetensors", "beyond"])

    d = os.path.join(src, "overlap")
    gen(d)
    p = os.path.join(d, "model.safetensors")
    h, data = read_st(p)
    names = sorted(k for k in h if k != "__metadata__" and h[k]["shape"] == [64])
    h[names[1]]["data_offsets"] = h[names[0]]["data_offsets"]
    write_st(p, h, data)
    cases[d] = ("EINVAL", ["model.safetensors", "overlap"])

    d = os.path.join(src, "bad-dtype")
    gen(d)
    p = os.path.join(d, "model.safetensors")
    h, data = read_st(p)
    k = sorted(k for k in h if k != "__metadata__")[0]
    h[k]["dtype"] = "I16"
    write_st(p, h, data)
    cases[d] = ("ENOTSUP", ["model.safetensors", "I16"])

    d = os.path.join(src, "no-config")
    gen(d)
    os.unlink(os.path.join(d, "config.json"))
    cases[d] = (None, ["no-config", "config.json"])

    d = os.path.join(src, "invalid-config")
    gen(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": ')
    cases[d] = ("EINVAL", ["config.json"])

    d = os.path.join(src, "no-tokenizer")
    gen(d)
    for n in ("tokenizer.model", "tokenizer.json"):
        if os.path.exists(os.path.join(d, n)):
            os.unlink(os.path.join(d, n))
    cases[d] = ("ENOENT", ["no-tokenizer", "tokenizer"])

    d = os.path.join(src, "symlink-out")
    gen(d)
    shutil.move(os.path.join(d, "model.safetensors"), os.path.join(outside, "model.safetensors"))
    os.symlink(os.path.join(outside, "model.safetensors"), os.path.join(d, "model.safetensors"))
    cases[d] = ("EACCES", ["model.safetensors", "outside"])

    d = os.path.join(src, "missing-shard")
    gen(d, "--shards", "2")
    shard = sorted(p for p in os.listdir(d) if p.endswith(".safetensors"))[0]
    os.unlink(os.path.join(d, shard))
    cases[d] = ("ENOENT", [shard, "missing"])

    # One line per problem per model, however many output types the model would have had
    # (there were 22, one per GGUF type); exactly one log line names these words.
    once = {}
    for name, shape in (("empty-row", [256, 0]), ("empty-rows", [0, 256])):
        d = os.path.join(src, name)
        gen(d)
        p = os.path.join(d, "model.safetensors")
        h, data = read_st(p)
        k = "model.layers.0.self_attn.o_proj.weight"
        h[k]["shape"] = shape
        h[k]["data_offsets"] = [len(data), len(data)]
        write_st(p, h, data)
        cases[d] = ("EINVAL", [k, "empty"])
        once[d] = [k]

    # config values the tensors do not back (a 4-layer model), refused naming the key
    for name, key, val in (("hidden-2e40", "hidden_size", 1 << 40),
                           ("layers-1e9", "num_hidden_layers", 10 ** 9)):
        d = os.path.join(src, name)
        r = os.system(f"{q.GENMODEL} --out {d} --hidden 64 --layers 4 --heads 4 --kv-heads 2 "
                      f"--ff 128 >/dev/null")
        if r:
            sys.exit("qfs-genmodel failed")
        with open(os.path.join(d, "config.json")) as f:
            c = json.load(f)
        c[key] = val
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f)
        cases[d] = ("EINVAL", ["config.json", key])
        once[d] = ["config.json", key]

    # vocab_size far beyond the embedding (a SentencePiece tokenizer padded to it: 2e9
    # [PAD] tokens, a 16 GB table) and a token id of 2^31 - 2 in tokenizer.json
    d = os.path.join(src, "vocab-2e9")
    r = os.system(f"{q.GENMODEL} --out {d} --arch qwen3 --hidden 64 --layers 2 --heads 4 "
                  f"--kv-heads 2 --ff 128 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    c["vocab_size"] = 2 * 10 ** 9
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(c, f)
    cases[d] = ("EINVAL", ["config.json", "vocab_size"])
    once[d] = ["config.json", "vocab_size"]
    d = os.path.join(src, "token-id-2e31")
    gen(d)
    for x in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(d, x)):
            os.unlink(os.path.join(d, x))
    tj = {"model": {"type": "BPE", "vocab": {"t%d" % i: i for i in range(319)}, "merges": []},
          "added_tokens": [{"id": 2147483646, "content": "<big>", "special": True}],
          "pre_tokenizer": {"type": "ByteLevel"}}
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tj, f)
    cases[d] = ("EINVAL", ["tokenizer.json", "2147483646"])
    once[d] = ["tokenizer.json", "2147483646"]

    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        st = m.status()
        log = m.log().splitlines()
        served = {mm["name"] for mm in st["models"]}
        q.check(served == {"good"}, f"only the good model is served ({sorted(served)})")
        skips = {os.path.basename(s["path"]): s["reason"] for s in st.get("skipped", [])}
        for d, (err, words) in sorted(cases.items()):
            name = os.path.basename(d)
            reason = skips.get(name, "")
            if err:
                q.check(os.strerror(getattr(errno, err)) in reason,
                        f"{name}: status reason carries {err} ({reason!r})")
            else:
                q.check(bool(reason), f"{name}: skipped with a reason ({reason!r})")
            lines = [ln for ln in log if all(w in ln for w in words)]
            q.check(len(lines) >= 1, f"{name}: a log line names {words}: {lines[:1]}")
            if d in once:
                named = [ln for ln in log if all(w in ln for w in once[d]) and
                         (d + ":" in ln or d + "/" in ln)]
                q.check(len(named) == 1, f"{name}: exactly one log line names {once[d]} "
                        f"({len(named)})")
            listing = os.listdir(os.path.join(m.mnt, name))
            q.check(not any(n.endswith(".gguf") for n in listing), f"{name}: passed through, no .gguf")
        good = os.path.join(m.mnt, "good", "good.Q8_0.gguf")
        with open(good, "rb") as f:
            data = f.read()
        q.check(len(data) == os.stat(good).st_size and data[:4] == b"GGUF",
                "the mount stays up and serves the good model")
        q.check(m.proc.poll() is None, "the daemon is still running")
    q.finish()


if __name__ == "__main__":
    main()
