#!/usr/bin/env python3
"""Warm-up: `quantfs warm PATH` reads a virtual file through the mount so that a following
read quantizes nothing (status: chunks_quantized stays, cache_hits grow), with progress
lines when stderr is not a terminal; `-o prewarm=Q8_0` makes the daemon do the same for
every model after mounting.  The bytes equal qfs-convert's.  AWQ too: a directory argument
warms <model>.awq.safetensors (a <model>.awq directory its model.safetensors), and
`-o prewarm=AWQ` prewarms it; its bytes equal those of a mount without prewarm."""
import mmap
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

CONVERT = os.path.join(q.BUILD, "tools", "qfs-convert")


def genmodel(path, seed):
    r = os.system(f"{q.GENMODEL} --out {path} --hidden 256 --layers 3 --heads 4 --kv-heads 2 "
                  f"--ff 768 --vocab 4096 --seed {seed} >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")


def read_direct(path):
    """The whole file through O_DIRECT: every byte is asked of the daemon."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    out = bytearray()
    try:
        while True:
            got = os.preadv(fd, [buf], len(out))
            if got <= 0:
                break
            out += buf[:got]
    finally:
        os.close(fd)
        buf.close()
    return bytes(out)


def file_stats(m, name):
    st = m.status()
    return {f["name"]: f for mm in st["models"] for f in mm["files"]}[name]


def wait_prewarm(m):
    """The status once the prewarm plan is done (or after 60 s)."""
    end = time.time() + 60
    st = m.status()
    while time.time() < end:
        st = m.status()
        p = st.get("prewarm", {})
        if p and not p["busy"] and p["chunks_total"] and \
                p["chunks_done"] + p["chunks_failed"] == p["chunks_total"]:
            break
        time.sleep(0.2)
    p = st.get("prewarm", {})
    q.check(p.get("chunks_total", 0) > 0 and p.get("chunks_done") == p.get("chunks_total"),
            f"prewarm finished ({p})")
    return p


def warm_awq_dir(m):
    """quantfs warm <mnt>/w/w.awq/: reads its model.safetensors (w.awq.safetensors)."""
    name = "w.awq.safetensors"
    q.check(file_stats(m, name)["bytes_served"] == 0, "the AWQ file is unread before warm")
    r = subprocess.run([q.QUANTFS, "warm", os.path.join(m.mnt, "w", "w.awq") + "/"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    print(r.stderr)
    q.check(r.returncode == 0 and "warm: 1 of 1 file read" in r.stderr and
            "model.safetensors: done" in r.stderr,
            f"a <model>.awq directory warms its model.safetensors only ({r.returncode})")
    st = file_stats(m, name)
    q.check(st["chunks_quantized"] > 0 and st["bytes_served"] == st["size"],
            f"the AWQ file was read through and quantized ({st})")
    return read_direct(os.path.join(m.mnt, "w", name))


def check_options():
    """AWQ is a prewarm type, alone or in a list, case-sensitive like the GGUF names."""
    for opts, rc in (("prewarm=AWQ", 0), ("prewarm=Q8_0,AWQ", 0), ("prewarm=AWQ:Q4_0", 0),
                     ("prewarm=awq", 2), ("prewarm=AWQ,Q9_9", 2)):
        r = subprocess.run([q.QUANTFS, "-o", opts, "--help"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        q.check(r.returncode == rc, f"-o {opts}: exit {r.returncode} (want {rc}) {r.stderr}")


def main():
    q.need_fuse()
    t = q.tmpdir("warm")
    src = os.path.join(t, "src")
    os.makedirs(src)
    genmodel(os.path.join(src, "w"), 5)
    genmodel(os.path.join(src, "v"), 6)
    ref = os.path.join(t, "ref.gguf")
    if os.system(f"{CONVERT} {src}/w Q8_0 {ref}"):
        sys.exit("qfs-convert failed")
    with open(ref, "rb") as f:
        want = f.read()

    # 1. quantfs warm, through the mount.
    with q.Mount(src, os.path.join(t, "mnt"), f"cache={t}/cache1,rescan=0") as m:
        name = "w.Q8_0.gguf"
        path = os.path.join(m.mnt, "w", name)
        before = file_stats(m, name)
        q.check(before["chunks_quantized"] == 0, "nothing quantized before warm")
        r = subprocess.run([q.QUANTFS, "warm", "-j", "2", path, os.path.join(m.mnt, "v")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        print(r.stderr)
        q.check(r.returncode == 0, f"quantfs warm exits 0 ({r.returncode})")
        q.check("warm:" in r.stderr and "\r" not in r.stderr,
                "not a terminal: plain progress lines")
        q.check(f"{name}: done" in r.stderr, "a line per finished file")
        warmed = file_stats(m, name)
        # Identical source tensors (every norm is all ones) share chunks: fewer chunks are
        # quantized than the file has, the rest are cache hits of the same key.
        q.check(0 < warmed["chunks_quantized"] <= warmed["chunks_total"] and
                warmed["chunks_quantized"] + warmed["cache_hits"] >= warmed["chunks_total"],
                f"warm asked for every chunk ({warmed['chunks_quantized']} quantized + "
                f"{warmed['cache_hits']} hits, {warmed['chunks_total']} chunks)")
        data = read_direct(path)
        after = file_stats(m, name)
        q.check(data == want, "the bytes equal qfs-convert's")
        q.check(after["chunks_quantized"] == warmed["chunks_quantized"],
                f"the read after warm quantized nothing ({warmed['chunks_quantized']} -> "
                f"{after['chunks_quantized']})")
        q.check(after["cache_hits"] > warmed["cache_hits"],
                f"the read was served by the cache ({warmed['cache_hits']} -> "
                f"{after['cache_hits']} hits)")
        v = file_stats(m, "v.Q8_0.gguf")
        q.check(v["chunks_quantized"] > 0 and v["bytes_served"] == v["size"],
                "a directory argument warms its files")
        va = file_stats(m, "v.awq.safetensors")
        q.check(va["chunks_quantized"] > 0 and va["bytes_served"] == va["size"] and
                "v.awq.safetensors: done" in r.stderr,
                f"a model directory argument warms its AWQ file too ({va})")
        q.check(file_stats(m, "w.awq.safetensors")["bytes_served"] == 0,
                "a file argument warms that file only")
        awq_want = warm_awq_dir(m)
        bad = subprocess.run([q.QUANTFS, "warm", "/etc/hostname"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        q.check(bad.returncode == 1 and "not inside a quantfs mount" in bad.stderr,
                "a path outside a mount is refused")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")

    # 2. -o prewarm=Q8_0 (and a second type written the documented way).
    with q.Mount(src, os.path.join(t, "mnt2"), f"cache={t}/cache2,rescan=0,prewarm=Q8_0,Q4_0") as m:
        name = "w.Q8_0.gguf"
        path = os.path.join(m.mnt, "w", name)
        p = wait_prewarm(m)
        warmed = file_stats(m, name)
        q.check(warmed["chunks_quantized"] > 0, "prewarm quantized the Q8_0 file's chunks")
        other = file_stats(m, "w.F16.gguf")
        q.check(other["chunks_quantized"] == 0, "types not listed are left alone")
        data = read_direct(path)
        after = file_stats(m, name)
        q.check(data == want, "the bytes equal qfs-convert's")
        q.check(after["chunks_quantized"] == warmed["chunks_quantized"],
                "the read after prewarm quantized nothing")
        q.check(after["cache_hits"] > warmed["cache_hits"], "the read was served by the cache")
        q4 = file_stats(m, "w.Q4_0.gguf")
        q.check(q4["chunks_quantized"] > 0 and p["bytes_total"] > warmed["size"],
                "Q4_0 (after a comma) prewarmed too")
        q.check("prewarm: done" in m.log(), "prewarm logs its end")
        q.check(file_stats(m, "w.awq.safetensors")["chunks_quantized"] == 0,
                "AWQ not listed: left alone")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")

    # 3. -o prewarm=AWQ: <model>.awq/model.safetensors is then read from the cache only.
    check_options()
    with q.Mount(src, os.path.join(t, "mnt3"), f"cache={t}/cache3,rescan=0,prewarm=AWQ") as m:
        name = "w.awq.safetensors"
        p = wait_prewarm(m)
        warmed = file_stats(m, name)
        q.check(warmed["chunks_quantized"] > 0 and warmed["bytes_served"] == 0,
                f"prewarm quantized the AWQ file's chunks, reading nothing ({warmed})")
        q.check(file_stats(m, "v.awq.safetensors")["chunks_quantized"] > 0,
                "every model's AWQ file is prewarmed")
        q.check(file_stats(m, "w.Q8_0.gguf")["chunks_quantized"] == 0,
                "GGUF types not listed are left alone")
        data = read_direct(os.path.join(m.mnt, "w", "w.awq", "model.safetensors"))
        after = file_stats(m, name)
        q.check(data == awq_want, "the bytes equal those read without prewarm")
        q.check(after["chunks_quantized"] == warmed["chunks_quantized"],
                f"the read after prewarm quantized nothing ({warmed['chunks_quantized']} -> "
                f"{after['chunks_quantized']})")
        q.check(after["cache_hits"] > warmed["cache_hits"] and
                after["bytes_served"] == after["size"],
                f"the read was served by the cache ({warmed['cache_hits']} -> "
                f"{after['cache_hits']} hits)")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")
    q.finish()


if __name__ == "__main__":
    main()
