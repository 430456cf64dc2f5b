#!/usr/bin/env python3
"""Live rescans: a model directory added to or removed from SOURCE appears and disappears
in the mount without unmounting, on SIGHUP (with inotify off) and through inotify alone
(no signal, within a few seconds).  An entry that stays keeps its inode number."""
import os
import shutil
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402


def genmodel(path, seed):
    r = os.system(f"{q.GENMODEL} --out {path} --hidden 64 --layers 1 --heads 2 --kv-heads 1 "
                  f"--ff 128 --vocab 512 --seed {seed} >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")


def wait_for(cond, secs):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def listing(d):
    try:
        return sorted(os.listdir(d))
    except OSError:
        return None


def check_model(mnt, name):
    d = os.path.join(mnt, name)
    names = listing(d) or []
    path = os.path.join(d, f"{name}.Q8_0.gguf")
    ok = f"{name}.Q8_0.gguf" in names
    if ok:
        kv, tensors, _ = q.gguf_header(path, read_at)
        ok = len(tensors) > 0
    return ok


def read_at(path, off, n):
    """One open per read: no handle is left open (fusermount -u would find it busy)."""
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def main():
    q.need_fuse()
    t = q.tmpdir("rescan")
    src = os.path.join(t, "src")
    os.makedirs(src)
    genmodel(os.path.join(src, "alpha"), 1)

    # 1. SIGHUP, inotify off, no periodic rescan.
    with q.Mount(src, os.path.join(t, "mnt1"), f"cache={t}/cache,rescan=0,nowatch") as m:
        q.check(listing(m.mnt) == [".quantfs", "alpha"], f"alpha is served ({listing(m.mnt)})")
        ino_alpha = os.stat(os.path.join(m.mnt, "alpha", "alpha.Q8_0.gguf")).st_ino
        genmodel(os.path.join(src, "beta"), 2)
        time.sleep(1.0)
        q.check("beta" not in listing(m.mnt), "without a signal, beta does not appear (nowatch)")
        os.kill(m.proc.pid, signal.SIGHUP)
        q.check(wait_for(lambda: "beta" in (listing(m.mnt) or []), 5),
                "after SIGHUP beta appears")
        q.check(check_model(m.mnt, "beta"), "beta's virtual files are listed and readable")
        q.check(os.stat(os.path.join(m.mnt, "alpha", "alpha.Q8_0.gguf")).st_ino == ino_alpha,
                "alpha's virtual file kept its inode number")
        st = m.status()
        q.check(st["generation"] >= 1 and st["rescan"]["swaps"] >= 1,
                f"the status shows the new generation ({st['generation']})")
        q.check(m.proc.poll() is None, "SIGHUP did not stop the daemon")

        shutil.rmtree(os.path.join(src, "alpha"))
        os.kill(m.proc.pid, signal.SIGHUP)
        q.check(wait_for(lambda: "alpha" not in (listing(m.mnt) or []), 5),
                "after SIGHUP the removed alpha disappears")
        q.check(not os.path.exists(os.path.join(m.mnt, "alpha", "alpha.Q8_0.gguf")),
                "alpha's files are gone too")
        q.check(check_model(m.mnt, "beta"), "beta is still served")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")

    # 2. inotify alone.
    with q.Mount(src, os.path.join(t, "mnt2"), f"cache={t}/cache,rescan=0") as m:
        q.check(listing(m.mnt) == [".quantfs", "beta"], f"beta is served ({listing(m.mnt)})")
        genmodel(os.path.join(src, "gamma"), 3)
        q.check(wait_for(lambda: check_model(m.mnt, "gamma"), 8),
                "gamma appears without a signal (inotify)")
        # A directory that becomes a model later (created empty first).
        os.makedirs(os.path.join(src, "delta"))
        q.check(wait_for(lambda: "delta" in (listing(m.mnt) or []), 8),
                "an empty directory appears as a plain directory")
        genmodel(os.path.join(src, "delta"), 4)
        q.check(wait_for(lambda: check_model(m.mnt, "delta"), 8),
                "it becomes a model once files are written into it")
        shutil.rmtree(os.path.join(src, "gamma"))
        q.check(wait_for(lambda: "gamma" not in (listing(m.mnt) or []), 8),
                "gamma disappears without a signal (inotify)")
        q.check(check_model(m.mnt, "beta"), "beta is still served")
        q.check("rescan of" in m.log(), "rescans are logged")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")
    q.finish()


if __name__ == "__main__":
    main()
