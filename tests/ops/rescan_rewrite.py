#!/usr/bin/env python3
"""A model rewritten in place (the same safetensors file overwritten with other weights)
while a reader has its virtual file open and is reading it: the reader gets exactly the
old file's bytes or EIO, never a mix; after the rescan a fresh open gets exactly the new
file's bytes (compared with qfs-convert of the old and the new source).  The daemon
survives a file truncated under its mapping (the SIGBUS guard)."""
import errno
import mmap
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

CONVERT = os.path.join(q.BUILD, "tools", "qfs-convert")
STEP = 64 << 10


def genmodel(path, seed):
    r = os.system(f"{q.GENMODEL} --out {path} --hidden 256 --layers 3 --heads 4 --kv-heads 2 "
                  f"--ff 768 --vocab 4096 --seed {seed} >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")


def convert(model, out):
    r = os.system(f"{CONVERT} {model} Q8_0 {out}")
    if r:
        sys.exit("qfs-convert failed")
    with open(out, "rb") as f:
        return f.read()


class Direct:
    """An O_DIRECT handle: every read goes to the daemon, in the order asked."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        self.buf = mmap.mmap(-1, STEP)

    def pread(self, off, n):
        got = os.preadv(self.fd, [memoryview(self.buf)[:n]], off)
        return bytes(self.buf[:got])

    def close(self):
        os.close(self.fd)
        self.buf.close()


def read_range(h, start, end, out, pause=0.0):
    """Read [start, end) into out (a bytearray, appended), pausing between reads; returns
    the errno that stopped it, or 0."""
    off = start
    while off < end:
        if pause:
            time.sleep(pause)
        try:
            b = h.pread(off, min(STEP, end - off))
        except OSError as e:
            return e.errno
        if not b:
            return -1
        out += b
        off += len(b)
    return 0


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def settle():
    """A writer that rewrites a model in several steps (config, then weights) can be
    described between two steps; the rescan after its last write (once the source was
    quiet for rescan.h's QFS_LIVE_QUIET_MS) is the one that counts."""
    time.sleep(1.5)


def wait_for(cond, secs):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def main():
    q.need_fuse()
    t = q.tmpdir("rewrite")
    src = os.path.join(t, "src")
    model = os.path.join(src, "m")
    os.makedirs(src)
    genmodel(model, 1)
    old = convert(model, os.path.join(t, "old.gguf"))
    # No prefetch: a chunk is produced exactly when a read asks for it.
    opts = f"cache={t}/cache,rescan=0,prefetch_threads=0"
    with q.Mount(src, os.path.join(t, "mnt"), opts) as m:
        path = os.path.join(m.mnt, "m", "m.Q8_0.gguf")
        q.check(read_all(path) == old, "the mounted file equals qfs-convert of the source")
        # 1. Deterministic: read part, rewrite, read the rest.  (Fresh cache keys: the first
        # read above quantized every chunk, so use a second model directory.)
        model2 = os.path.join(src, "n")
        genmodel(model2, 11)
        old2 = convert(model2, os.path.join(t, "old2.gguf"))
        path2 = os.path.join(m.mnt, "n", "n.Q8_0.gguf")
        q.check(wait_for(lambda: os.path.exists(path2), 8), "model n appears")
        st_old = os.stat(path2)
        h = Direct(path2)
        got = bytearray()
        quarter = len(old2) // 4
        read_range(h, 0, quarter, got)
        q.check(bytes(got) == old2[:quarter], "the first quarter: the old bytes")
        genmodel(model2, 12)  # in place: same size, other weights
        new2 = convert(model2, os.path.join(t, "new2.gguf"))
        settle()
        q.check(len(new2) == len(old2) and new2 != old2, "the rewrite changed the weights only")
        err = read_range(h, quarter, len(old2), got)
        q.check(bytes(got) == old2[:len(got)],
                f"the open handle never got new bytes ({len(got)} old bytes, then "
                f"{errno.errorcode.get(err, err) if err else 'EOF'})")
        q.check(err == errno.EIO, "a chunk not produced before the rewrite is EIO")
        # After the rescan: a new inode, exactly the new bytes.
        q.check(wait_for(lambda: os.stat(path2).st_ino != st_old.st_ino, 10),
                "after the rescan the virtual file has a new inode number")
        q.check(read_all(path2) == new2, "a fresh open reads exactly the new file's bytes")
        h2 = Direct(path2)
        fresh = bytearray()
        q.check(read_range(h2, 0, len(new2), fresh) == 0 and bytes(fresh) == new2,
                "a fresh O_DIRECT open reads exactly the new bytes too")
        h2.close()
        # The old handle still gives old bytes or EIO, never new ones.
        again = bytearray()
        err = read_range(h, 0, len(old2), again)
        q.check(bytes(again) == old2[:len(again)], f"the old handle, later: old bytes "
                f"({len(again)}) then {errno.errorcode.get(err, err) if err else 'EOF'}")
        h.close()

        # 2. Racing: readers hammer the file while it is rewritten (truncated, then
        # written) several times.  Each read is all old, all new... never a mix.
        for rnd in range(3):
            cur = read_all(path2) if rnd == 0 else convert(model2, os.path.join(t, "cur.gguf"))
            st_cur = os.stat(path2)
            handles = [Direct(path2) for _ in range(3)]
            results = []

            def reader(h, k):
                buf = bytearray()
                # Start each reader at a different place, wrap around once.
                start = (k * len(cur) // 3) // STEP * STEP
                e1 = read_range(h, start, len(cur), buf, 0.01)
                results.append((start, bytes(buf), e1))

            ths = [threading.Thread(target=reader, args=(h, k)) for k, h in enumerate(handles)]
            for th in ths:
                th.start()
            time.sleep(0.1 * rnd)  # the rewrite meets the readers at different places
            genmodel(model2, 20 + rnd)
            for th in ths:
                th.join()
            settle()
            for h in handles:
                h.close()
            mixed = [s for s, b, e in results if b != cur[s:s + len(b)]]
            q.check(not mixed, f"round {rnd}: every reader got a prefix of the old bytes "
                    f"({[(s, len(b), e) for s, b, e in results]})")
            newb = convert(model2, os.path.join(t, "new.gguf"))
            q.check(wait_for(lambda: os.stat(path2).st_ino != st_cur.st_ino, 10),
                    f"round {rnd}: rescanned")
            q.check(read_all(path2) == newb, f"round {rnd}: a fresh open reads the new bytes")
        q.check(m.proc.poll() is None, "the daemon is still running")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")
    q.finish()


if __name__ == "__main__":
    main()
