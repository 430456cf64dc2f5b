#!/usr/bin/env python3
"""GGUF parser and comparator for quantfs' reference checks (python3 stdlib only).

  gguf_ref.py dump FILE
      Print the file's metadata and tensors as JSON, in the shape of the reference files
      shared/reference/<model>/<model>.<TYPE>.json.
  gguf_ref.py compare FILE REF.json [--ignore-key K ...] [--ignore-order]
      Compare FILE against REF.json: every metadata key (type and value, floats exactly as
      stored), every tensor's name, type, shape, nbytes and data sha256, and (unless
      --ignore-order) the order of keys and tensors and the tensor offsets. Prints each
      difference and exits 1 if there is any, else prints "N tensors equal, M keys equal".

Long arrays are summarised as {array_of, len, sha256, head}: sha256 is the SHA-256 of
json.dumps(values, ensure_ascii=False) in UTF-8 and head the first 8 values.
"""
import argparse
import hashlib
import json
import os
import struct
import sys

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
HEAD_ITEMS = 8
HASH_CHUNK = 1 << 20

# GGUF metadata value types: id -> (name, struct format or None)
VALUE_TYPES = {
    0: ("UINT8", "<B"),
    1: ("INT8", "<b"),
    2: ("UINT16", "<H"),
    3: ("INT16", "<h"),
    4: ("UINT32", "<I"),
    5: ("INT32", "<i"),
    6: ("FLOAT32", "<f"),
    7: ("BOOL", "<?"),
    8: ("STRING", None),
    9: ("ARRAY", None),
    10: ("UINT64", "<Q"),
    11: ("INT64", "<q"),
    12: ("FLOAT64", "<d"),
}

# ggml tensor types: id -> (name, elements per block, bytes per block), as reported by
# ggml_type_name/ggml_blck_size/ggml_type_size of the reference build (ggml 0.25.1).
TENSOR_TYPES = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
    42: ("Q2_0", 64, 18),
}


class GGUFError(Exception):
    pass


class _Reader:
    def __init__(self, f):
        self.f = f
        self.pos = 0

    def read(self, n):
        b = self.f.read(n)
        if len(b) != n:
            raise GGUFError("truncated file at offset %d" % self.pos)
        self.pos += n
        return b

    def unpack(self, fmt):
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.read(size))[0]

    def string(self):
        n = self.unpack("<Q")
        return self.read(n).decode("utf-8", errors="surrogateescape")

    def value(self, vtype):
        if vtype not in VALUE_TYPES:
            raise GGUFError("unknown metadata value type %d at offset %d" % (vtype, self.pos))
        name, fmt = VALUE_TYPES[vtype]
        if name == "STRING":
            return self.string()
        if name == "ARRAY":
            atype = self.unpack("<I")
            n = self.unpack("<Q")
            if atype not in VALUE_TYPES:
                raise GGUFError("unknown array type %d" % atype)
            afmt = VALUE_TYPES[atype][1]
            if afmt is not None:
                size = struct.calcsize(afmt)
                raw = self.read(size * n)
                vals = list(struct.unpack("<%d%s" % (n, afmt[1:]), raw))
            else:
                vals = [self.value(atype) for _ in range(n)]
            return (atype, vals)
        return self.unpack(fmt)


def _array_summary(atype, vals):
    def plain(v):
        # nested arrays: (type, values) -> values
        return v[1] if isinstance(v, tuple) else v

    vals = [plain(v) for v in vals]
    digest = hashlib.sha256(json.dumps(vals, ensure_ascii=False).encode("utf-8",
                                                                        errors="surrogatepass"))
    return {
        "array_of": VALUE_TYPES[atype][0],
        "len": len(vals),
        "sha256": digest.hexdigest(),
        "head": vals[:HEAD_ITEMS],
    }


def parse(path, hash_data=True):
    """Return {"file", "metadata", "tensors"} as in the reference JSON files."""
    with open(path, "rb") as f:
        r = _Reader(f)
        if r.read(4) != GGUF_MAGIC:
            raise GGUFError("%s: not a GGUF file" % path)
        version = r.unpack("<I")
        if version not in (2, 3):
            raise GGUFError("%s: unsupported GGUF version %d" % (path, version))
        n_tensors = r.unpack("<Q")
        n_kv = r.unpack("<Q")
        metadata = []
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key = r.string()
            vtype = r.unpack("<I")
            val = r.value(vtype)
            if VALUE_TYPES[vtype][0] == "ARRAY":
                val = _array_summary(*val)
            if key == "general.alignment" and isinstance(val, int):
                alignment = val
            metadata.append({"key": key, "type": VALUE_TYPES[vtype][0], "value": val})
        infos = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            shape = [r.unpack("<Q") for _ in range(n_dims)]
            ttype = r.unpack("<I")
            rel = r.unpack("<Q")
            infos.append((name, shape, ttype, rel))
        data_start = (r.pos + alignment - 1) // alignment * alignment
        file_size = os.fstat(f.fileno()).st_size
        tensors = []
        for name, shape, ttype, rel in infos:
            if ttype not in TENSOR_TYPES:
                raise GGUFError("%s: tensor %s has unknown type %d" % (path, name, ttype))
            tname, blck, tsize = TENSOR_TYPES[ttype]
            nel = 1
            for d in shape:
                nel *= d
            if shape and shape[0] % blck:
                raise GGUFError("%s: tensor %s: row of %d not a multiple of %d for %s"
                                % (path, name, shape[0], blck, tname))
            nbytes = nel // blck * tsize
            off = data_start + rel
            if off + nbytes > file_size:
                raise GGUFError("%s: tensor %s extends past the end of the file" % (path, name))
            t = {"name": name, "type": tname, "shape": shape, "offset": off, "nbytes": nbytes}
            if hash_data:
                h = hashlib.sha256()
                f.seek(off)
                left = nbytes
                while left:
                    b = f.read(min(left, HASH_CHUNK))
                    if not b:
                        raise GGUFError("%s: short read in tensor %s" % (path, name))
                    h.update(b)
                    left -= len(b)
                t["sha256"] = h.hexdigest()
            tensors.append(t)
    return {"file": os.path.basename(path), "metadata": metadata, "tensors": tensors}


def _same_value(a, b):
    """Exact equality that does not conflate bool/int or int/float."""
    if type(a) is not type(b):
        if isinstance(a, bool) or isinstance(b, bool):
            return False
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return float(a) == float(b) and (isinstance(a, float) == isinstance(b, float)
                                             or float(a).is_integer())
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return b != b
    return a == b


def _short(v):
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= 200 else s[:200] + "..."


def compare(got, ref, ignore_keys=(), ignore_order=False):
    """Return (differences, n_tensors_equal, n_keys_equal)."""
    diffs = []
    ignore = set(ignore_keys)
    gm = [m for m in got["metadata"] if m["key"] not in ignore]
    rm = [m for m in ref["metadata"] if m["key"] not in ignore]
    gmap = {m["key"]: m for m in gm}
    rmap = {m["key"]: m for m in rm}
    keys_equal = 0
    for m in rm:
        k = m["key"]
        g = gmap.get(k)
        if g is None:
            diffs.append("key %s: missing (reference %s %s)" % (k, m["type"], _short(m["value"])))
            continue
        if g["type"] != m["type"]:
            diffs.append("key %s: type %s, reference %s" % (k, g["type"], m["type"]))
        elif not _same_value(g["value"], m["value"]):
            diffs.append("key %s: value %s, reference %s" % (k, _short(g["value"]),
                                                            _short(m["value"])))
        else:
            keys_equal += 1
    for m in gm:
        if m["key"] not in rmap:
            diffs.append("key %s: extra (%s %s)" % (m["key"], m["type"], _short(m["value"])))
    if not ignore_order:
        gorder = [m["key"] for m in gm if m["key"] in rmap]
        rorder = [m["key"] for m in rm if m["key"] in gmap]
        if gorder != rorder:
            i = next(i for i, (a, b) in enumerate(zip(gorder, rorder)) if a != b)
            diffs.append("key order differs from position %d: %s, reference %s"
                         % (i, gorder[i], rorder[i]))

    gt = {t["name"]: t for t in got["tensors"]}
    rt = {t["name"]: t for t in ref["tensors"]}
    if len(gt) != len(got["tensors"]):
        diffs.append("duplicate tensor names in the file")
    tensors_equal = 0
    fields = ["type", "shape", "nbytes", "sha256"] + ([] if ignore_order else ["offset"])
    for t in ref["tensors"]:
        g = gt.get(t["name"])
        if g is None:
            diffs.append("tensor %s: missing" % t["name"])
            continue
        bad = ["%s %s, reference %s" % (f, _short(g.get(f)), _short(t.get(f)))
               for f in fields if g.get(f) != t.get(f)]
        if bad:
            diffs.append("tensor %s: %s" % (t["name"], "; ".join(bad)))
        else:
            tensors_equal += 1
    for t in got["tensors"]:
        if t["name"] not in rt:
            diffs.append("tensor %s: extra (%s %s)" % (t["name"], t["type"], t["shape"]))
    if not ignore_order:
        gorder = [t["name"] for t in got["tensors"] if t["name"] in rt]
        rorder = [t["name"] for t in ref["tensors"] if t["name"] in gt]
        if gorder != rorder:
            i = next(i for i, (a, b) in enumerate(zip(gorder, rorder)) if a != b)
            diffs.append("tensor order differs from position %d: %s, reference %s"
                         % (i, gorder[i], rorder[i]))
    return diffs, tensors_equal, keys_equal


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump", help="print metadata and tensors as JSON")
    d.add_argument("file")
    d.add_argument("--no-hash", action="store_true", help="skip the tensor data digests")
    c = sub.add_parser("compare", help="compare a GGUF file with a reference JSON")
    c.add_argument("file")
    c.add_argument("ref")
    c.add_argument("--ignore-key", action="append", default=[], metavar="K")
    c.add_argument("--ignore-order", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "dump":
            json.dump(parse(args.file, hash_data=not args.no_hash), sys.stdout, indent=1,
                      ensure_ascii=False)
            sys.stdout.write("\n")
            return 0
        got = parse(args.file)
        with open(args.ref, encoding="utf-8") as f:
            ref = json.load(f)
        diffs, nt, nk = compare(got, ref, args.ignore_key, args.ignore_order)
        for line in diffs:
            print(line)
        if diffs:
            print("%d differences (%d tensors equal, %d keys equal)" % (len(diffs), nt, nk))
            return 1
        print("%d tensors equal, %d keys equal" % (nt, nk))
        return 0
    except (OSError, GGUFError, ValueError) as e:
        print("gguf_ref.py: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
