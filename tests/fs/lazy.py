#!/usr/bin/env python3
"""Laziness: listing, stat, open and reading a GGUF header quantize nothing (nor do the
AWQ file and the <model>.awq/ directory: listing, stat, open, reading its config.json);
reading the header and the first tensor quantizes exactly that tensor's chunks and nothing
else.
Reads use O_DIRECT so the kernel asks for exactly the bytes we read (no readahead, no
page rounding into the next tensor)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

CHUNK_TARGET = 1 << 20  # codecs/gguf/gguf_file.c: output bytes per chunk


def main():
    q.need_fuse()
    t = q.tmpdir("lazy")
    src = os.path.join(t, "src")
    os.makedirs(src)
    model = os.path.join(src, "lazy-test")
    r = os.system(f"{q.GENMODEL} --out {model} --hidden 256 --layers 3 --heads 4 --kv-heads 2 "
                  f"--ff 512 --vocab 4096 --seed 7 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache") as m:
        d = os.path.join(m.mnt, "lazy-test")
        names = sorted(os.listdir(d))
        gg = [n for n in names if n.endswith(".gguf")]
        q.check(len(gg) >= 8 and "lazy-test.Q8_0.gguf" in gg, f"the virtual files are listed ({len(gg)})")
        for n in gg:
            os.stat(os.path.join(d, n))
            os.close(os.open(os.path.join(d, n), os.O_RDONLY))
        awq = os.path.join(d, "lazy-test.awq")
        q.check("lazy-test.awq.safetensors" in names and "lazy-test.awq" in names,
                "the AWQ file and directory are listed")
        for p in [os.path.join(d, "lazy-test.awq.safetensors")] + \
                [os.path.join(awq, n) for n in sorted(os.listdir(awq))]:
            os.stat(p)
            os.close(os.open(p, os.O_RDONLY))
        with open(os.path.join(awq, "config.json")) as f:
            q.check('"quantization_config"' in f.read(), "lazy-test.awq/config.json is readable")
        st = m.status()
        files = {f["name"]: f for mm in st["models"] for f in mm["files"]}
        q.check(sum(f["chunks_quantized"] for f in files.values()) == 0,
                "listing, stat and open quantize nothing")

        path = os.path.join(d, "lazy-test.Q8_0.gguf")
        kv, tensors, start = q.gguf_header(path, q.pread_direct)
        st = m.status()
        q.check(sum(f["chunks_quantized"] + f["cache_hits"] for f in
                    {f["name"]: f for mm in st["models"] for f in mm["files"]}.values()) == 0,
                "reading the GGUF header touches no tensor")

        name, ne, ty, off = tensors[0]
        nrows = 1
        for x in ne[1:]:
            nrows *= x
        nxt = tensors[1][3]
        row_bytes = (nxt - off) // nrows if (nxt - off) % nrows == 0 else None
        # Q8_0: 34 bytes per 32 elements
        row_bytes = ne[0] // 32 * 34 if ty == 8 else row_bytes
        nbytes = row_bytes * nrows
        data = q.pread_direct(path, start, off + nbytes - start)
        q.check(len(data) == off + nbytes - start, f"read up to the end of {name}")
        rows_per_chunk = max(1, CHUNK_TARGET // row_bytes)
        expect = (nrows + rows_per_chunk - 1) // rows_per_chunk
        st = m.status()
        files = {f["name"]: f for mm in st["models"] for f in mm["files"]}
        got = files["lazy-test.Q8_0.gguf"]["chunks_quantized"]
        q.check(expect > 1, f"the first tensor {name} spans several chunks ({expect})")
        q.check(got == expect, f"exactly the {expect} chunks of {name} were quantized (status says {got})")
        others = sum(f["chunks_quantized"] for n, f in files.items() if n != "lazy-test.Q8_0.gguf")
        q.check(others == 0, f"no other virtual file was touched ({others})")
        q.check(files["lazy-test.Q8_0.gguf"]["chunks_total"] > expect, "the file has more chunks than that")
    q.finish()


if __name__ == "__main__":
    main()
