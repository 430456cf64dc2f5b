"""Helpers for the ops tests: the unit's ExecStart as an argv, a model tree, a
NOTIFY_SOCKET listener.  Standard library only."""
import os
import re
import shlex
import socket
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402,F401

UNIT = os.path.join(q.BUILD, "systemd", "quantfs@.service")
HELPER = os.path.join(q.BUILD, "systemd", "mount.fuse.quantfs")


def unit_lines(path=UNIT):
    """[Service] key=value pairs of a unit file, in order (continuations joined)."""
    out, section = [], None
    text = open(path).read().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        k, _, v = line.partition("=")
        out.append((section, k.strip(), v.strip()))
    return out


def unit_value(key, section="Service", path=UNIT):
    vals = [v for s, k, v in unit_lines(path) if s == section and k == key]
    return vals[-1] if vals else None


def exec_start(env, mountpoint, path=UNIT):
    """The unit's ExecStart= as systemd would run it for instance mountpoint: %f is the
    mount point, %i its escaped form, ${VAR} one word (or part of one) and $VAR split at
    whitespace, from env (the EnvironmentFile's variables)."""
    line = unit_value("ExecStart", path=path)
    line = line.lstrip("-@:+!")
    inst = subprocess.run(["systemd-escape", "--path", mountpoint], capture_output=True,
                          text=True).stdout.strip() if have("systemd-escape") else mountpoint
    argv = []
    for word in shlex.split(line):
        word = word.replace("%f", mountpoint).replace("%i", inst).replace("%%", "%")
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""),
                           word))
    return argv


def have(prog):
    from shutil import which
    return which(prog) is not None


def make_models(dirpath, names=("alpha", "beta"), hidden=64, layers=2):
    os.makedirs(dirpath, exist_ok=True)
    for n in names:
        r = subprocess.run([q.GENMODEL, "--out", os.path.join(dirpath, n), "--layers", str(layers),
                            "--hidden", str(hidden)], stdout=subprocess.DEVNULL)
        if r.returncode:
            sys.exit("qfs-genmodel failed")


class NotifySocket:
    """A NOTIFY_SOCKET: AF_UNIX datagrams, as systemd receives them."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        addr = "\0" + path[1:] if path.startswith("@") else path
        self.sock.bind(addr)
        self.messages = []

    def wait_for(self, key, timeout):
        """Messages until one holds the line key (e.g. "READY=1"); that message, or None."""
        self.sock.settimeout(timeout)
        try:
            while True:
                m = self.sock.recv(4096).decode()
                self.messages.append(m)
                if key in m.split("\n"):
                    return m
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()
        if not self.path.startswith("@"):
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
