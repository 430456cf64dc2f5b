#!/usr/bin/env python3
"""The disk cache through real mounts: a remount quantizes nothing and serves the same
bytes; two daemons sharing one cache directory; a flipped byte and a truncated entry are
detected, logged and recomputed; kill -9 during heavy reading leaves only valid entries;
cache_max is respected; a full (2 MiB tmpfs) cache directory keeps serving correct bytes;
with -o cache_hmac_key, entries written without the key are never served."""
import concurrent.futures as cf
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402


def ggufs(mnt):
    out = []
    for root, _dirs, files in os.walk(mnt):
        if ".quantfs" in root:
            continue
        out += [os.path.join(root, f) for f in files if f.endswith(".gguf")]
    return sorted(out)


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def read_all(mnt, threads=4):
    files = ggufs(mnt)
    with cf.ThreadPoolExecutor(threads) as ex:
        return {os.path.relpath(p, mnt): d for p, d in zip(files, ex.map(digest, files))}


def quantized(m):
    return sum(f["chunks_quantized"] for mm in m.status()["models"] for f in mm["files"])


def cache_cmd(*args):
    return subprocess.run([q.QUANTFS, "cache", *args], capture_output=True, text=True)


def entries(cache):
    out = []
    for root, _d, files in os.walk(os.path.join(cache, "v1")):
        out += [os.path.join(root, f) for f in files if not f.startswith(".")]
    return out


def drop_page_cache(mnt):
    """A new mount starts with an empty page cache anyway; nothing to do between mounts."""


def main():
    q.need_fuse()
    t = q.tmpdir("cache")
    src = os.path.join(t, "src")
    os.makedirs(src)
    r = os.system(f"{q.GENMODEL} --out {src}/gen-a --hidden 128 --layers 2 --heads 4 --kv-heads 2 "
                  f"--ff 256 --vocab 2048 --seed 11 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    fixtures = os.path.join(q.SHARED, "models") if q.SHARED else ""
    for name in ("babyllama-105", "tinyllama-256"):
        if fixtures and os.path.isdir(os.path.join(fixtures, name)):
            os.symlink(os.path.join(fixtures, name), os.path.join(src, name))
    cache = os.path.join(t, "cache")
    mnt = os.path.join(t, "mnt")

    # 1. First mount fills the cache; a remount quantizes nothing, same bytes.
    with q.Mount(src, mnt, f"cache={cache}") as m:
        ref = read_all(mnt)
        first = quantized(m)
    q.check(len(ref) >= 8 and first > 0, f"first mount read {len(ref)} files, {first} chunks quantized")
    q.check(oct(os.stat(cache).st_mode & 0o777) == "0o700", "cache directory is 0700")
    with q.Mount(src, mnt, f"cache={cache}") as m:
        again = read_all(mnt)
        st = m.status()
        n = quantized(m)
    q.check(n == 0, f"a remount quantized {n} chunks")
    q.check(again == ref, "a remount serves identical bytes")
    q.check(st["cache"]["srchash_hits"] > 0, "source hashes remembered across mounts "
            f"(srchash_hits {st['cache']['srchash_hits']})")
    v = cache_cmd("verify", cache)
    q.check(v.returncode == 0, "cache verify after two mounts: " + v.stdout.strip())

    # 2. A flipped byte and a truncated entry: detected, logged, recomputed.
    ents = sorted(entries(cache), key=os.path.getsize)
    big = [e for e in ents if os.path.getsize(e) > 4096]
    flipped, truncated = big[0], big[1]
    with open(flipped, "r+b") as f:
        f.seek(1000)
        b = f.read(1)
        f.seek(1000)
        f.write(bytes([b[0] ^ 0x20]))
    os.truncate(truncated, os.path.getsize(truncated) - 100)
    with q.Mount(src, mnt, f"cache={cache}") as m:
        again = read_all(mnt)
        st = m.status()
        n = quantized(m)
        log = m.log()
    q.check(again == ref, "damaged entries: identical bytes served")
    q.check(n == 2 and st["cache"]["corrupt_dropped"] == 2,
            f"damaged entries: both recomputed ({n} quantized, {st['cache']['corrupt_dropped']} dropped)")
    q.check(flipped in log and truncated in log, "damaged entries: both logged with their paths")
    q.check(cache_cmd("verify", cache).returncode == 0, "damaged entries: rewritten valid")

    # 3. Two daemons on one cache directory, both reading everything at once.
    shared = os.path.join(t, "shared-cache")
    m1 = q.Mount(src, os.path.join(t, "m1"), f"cache={shared}")
    m2 = q.Mount(src, os.path.join(t, "m2"), f"cache={shared}")
    try:
        with cf.ThreadPoolExecutor(2) as ex:
            d1, d2 = ex.map(lambda mm: read_all(mm.mnt, 3), (m1, m2))
    finally:
        m1.unmount()
        m2.unmount()
    q.check(d1 == ref and d2 == ref, "two daemons on one cache serve identical bytes")
    v = cache_cmd("verify", shared)
    q.check(v.returncode == 0, "two daemons leave only valid entries: " + v.stdout.strip())

    # 4. kill -9 during heavy reading, several times.
    kc = os.path.join(t, "kill-cache")
    for i in range(4):
        m = q.Mount(src, mnt, f"cache={kc}")
        readers = [subprocess.Popen(["cat"] + ggufs(mnt), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        time.sleep(0.3 + 0.2 * i)
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()
        for p in readers:
            p.wait()
        subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
        m.logf.close()
    v = cache_cmd("verify", kc)
    q.check(v.returncode == 0, "kill -9 x4 leaves only valid entries: " + v.stdout.strip())
    with q.Mount(src, mnt, f"cache={kc}") as m:
        q.check(read_all(mnt) == ref, "after kill -9, the next mount serves correct bytes")
    g = cache_cmd("gc", kc)
    q.check(g.returncode == 0, "gc after crashes: " + g.stdout.strip().replace("\n", "; "))

    # 5. cache_max respected while reading every type.
    bc = os.path.join(t, "bounded")
    limit = 4 << 20
    with q.Mount(src, mnt, f"cache={bc},cache_max={limit},cache_mem=8M") as m:
        got = read_all(mnt, 2)
        st = m.status()
    size = sum(os.path.getsize(e) for e in entries(bc))
    q.check(got == ref, "bounded cache: identical bytes")
    q.check(size <= limit, f"bounded cache: {size} bytes on disk <= {limit} "
            f"({st['cache']['disk_evicted']} evicted)")
    q.check(st["cache"]["disk_evicted"] > 0, "bounded cache: entries were evicted")

    # 6. ENOSPC: a 2 MiB tmpfs as the cache directory.
    fc = os.path.join(t, "full")
    os.makedirs(fc)
    if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", fc]).returncode == 0:
        try:
            with q.Mount(src, mnt, f"cache={fc},cache_mem=8M") as m:
                got = read_all(mnt, 2)
                st = m.status()
                log = m.log()
            q.check(got == ref, "full cache directory: identical bytes served")
            q.check(st["cache"]["disk_errors"] > 0 and log.count("No space left") == 1,
                    f"full cache directory: logged once ({st['cache']['disk_errors']} errors)")
            q.check(not any(f.startswith(".tmp") for _r, _d, fs in os.walk(fc) for f in fs),
                    "full cache directory: no partial entry left")
            q.check(cache_cmd("verify", fc).returncode == 0, "full cache directory: entries valid")
        finally:
            subprocess.run(["umount", fc], check=False)
    else:
        print("skip: ENOSPC case needs root to mount a tmpfs")

    # 7. -o cache_hmac_key on a shared read-write directory: entries written by a mount
    # without the key (anyone who can write the directory) are not served by a mount
    # with it: recomputed and replaced by authenticated ones; a mount with another key
    # does not trust those either.  The bytes served are the same throughout.
    rw = os.path.join(t, "rw-cache")
    key, key2 = os.path.join(t, "key"), os.path.join(t, "key2")
    with open(key, "wb") as f:
        f.write(os.urandom(32))
    with open(key2, "wb") as f:
        f.write(os.urandom(32))
    with q.Mount(src, mnt, f"cache={rw}") as m:
        q.check(read_all(mnt) == ref, "hmac: a mount without the key fills the directory")
        plain = quantized(m)
    v = cache_cmd("verify", "--hmac-key", key, rw)
    q.check(v.returncode == 1 and "without a valid HMAC" in v.stdout,
            "hmac: verify --hmac-key reports entries written without the key: " + v.stdout.strip())
    with q.Mount(src, mnt, f"cache={rw},cache_hmac_key={key}") as m:
        got = read_all(mnt)
        n = quantized(m)
        st = m.status()
        log = m.log()
    q.check(got == ref, "hmac: identical bytes served")
    q.check(n == plain and st["cache"].get("unauthenticated_dropped", 0) > 0,
            f"hmac: no entry without the HMAC served ({n} of {plain} chunks quantized again, "
            f"{st['cache'].get('unauthenticated_dropped')} entries dropped)")
    q.check("not served, recomputing" in log, "hmac: the dropped entries are logged")
    v = cache_cmd("verify", "--hmac-key", key, rw)
    q.check(v.returncode == 0, "hmac: entries rewritten authenticated: " + v.stdout.strip())
    q.check(cache_cmd("verify", rw).returncode == 0, "hmac: and valid without the key")
    with q.Mount(src, mnt, f"cache={rw},cache_hmac_key={key}") as m:
        q.check(read_all(mnt) == ref and quantized(m) == 0,
                f"hmac: a remount with the key quantizes nothing ({quantized(m)})")
    with q.Mount(src, mnt, f"cache={rw},cache_hmac_key={key2}") as m:
        q.check(read_all(mnt) == ref and quantized(m) == plain,
                f"hmac: another key trusts none of them ({quantized(m)} quantized)")
    g = cache_cmd("gc", "--hmac-key", key, rw)
    q.check(g.returncode == 0 and "removed 0 entries without" not in g.stdout,
            "hmac: gc --hmac-key removes the other key's entries: "
            + g.stdout.strip().replace("\n", "; "))
    q.check(cache_cmd("verify", "--hmac-key", key, rw).returncode == 0, "hmac: verify after gc")
    try:
        r = subprocess.run([q.QUANTFS, src, mnt, "-f", "-o",
                            f"cache={rw},cache_hmac_key={t}/nokey"],
                           capture_output=True, text=True, timeout=20)
        q.check(r.returncode != 0 and "nokey" in r.stderr,
                f"hmac: an unreadable key file stops the mount: {r.stderr.strip()[:120]}")
    except subprocess.TimeoutExpired:
        q.check(False, "hmac: an unreadable key file stops the mount (it mounted)")
        subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
