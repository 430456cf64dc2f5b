#!/usr/bin/env python3
"""Build the starting corpus of every fuzz target in OUT/<target>/: the hand-made seeds
committed in tests/fuzz/seeds/<target>/ and small inputs derived at run time from the
shared fixture models (never committed: they are not ours).  The derived ones keep the
structure of a real file and shrink its bulk (tensor shapes, vocabularies), so that an
execution stays fast.

    python3 tests/fuzz/corpus.py OUT [SHARED]     (SHARED: default $QFS_SHARED or ../shared)
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = ["safetensors", "st_index", "hf_config", "tokenizer_json", "sentencepiece",
           "imatrix", "cache_entry", "manifest"]
DT_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4}


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def small_safetensors(path):
    """The file's header with every dimension cut to at most 2, offsets recomputed."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    out, off = {}, 0
    if "__metadata__" in h:
        out["__metadata__"] = h.pop("__metadata__")
    for k in sorted(h):
        shape = [min(d, 2) for d in h[k]["shape"]]
        size = DT_SIZE.get(h[k]["dtype"], 2)
        for d in shape:
            size *= d
        out[k] = {"dtype": h[k]["dtype"], "shape": shape, "data_offsets": [off, off + size]}
        off += size
    hb = json.dumps(out, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + bytes(range(256)) * (off // 256) + bytes(off % 256)


def small_tokenizer(path, keep=300):
    """tokenizer.json with the first `keep` vocabulary entries and merges (ids renumbered
    densely), every other part as it is."""
    with open(path, encoding="utf-8") as f:
        t = json.load(f)
    m = t.get("model", {})
    if isinstance(m.get("vocab"), dict):
        items = sorted(m["vocab"].items(), key=lambda kv: kv[1])[:keep]
        m["vocab"] = {k: i for i, (k, _) in enumerate(items)}
        for i, a in enumerate(t.get("added_tokens") or []):
            a["id"] = keep + i
    if isinstance(m.get("merges"), list):
        m["merges"] = m["merges"][:keep]
    return json.dumps(t, ensure_ascii=False)


def small_sentencepiece(data, keep=200):
    """tokenizer.model with its first `keep` pieces (field 1 of ModelProto) and every other
    field as it is."""
    def varint(o):
        v = s = 0
        while True:
            b = data[o]
            o += 1
            v |= (b & 0x7f) << s
            s += 7
            if b < 0x80:
                return v, o
    out, o, n = bytearray(), 0, 0
    while o < len(data):
        start = o
        key, o = varint(o)
        wt = key & 7
        if wt == 0:
            _, o = varint(o)
        elif wt == 1:
            o += 8
        elif wt == 2:
            ln, o = varint(o)
            o += ln
        elif wt == 5:
            o += 4
        else:
            return data
        if key >> 3 == 1:
            n += 1
            if n > keep:
                continue
        out += data[start:o]
    return bytes(out)


def legacy_imatrix(gguf_path):
    """The legacy .dat form of a GGUF imatrix (its first entries): i32 n, per entry
    (i32 name length, name, i32 ncall, i32 nval, nval f32), i32 chunks, dataset."""
    with open(gguf_path, "rb") as f:
        d = f.read()
    # a minimal GGUF walk for the tensor infos of "<W>.in_sum2" (F32) and "<W>.counts"
    o = 8
    nt, nk = struct.unpack_from("<QQ", d, o)
    o += 16

    def s(o):
        n = struct.unpack_from("<Q", d, o)[0]
        return d[o + 8:o + 8 + n].decode(), o + 8 + n
    fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, o):
        if t == 8:
            return s(o)[1]
        if t == 9:
            at, n = struct.unpack_from("<IQ", d, o)
            o += 12
            for _ in range(n):
                o = skip(at, o)
            return o
        return o + fixed[t]
    for _ in range(nk):
        _, o = s(o)
        t = struct.unpack_from("<I", d, o)[0]
        o = skip(t, o + 4)
    infos = []
    for _ in range(nt):
        name, o = s(o)
        nd = struct.unpack_from("<I", d, o)[0]
        ne = struct.unpack_from("<%dQ" % nd, d, o + 4)
        o += 4 + 8 * nd
        typ, off = struct.unpack_from("<IQ", d, o)
        o += 12
        infos.append((name, ne, typ, off))
    start = (o + 31) // 32 * 32
    sums = {n[:-len(".in_sum2")]: (ne, off) for n, ne, t, off in infos if n.endswith(".in_sum2") and t == 0}
    out = []
    for w in sorted(sums)[:4]:
        ne, off = sums[w]
        nval = ne[0]
        vals = d[start + off:start + off + 4 * nval]
        name = w.encode()
        out.append(struct.pack("<i", len(name)) + name + struct.pack("<ii", 10, nval) + vals)
    ds = b"calibration.txt"
    return (struct.pack("<i", len(out)) + b"".join(out) + struct.pack("<i", 10) +
            struct.pack("<i", len(ds)) + ds)


def main():
    out = sys.argv[1]
    shared = ((sys.argv[2] if len(sys.argv) > 2 else "") or os.environ.get("QFS_SHARED") or
              os.path.join(HERE, "..", "..", "..", "shared"))
    for t in TARGETS:
        os.makedirs(os.path.join(out, t), exist_ok=True)
        sd = os.path.join(HERE, "seeds", t)
        if os.path.isdir(sd):
            for n in os.listdir(sd):
                shutil.copy(os.path.join(sd, n), os.path.join(out, t, n))
    models = os.path.join(shared, "models")
    if not os.path.isdir(models):
        print(f"corpus: {models} not found: hand-made seeds only")
        return
    for m in sorted(os.listdir(models)):
        d = os.path.join(models, m)
        p = lambda n: os.path.join(d, n)  # noqa: E731
        if os.path.exists(p("model.safetensors")):
            put(out, "safetensors", m, small_safetensors(p("model.safetensors")))
        if os.path.exists(p("config.json")):
            with open(p("config.json"), "rb") as f:
                put(out, "hf_config", m, f.read())
        if os.path.exists(p("tokenizer.json")):
            put(out, "tokenizer_json", m, small_tokenizer(p("tokenizer.json")))
        if os.path.exists(p("tokenizer.model")):
            with open(p("tokenizer.model"), "rb") as f:
                data = f.read()
            if data not in getattr(main, "seen", set()):
                main.seen = getattr(main, "seen", set()) | {data}
                put(out, "sentencepiece", m, small_sentencepiece(data))
    ref = os.path.join(shared, "reference")
    for m in sorted(os.listdir(ref)) if os.path.isdir(ref) else []:
        ip = os.path.join(ref, m, m + ".imatrix.gguf")
        if os.path.exists(ip):
            with open(ip, "rb") as f:
                put(out, "imatrix", m + ".gguf", f.read())
            put(out, "imatrix", m + ".dat", legacy_imatrix(ip))
    for t in TARGETS:
        print(f"corpus: {t}: {len(os.listdir(os.path.join(out, t)))} inputs")


if __name__ == "__main__":
    main()
