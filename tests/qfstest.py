"""Helpers shared by the Python integration tests: environment, skips, mounting quantfs,
a GGUF header reader.  Standard library only."""
import json
import mmap
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("QFS_BUILD", "")
SRC = os.environ.get("QFS_SRC", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.environ.get("QFS_SHARED", "")
LLAMA_LIB_DIR = os.environ.get("QFS_LLAMA_LIB_DIR", "")
QUANTFS = os.path.join(BUILD, "fs", "quantfs")
GENMODEL = os.path.join(BUILD, "tools", "qfs-genmodel")
LLAMA_REF = os.path.join(BUILD, "tests", "ref", "qfs-llama-ref")

failures = 0


def skip(why):
    print("skip:", why)
    sys.exit(77)


def need_fuse():
    if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        skip("/dev/fuse is missing or not usable")
    if shutil.which("fusermount3") is None:
        skip("fusermount3 not found")


def need_shared():
    if not SHARED or not os.path.isdir(os.path.join(SHARED, "models")):
        skip("../shared (fixtures and references) not found")


def need_llama():
    if not LLAMA_LIB_DIR or not os.path.exists(os.path.join(LLAMA_LIB_DIR, "libllama.v0.5.0.so")):
        skip("llama.cpp libraries not installed (run tests/setup-ref.sh)")


def check(cond, what):
    global failures
    if cond:
        print("ok:", what)
    else:
        print("FAIL:", what)
        failures += 1
    return cond


def finish():
    print(f"{failures} failure(s)")
    sys.exit(1 if failures else 0)


def genmodel(model, args, seed=3):
    """qfs-genmodel ARGS into MODEL.  A Qwen3-MoE model gets the qwen3moe-tiny fixture's
    tokenizer.json (the converter, and quantfs, read its vocabulary from tokenizer.json
    only, which the generator does not write)."""
    subprocess.run([GENMODEL, "--out", model, *args, "--seed", str(seed)], check=True,
                   stdout=subprocess.DEVNULL)
    with open(os.path.join(model, "config.json")) as f:
        arch = json.load(f)["architectures"][0]
    if arch == "Qwen3MoeForCausalLM":
        for n in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(SHARED, "models", "qwen3moe-tiny", n), model)


def tmpdir(tag):
    return tempfile.mkdtemp(prefix=f"qfs-{tag}.")


class Mount:
    """quantfs SRC MNT -f [-o opts] in the background; unmounted on exit."""

    def __init__(self, src, mnt, opts=None, log=None):
        self.src, self.mnt = src, mnt
        os.makedirs(mnt, exist_ok=True)
        if self._mounted():
            # a mount left behind would answer in place of the new daemon
            raise RuntimeError(f"{mnt} is already a mount point")
        self.log_path = log or (mnt.rstrip("/") + ".log")
        args = [QUANTFS, src, mnt, "-f"]
        if opts:
            args += ["-o", opts]
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.logf, stderr=subprocess.STDOUT)
        for _ in range(300):
            if self._mounted():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"quantfs exited early ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError("mount did not appear:\n" + self.log())

    def _mounted(self):
        with open("/proc/mounts") as f:
            return any(line.split()[1] == self.mnt for line in f)

    def log(self):
        self.logf.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def status(self):
        with open(os.path.join(self.mnt, ".quantfs", "status")) as f:
            return json.load(f)

    def unmount(self):
        if self._mounted():
            subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # the unmount failed (a file still open on it): kill the daemon and detach
            # the mount lazily, so that no dead mount point is left behind
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["fusermount3", "-uz", self.mnt], check=False)
            rc = -9
        self.logf.close()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unmount()


def gguf_header(path, read_at=None):
    """(metadata dict, [(name, ne, type, absolute offset)], data start) of a GGUF file,
    reading only the header.  read_at(path, off, n) returns exactly those bytes; the
    default reads through the page cache."""
    if read_at is None:
        # closed here, not by the garbage collector: _parse's closures form a cycle,
        # and an open file on a mount makes its unmount fail (EBUSY)
        with open(path, "rb") as f:
            def read_f(_p, off, n):
                f.seek(off)
                return f.read(n)
            return gguf_header(path, read_f)

    def rd(off, n):
        out = read_at(path, off, n)
        if len(out) != n:
            raise ValueError("truncated GGUF header")
        return out
    return _parse(rd)


def _parse(rd):
    o = 0

    def u(fmt):
        nonlocal o
        size = struct.calcsize(fmt)
        v = struct.unpack(fmt, rd(o, size))
        o += size
        return v[0]

    def s():
        nonlocal o
        n = u("<Q")
        v = rd(o, n).decode()
        o += n
        return v

    fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def val(t):
        if t == 8:
            return s()
        if t == 9:
            at = u("<I")
            n = u("<Q")
            return [val(at) for _ in range(n)]
        return u(fmts[t])

    if rd(0, 4) != b"GGUF":
        raise ValueError("not a GGUF file")
    o = 4
    u("<I")
    nt, nk = u("<Q"), u("<Q")
    kv = {}
    for _ in range(nk):
        k = s()
        kv[k] = val(u("<I"))
    ts = []
    for _ in range(nt):
        name = s()
        nd = u("<I")
        ne = [u("<Q") for _ in range(nd)]
        ty = u("<I")
        ts.append([name, ne, ty, u("<Q")])
    align = kv.get("general.alignment", 32)
    start = (o + align - 1) // align * align
    for t in ts:
        t[3] += start
    return kv, [tuple(t) for t in ts], start


def pread_direct(path, off, n):
    """Exactly [off, off+n) through O_DIRECT: FUSE passes unaligned direct reads through
    as they are, so the daemon sees exactly this range (no readahead into the tensors)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, max(n, 1))
        got = os.preadv(fd, [memoryview(buf)[:n]], off)
        return bytes(buf[:got])
    finally:
        os.close(fd)


def drop_caches():
    """Drop the kernel page cache (root only); False when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_all(path, bs=1 << 20):
    """Read a whole file sequentially: (bytes, seconds)."""
    t = time.perf_counter()
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bs)
            if not b:
                break
            n += len(b)
    return n, time.perf_counter() - t
