#!/usr/bin/env python3
"""Write a synthetic importance matrix in llama-imatrix's GGUF format for a model.

  make_imatrix.py MODEL.gguf OUT.gguf [SEED]

One entry per tensor llama-imatrix collects (every 2-D or 3-D weight a matrix
multiplication reads: all but token_embd and output): "<name>.in_sum2" F32
[ne0, n_expert] and "<name>.counts" F32 [n_expert], with positive, heavy-tailed
deterministic values (a few channels stand out, as real activations do).  The tests use
it where llama.cpp made no imatrix for a fixture: both llama-quantize and quantfs read the
same file, so the comparison is exact whatever the values."""
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_ref  # noqa: E402

ALIGN = 32


def collected(name, shape):
    return (len(shape) in (2, 3) and name.endswith(".weight") and name not in ("token_embd.weight", "output.weight")
            and "_norm" not in name and "ffn_gate_inp" not in name)


def s(b):
    return struct.pack("<Q", len(b)) + b


def main():
    src, out = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    info = gguf_ref.parse(src, hash_data=False)
    rng = random.Random(seed)
    entries = []
    for t in info["tensors"]:
        if not collected(t["name"], t["shape"]):
            continue
        ne0 = t["shape"][0]
        n_exp = t["shape"][2] if len(t["shape"]) == 3 else 1
        chunks = 10
        sums = []
        for _ in range(n_exp * ne0):
            v = math.exp(rng.gauss(0.0, 1.2)) * 1e-3
            sums.append(v * chunks)
        entries.append((t["name"], ne0, n_exp, sums, [float(chunks)] * n_exp))
    kvs = b""
    n_kv = 0
    def kv_str(k, v):
        return s(k.encode()) + struct.pack("<I", 8) + s(v.encode())
    kvs += kv_str("general.type", "imatrix"); n_kv += 1
    kvs += s(b"imatrix.datasets") + struct.pack("<I", 9) + struct.pack("<IQ", 8, 1) + s(b"synthetic"); n_kv += 1
    kvs += s(b"imatrix.chunk_count") + struct.pack("<II", 4, 10); n_kv += 1
    kvs += s(b"imatrix.chunk_size") + struct.pack("<II", 4, 256); n_kv += 1
    infos = b""
    data = b""
    tensors = []
    for name, ne0, n_exp, sums, counts in entries:
        tensors.append((name + ".in_sum2", [ne0, n_exp], sums))
        tensors.append((name + ".counts", [n_exp], counts))
    for name, shape, vals in tensors:
        off = len(data)
        infos += s(name.encode()) + struct.pack("<I", len(shape)) + b"".join(struct.pack("<Q", d) for d in shape)
        infos += struct.pack("<IQ", 0, off)
        data += struct.pack("<%df" % len(vals), *vals)
        data += b"\0" * (-len(data) % ALIGN)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), n_kv) + kvs + infos
    head += b"\0" * (-len(head) % ALIGN)
    with open(out, "wb") as f:
        f.write(head + data)
    print(f"{len(entries)} entries")


if __name__ == "__main__":
    main()
