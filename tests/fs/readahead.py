#!/usr/bin/env python3
"""Request sizes of page-cache readers.  A new FUSE mount starts with the kernel's 128 KiB
readahead, which INIT can only lower, and every request is capped by max_pages, which
libfuse derives from max_write: quantfs raises both (fs/serve/readahead.h, fs/ll.c), so
that cat, cp and llama.cpp's mmap faults reach the daemon in max_read-sized requests.
Checks, as root: the mount's bdi readahead is max_read (default 1 MiB), -o readahead=
sets it and readahead=0 leaves the kernel's; a sequential buffered read of a virtual file
arrives as requests averaging over 512 KiB (the status file's read count), against
requests of at most the kernel's window with readahead=0; the bytes are the same."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402


def bdi_kb(mnt):
    st = os.stat(mnt)
    with open(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb") as f:
        return int(f.read())


def read_count(m, name):
    with open(os.path.join(m.mnt, ".quantfs", "status")) as f:
        st = json.load(f)
    return {f["name"]: f for mm in st["models"] for f in mm["files"]}[name]["reads"]


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def main():
    q.need_fuse()
    if os.geteuid() != 0:
        q.skip("needs root (the readahead is set through sysfs)")
    t = q.tmpdir("readahead")
    src = os.path.join(t, "src")
    model = os.path.join(src, "ra")
    os.makedirs(src)
    r = os.system(f"{q.GENMODEL} --out {model} --hidden 512 --layers 4 --heads 8 --kv-heads 4 "
                  f"--ff 1536 --vocab 8192 --seed 5 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    name = "ra.F16.gguf"
    digests = {}
    for opts, want_kb in (("", 1024), (",readahead=0", None), (",readahead=4M", 4096),
                          (",max_read=256K", 256)):
        with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache{opts}") as m:
            path = os.path.join(m.mnt, "ra", name)
            size = os.path.getsize(path)
            digests[opts] = sha(path)  # the first read of this mount: no page cache yet
            kb = bdi_kb(m.mnt)
            n = read_count(m, name)
            avg = size / max(n, 1)
            if want_kb is not None:
                q.check(kb == want_kb, f"-o{opts or ' (defaults)'}: readahead {kb} KiB (want {want_kb})")
            else:
                q.check(kb < 1024, f"-o{opts}: the kernel's readahead stays ({kb} KiB)")
            print(f"   {opts or 'defaults'}: {n} read requests for {size} bytes, {avg / 1024:.0f} KiB each")
            if opts in ("", ",readahead=4M"):
                q.check(avg > 512 * 1024, f"-o{opts or ' (defaults)'}: requests average {avg / 1024:.0f} KiB > 512 KiB")
            elif opts == ",readahead=0":
                q.check(avg <= kb * 1024 * 1.01, f"-o{opts}: requests average {avg / 1024:.0f} KiB, "
                        f"within the kernel's {kb} KiB window")
    q.check(len(set(digests.values())) == 1, "the same bytes under every setting")
    q.finish()


if __name__ == "__main__":
    main()
