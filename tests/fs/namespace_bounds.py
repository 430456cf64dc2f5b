#!/usr/bin/env python3
"""Namespace bounds: a hostile source tree cannot make the mount's namespace explode.

1. Ten `ln -s . lN` links in one directory (QFS_NS_LINKS overrides the count) grew the
   namespace as about 10^7 entries (OOM, no mount).  A symlink to an ancestor directory
   is not followed, nor one to a directory already listed elsewhere (links between two
   listed directories, an alias of a model directory): the mount appears within
   10 s beside a good model, which serves its files, and the hostile directory is
   listed without the links.
2. -o max_entries=N: a directory that would take the namespace past N entries is not
   listed, with one log line, and is recorded under `skipped` in the status file; the
   good model (listed before it) still serves.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

LINKS = int(os.environ.get("QFS_NS_LINKS", "10"))
BOUND_S = 10.0


def mounted(mnt):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def timed_mount(src, mnt, opts, log, limit):
    """Start quantfs; (proc, seconds until the mount appeared, or None after limit)."""
    os.makedirs(mnt, exist_ok=True)
    args = [q.QUANTFS, src, mnt, "-f", "-o", opts]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    while time.monotonic() - t0 < limit:
        if mounted(mnt):
            return p, time.monotonic() - t0
        if p.poll() is not None:
            return p, None
        time.sleep(0.02)
    return p, None


def stop(p, mnt):
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", mnt], check=False)
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def read_status(mnt):
    import json
    with open(os.path.join(mnt, ".quantfs", "status")) as f:
        return json.load(f)


def good_serves(mnt):
    d = os.path.join(mnt, "good")
    names = os.listdir(d)
    ok = "good.Q8_0.gguf" in names and "config.json" in names
    if ok:
        p = os.path.join(d, "good.Q4_0.gguf")
        with open(p, "rb") as f:
            magic = f.read(4)
        n, _ = q.read_all(p)
        ok = magic == b"GGUF" and n == os.path.getsize(p) > 4096
    return ok, names


def main():
    q.need_fuse()
    t = q.tmpdir("nsbound")
    src = os.path.join(t, "src")
    os.makedirs(src)
    r = os.system(f"{q.GENMODEL} --out {src}/good --hidden 64 --layers 1 --heads 4 "
                  f"--kv-heads 2 --ff 128 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    hostile = os.path.join(src, "hostile")
    os.makedirs(hostile)
    for i in range(LINKS):
        os.symlink(".", os.path.join(hostile, f"l{i}"))
    os.symlink("..", os.path.join(hostile, "up"))  # the source root: an ancestor too
    for a, b in (("loop-a", "loop-b"), ("loop-b", "loop-a")):
        os.makedirs(os.path.join(src, a), exist_ok=True)
        os.symlink(f"../{b}", os.path.join(src, a, f"to-{b}"))
    os.symlink("good", os.path.join(src, "alias"))  # the model again: listed once

    # 1. The links are not followed: the mount is up within seconds.
    mnt = os.path.join(t, "mnt")
    logp = os.path.join(t, "mnt.log")
    with open(logp, "w") as log:
        p, secs = timed_mount(src, mnt, "cache=none", log, 120)
        try:
            q.check(secs is not None and secs < BOUND_S,
                    f"mounted with {LINKS} `ln -s . lN` links in "
                    f"{'%.2f s' % secs if secs is not None else 'no time (not mounted)'}"
                    f" (bound {BOUND_S:.0f} s)")
            if secs is None:
                q.finish()
            ok, names = good_serves(mnt)
            q.check(ok, f"the good model serves its files: {sorted(names)[:6]}...")
            q.check(os.listdir(hostile.replace(src, mnt)) == [],
                    f"the hostile directory is listed without its links: "
                    f"{os.listdir(hostile.replace(src, mnt))[:5]}")
            a = sorted(os.listdir(os.path.join(mnt, "loop-a")))
            b = sorted(os.listdir(os.path.join(mnt, "loop-b")))
            q.check(a == [] and b == [],
                    f"mutual links between listed directories: not followed (loop-a {a}, "
                    f"loop-b {b})")
            root = sorted(os.listdir(mnt))
            q.check("alias" not in root and "good" in root,
                    f"a symlink to the listed model directory is not listed again: {root}")
            st = read_status(mnt)
            q.check([m["path"] for m in st["models"]] == ["/good"],
                    f"one model: {[m['path'] for m in st['models']]}")
            q.check(any(s["path"].endswith("/hostile") for s in st["skipped"]),
                    "the hostile directory is listed under skipped")
        finally:
            stop(p, mnt)
    log = open(logp, errors="replace").read()
    entries = [l for l in log.splitlines() if " entries, " in l and " models" in l]
    q.check(entries, f"entry count logged: {entries[:1]}")
    if entries:
        n = int(entries[0].split(": ")[-1].split()[0])
        q.check(n < 200, f"{n} entries in the namespace")
    anc = [l for l in log.splitlines() if "symlink not followed" in l and "ancestor" in l]
    q.check(len(anc) == LINKS + 1, f"{len(anc)} lines for links to an ancestor ({LINKS} + up)")
    dup = [l for l in log.splitlines() if "symlink not followed" in l and "already listed" in l]
    q.check(len(dup) == 3, f"{len(dup)} lines for links to directories listed elsewhere "
            "(alias, to-loop-b, to-loop-a)")

    # 2. The entry limit: `many` would pass it, is skipped, recorded and logged once.
    many = os.path.join(src, "many")
    os.makedirs(many)
    for i in range(500):
        open(os.path.join(many, f"f{i:03}"), "w").close()
    with open(logp, "w") as log:
        p, secs = timed_mount(src, mnt, "cache=none,max_entries=300", log, 60)
        try:
            q.check(secs is not None, "mounted with max_entries=300")
            if secs is None:
                q.finish()
            ok, names = good_serves(mnt)
            q.check(ok, "the good model still serves its files")
            q.check(os.listdir(os.path.join(mnt, "many")) == [], "`many` is not listed")
            st = read_status(mnt)
            sk = [s for s in st["skipped"]
                  if s["path"].endswith("/many") and "max_entries" in s["reason"]]
            q.check(len(sk) == 1, f"`many` is under skipped with the reason: {sk}")
        finally:
            stop(p, mnt)
    log = open(logp, errors="replace").read()
    lim = [l for l in log.splitlines() if "/many" in l and "max_entries" in l]
    q.check(len(lim) == 1, f"one log line for `many`: {lim}")
    r = subprocess.run([q.QUANTFS, src, mnt, "-o", "max_entries=0"], capture_output=True,
                       text=True)
    q.check(r.returncode == 2 and "max_entries" in r.stderr,
            f"max_entries=0 is refused: {r.stderr.strip()}")
    q.finish()


if __name__ == "__main__":
    main()
