"""What the perplexity tests (awq_ppl.py, formats_ppl.py) share: progress lines, an F16
safetensors writer for the dequantized models, and llama.cpp's KL divergence run."""
import json
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

T0 = time.monotonic()


def log(what):
    """A progress line with the seconds since the start (the tests run for minutes)."""
    print(f"[{time.monotonic() - T0:6.1f}s] {what}", flush=True)


def f16_bytes(vals):
    return struct.pack(f"<{len(vals)}e", *vals)


def write_st(path, tensors):
    """tensors: name -> (shape, F16 bytes); keys sorted, offsets 8-aligned, contiguous."""
    hdr, off = {"__metadata__": {"format": "pt"}}, 0
    names = sorted(tensors)
    for n in names:
        shape, data = tensors[n]
        assert len(data) % 8 == 0, n
        hdr[n] = {"dtype": "F16", "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(hdr, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for n in names:
            f.write(tensors[n][1])


def kld(base, files, chunks, timeout=3600):
    """qfs-llama-ref kld on heldout.txt (windows of 256 tokens, the first `chunks`):
    {"ppl_base": x, file: {"kld", "kld_err", "same_top", "ppl", "dnll", "dnll_err"}}, or
    None (its output printed) if it failed."""
    r = subprocess.run([q.LLAMA_REF, "kld", os.path.join(q.SHARED, "models", "eval", "heldout.txt"),
                        "256", str(chunks), base] + files, capture_output=True, text=True,
                       errors="replace", timeout=timeout)
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return None
    out, cur = {}, None
    for line in r.stdout.splitlines():
        k, _, v = line.partition(": ")
        if k == "file":
            cur = out.setdefault(v, {})
        elif k == "ppl_base":
            out[k] = float(v)
        elif cur is not None and k in ("kld", "kld_err", "same_top", "ppl", "dnll", "dnll_err"):
            cur[k] = float(v)
    return out
