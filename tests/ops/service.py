#!/usr/bin/env python3
"""quantfs as quantfs@.service runs it: the unit's ExecStart (parsed from the unit this
build configured), an EnvironmentFile's variables, a NOTIFY_SOCKET made here.
- READY=1 comes from the main PID once the mount answers: the models list at that moment;
  a STATUS= line says what is served.  An abstract socket ("@name") works too.
- `quantfs status MOUNTPOINT` summarises the status file.
- SIGTERM while a reader is in the middle of a file: STOPPING=1 at once, the reader still
  gets every byte, then the mount goes and the daemon exits 0.
- stop_timeout: a file held open forever does not keep the daemon up past the timeout."""
import array
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opsutil as u  # noqa: E402
q = u.q

READER = r"""
import sys, time
path, step = sys.argv[1], int(sys.argv[2])
h, n = __import__("hashlib").sha256(), 0
with open(path, "rb", buffering=0) as f:
    while True:
        b = f.read(step)
        if not b:
            break
        h.update(b); n += len(b)
        if n == len(b):
            print("started", flush=True)
        time.sleep(0.01)
print(n, h.hexdigest(), flush=True)
"""


def mounted(mnt):
    with open("/proc/mounts") as f:
        return any(line.split()[1] == mnt for line in f)


def recv_creds(ns, timeout):
    """One datagram and the sender's pid (SO_PASSCRED), or (None, None)."""
    ns.sock.settimeout(timeout)
    try:
        msg, anc, _, _ = ns.sock.recvmsg(4096, socket.CMSG_SPACE(12))
    except socket.timeout:
        return None, None
    pid = None
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
            pid = array.array("i", data[:12])[0]
    ns.messages.append(msg.decode())
    return msg.decode(), pid


def start(src, mnt, opts, sock_path, log):
    env = {"QUANTFS_SOURCE": src, "QUANTFS_OPTIONS": opts}
    argv = u.exec_start(env, mnt)
    ns = u.NotifySocket(sock_path)
    ns.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    penv = dict(os.environ, NOTIFY_SOCKET=sock_path)
    os.makedirs(mnt, exist_ok=True)
    proc = subprocess.Popen(argv, env=penv, stdout=log, stderr=subprocess.STDOUT)
    return argv, ns, proc


def wait_ready(ns, proc, mnt):
    """Messages until READY=1; the listing of mnt taken as soon as it arrives."""
    deadline = time.time() + 30
    while time.time() < deadline:
        msg, pid = recv_creds(ns, 1)
        if msg is None:
            if proc.poll() is not None:
                return None, None, None
            continue
        if "READY=1" in msg.split("\n"):
            return msg, pid, sorted(os.listdir(mnt))
    return None, None, None


def stop(proc, mnt):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if mounted(mnt):
        subprocess.run(["fusermount3", "-u", "-z", mnt])


def main():
    q.need_fuse()
    if not os.path.exists(u.UNIT):
        sys.exit(f"{u.UNIT} missing (systemd/meson.build configures it)")
    t = q.tmpdir("service")
    src, mnt = os.path.join(t, "src"), os.path.join(t, "mnt")
    u.make_models(src, ("alpha", "beta"), hidden=128, layers=2)
    log = open(os.path.join(t, "log"), "w")

    argv, ns, proc = start(src, mnt, f"cache={t}/cache,stop_timeout=30",
                           os.path.join(t, "notify.sock"), log)
    try:
        q.check(argv[0] == q.QUANTFS and "-f" in argv and argv[-2:] == [src, mnt],
                f"ExecStart from the unit: {' '.join(argv)}")
        msg, pid, listing = wait_ready(ns, proc, mnt)
        q.check(msg is not None, "READY=1 received")
        q.check(pid == proc.pid, f"READY=1 sent by the main PID ({pid} vs {proc.pid})")
        q.check(listing is not None and {"alpha", "beta"} <= set(listing),
                f"the models are listed when READY=1 arrives: {listing}")
        status = [m for m in ns.messages if m.startswith("STATUS=") or "\nSTATUS=" in m]
        if not status:
            m, _ = recv_creds(ns, 5)
            status = [m] if m and "STATUS=" in m else []
        q.check(status and "2 models" in status[0], f"STATUS= line: {status[:1]}")

        r = subprocess.run([q.QUANTFS, "status", mnt], capture_output=True, text=True)
        q.check(r.returncode == 0 and "alpha" in r.stdout and "beta" in r.stdout
                and "device:   cpu" in r.stdout and "hit rate" in r.stdout,
                "quantfs status MOUNTPOINT:\n" + r.stdout + r.stderr)
        r = subprocess.run([q.QUANTFS, "status", t], capture_output=True, text=True)
        q.check(r.returncode == 1 and "quantfs mount" in r.stderr,
                f"quantfs status on a plain directory fails clearly: {r.stderr.strip()}")

        # The largest virtual file, read in full once for the reference bytes.
        d = os.path.join(mnt, "alpha")
        big = max((os.path.join(d, n) for n in os.listdir(d) if n.endswith(".gguf")),
                  key=os.path.getsize)
        size = os.path.getsize(big)
        with open(big, "rb") as f:
            ref = hashlib.sha256(f.read()).hexdigest()
        # Reads small enough that the reader takes a second or two.
        step = max(4096, size // 150)
        reader = subprocess.Popen([sys.executable, "-c", READER, big, str(step)],
                                  stdout=subprocess.PIPE, text=True)
        q.check(reader.stdout.readline().strip() == "started", "reader started")
        ns.messages.clear()
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        stopping = ns.wait_for("STOPPING=1", 10)
        q.check(stopping is not None and reader.poll() is None,
                f"STOPPING=1 at once, while the reader is still reading ({time.time() - t0:.2f} s)")
        q.check(mounted(mnt) and proc.poll() is None, "still mounted while the file is open")
        out = reader.communicate(timeout=60)[0].split()
        q.check(reader.returncode == 0 and out == [str(size), ref],
                f"the reader got all {size} bytes, unchanged ({out})")
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        q.check(rc == 0, f"daemon exited 0 after the reader ({rc}, {time.time() - t0:.2f} s)")
        q.check(not mounted(mnt), "unmounted")
    finally:
        stop(proc, mnt)
        ns.close()

    # An abstract NOTIFY_SOCKET; a file held open past stop_timeout.
    argv, ns, proc = start(src, mnt, f"cache={t}/cache,stop_timeout=1",
                           f"@qfs-ops-{os.getpid()}", log)
    try:
        msg, pid, listing = wait_ready(ns, proc, mnt)
        q.check(msg is not None and listing and "alpha" in listing,
                "READY=1 on an abstract socket")
        holder = open(os.path.join(mnt, "alpha", "config.json"), "rb")
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        dt = time.time() - t0
        q.check(rc == 0 and 0.8 < dt < 10,
                f"a file held open: exit {rc} after stop_timeout=1 ({dt:.2f} s)")
        q.check("STOPPING=1" in "\n".join(ns.messages) or ns.wait_for("STOPPING=1", 1),
                "STOPPING=1")
        try:
            holder.close()  # the connection is gone: ENOTCONN here is expected
        except OSError:
            pass
        q.check(not mounted(mnt), "unmounted (lazily)")
    finally:
        stop(proc, mnt)
        ns.close()
    log.close()
    if q.failures:
        print(open(os.path.join(t, "log")).read())
    q.finish()


if __name__ == "__main__":
    main()
