#!/usr/bin/env python3
"""mount(8) and fstab: `mount -t fuse.quantfs SRC MNT -o ...`, `mount -t quantfs`, an fstab
line (mount -T FILE), the options mount(8) adds (rw by default, nofail, _netdev, x-*...),
an unknown option refused clearly, writes refused with EROFS, umount.

mount(8) looks for /sbin/mount.fuse.quantfs; the test does not install anything: it runs
in a private mount namespace (unshare -m) where /usr/sbin (= /sbin) is replaced by a
directory holding links to the real one plus this build's mount.fuse.quantfs and
mount.quantfs, i.e. what `meson install` puts there.  Exit 77 without /dev/fuse, unshare
or mount(8)."""
import errno
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opsutil as u  # noqa: E402
q = u.q


def sh(*argv, **kw):
    return subprocess.run(list(argv), capture_output=True, text=True, **kw)


def err(r):
    """The end of a failed command's stderr (a successful mount logs at info level)."""
    return f": {r.stderr.strip()[-500:]}" if r.returncode else ""


def mount_line(mnt):
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if p[1] == mnt:
                return p
    return None


def daemons(mnt):
    """pids of quantfs processes serving mnt."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0] == q.QUANTFS.encode() and mnt.encode() in argv:
                out.append(int(p))
    return out


def umount_and_wait(mnt, what):
    pids = daemons(mnt)
    r = sh("umount", mnt)
    q.check(r.returncode == 0 and mount_line(mnt) is None, f"{what}: umount {r.stderr.strip()}")
    for _ in range(100):
        if not any(os.path.exists(f"/proc/{p}") for p in pids):
            break
        time.sleep(0.05)
    q.check(pids and not any(os.path.exists(f"/proc/{p}") for p in pids),
            f"{what}: the daemon ({pids}) is gone after umount")


def check_mount(mnt, what):
    line = mount_line(mnt)
    q.check(line is not None and line[2] == "fuse.quantfs", f"{what}: mounted as fuse.quantfs ({line})")
    if not line:
        return
    opts = line[3].split(",")
    q.check("ro" in opts and "nosuid" in opts and "nodev" in opts,
            f"{what}: ro,nosuid,nodev ({line[3]})")
    q.check({"alpha", "beta"} <= set(os.listdir(mnt)), f"{what}: the models are listed")
    gg = [n for n in os.listdir(os.path.join(mnt, "alpha")) if n.endswith(".gguf")]
    with open(os.path.join(mnt, "alpha", gg[0]), "rb") as f:
        q.check(f.read(4) == b"GGUF", f"{what}: {gg[0]} reads")
    for path, flags in ((os.path.join(mnt, "alpha", "config.json"), os.O_WRONLY),
                        (os.path.join(mnt, "alpha", "new"), os.O_WRONLY | os.O_CREAT)):
        try:
            os.close(os.open(path, flags, 0o644))
            q.check(False, f"{what}: writing {os.path.basename(path)} fails")
        except OSError as e:
            q.check(e.errno == errno.EROFS, f"{what}: writing {os.path.basename(path)}: "
                    f"{os.strerror(e.errno)}")


def inner(t):
    src, mnt = os.path.join(t, "src"), os.path.join(t, "mnt")
    # /usr/sbin as mount(8) will see it: the real entries plus the helper and its alias.
    real, fake = os.path.join(t, "real-sbin"), os.path.join(t, "sbin")
    os.makedirs(real)
    os.makedirs(fake)
    r = sh("mount", "--bind", "/usr/sbin", real)
    if r.returncode:
        q.skip(f"bind mount in a private namespace failed: {r.stderr.strip()}")
    for n in os.listdir(real):
        os.symlink(os.path.join(real, n), os.path.join(fake, n))
    for n in ("mount.fuse.quantfs", "mount.quantfs"):
        if os.path.lexists(os.path.join(fake, n)):
            os.unlink(os.path.join(fake, n))
    shutil.copy(u.HELPER, os.path.join(fake, "mount.fuse.quantfs"))
    os.chmod(os.path.join(fake, "mount.fuse.quantfs"), 0o755)  # as meson install makes it
    os.symlink("mount.fuse.quantfs", os.path.join(fake, "mount.quantfs"))
    r = sh("mount", "--bind", fake, "/usr/sbin")
    if r.returncode:
        q.skip(f"cannot stand in for /usr/sbin: {r.stderr.strip()}")

    u.make_models(src)
    os.makedirs(mnt)
    cache = os.path.join(t, "cache")

    r = sh("mount", "-t", "fuse.quantfs", src, mnt, "-o",
           f"ro,allow_other,cache={cache},nofail,_netdev,x-systemd.automount,noatime")
    q.check(r.returncode == 0, "mount -t fuse.quantfs -o ro,allow_other,..." + err(r))
    if r.returncode == 0:
        check_mount(mnt, "mount -t fuse.quantfs")
        s = sh(q.QUANTFS, "status", mnt)
        q.check(s.returncode == 0 and "alpha" in s.stdout, "quantfs status on it")
        umount_and_wait(mnt, "mount -t fuse.quantfs")

    # mount(8) passes rw,dev,suid when nothing is said: still read-only, nosuid, nodev.
    r = sh("mount", "-t", "quantfs", src, mnt)
    q.check(r.returncode == 0, "mount -t quantfs, no options" + err(r))
    if r.returncode == 0:
        check_mount(mnt, "mount -t quantfs")
        umount_and_wait(mnt, "mount -t quantfs")

    fstab = os.path.join(t, "fstab")
    with open(fstab, "w") as f:
        f.write(f"# test fstab\n{src} {mnt} fuse.quantfs "
                f"ro,allow_other,cache={cache},noauto,nofail,x-systemd.requires=local-fs.target 0 0\n")
    r = sh("mount", "-T", fstab, mnt)
    q.check(r.returncode == 0, f"fstab line (mount -T FSTAB {mnt})" + err(r))
    if r.returncode == 0:
        check_mount(mnt, "fstab")
        umount_and_wait(mnt, "fstab")

    r = sh("mount", "-t", "fuse.quantfs", src, mnt, "-o", "ro,bogus=1")
    q.check(r.returncode != 0 and "unknown option" in r.stderr and mount_line(mnt) is None,
            f"an unknown option is refused: {r.stderr.strip()}")
    r = sh("mount", "-t", "fuse.quantfs", src, mnt, "-f", "-o", "ro")
    q.check(r.returncode == 0 and mount_line(mnt) is None, "mount -f (fake) mounts nothing")


def main():
    q.need_fuse()
    for prog in ("unshare", "mount", "umount"):
        if shutil.which(prog) is None:
            q.skip(f"{prog} not found")
    if os.environ.get("QFS_OPS_INNER"):
        inner(os.environ["QFS_OPS_INNER"])
        q.finish()
    t = q.tmpdir("mounthelper")
    env = dict(os.environ, QFS_OPS_INNER=t)
    r = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable,
                        os.path.abspath(__file__)], env=env)
    # Leaving the namespace unmounted everything in it; the daemons see ENODEV and exit.
    shutil.rmtree(t, ignore_errors=True)
    if r.returncode == 1 and not os.path.exists("/proc/self/ns/mnt"):
        q.skip("no mount namespaces")
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
