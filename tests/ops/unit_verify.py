#!/usr/bin/env python3
"""systemd-analyze verify on quantfs@.service (as the instance quantfs@mnt-models,
the unit configured for this build), on the example mount unit and on the metrics
publishing service and timer examples.  Exit 77 where
systemd-analyze is missing."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import opsutil as u  # noqa: E402
q = u.q


def main():
    if shutil.which("systemd-analyze") is None:
        q.skip("systemd-analyze not found (apt-get install systemd)")
    t = q.tmpdir("unitverify")
    inst = os.path.join(t, "quantfs@mnt-models.service")
    shutil.copy(u.UNIT, inst)
    mnt = os.path.join(t, "mnt-models.mount")
    shutil.copy(os.path.join(q.SRC, "systemd", "mnt-models.mount.example"), mnt)
    metrics = []
    for kind in ("service", "timer"):
        metrics.append(os.path.join(t, f"quantfs-metrics@mnt-models.{kind}"))
        shutil.copy(os.path.join(q.SRC, "systemd", f"quantfs-metrics@.{kind}.example"),
                    metrics[-1])
    for f in (inst, mnt, *metrics):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", f], capture_output=True,
                           text=True, cwd=t)
        out = (r.stdout + r.stderr).strip()
        q.check(r.returncode == 0 and not out, f"systemd-analyze verify {os.path.basename(f)}"
                + (f": {out}" if out else ""))
    q.check(u.unit_value("Type") == "notify", "Type=notify")
    q.check(u.unit_value("Restart") == "on-failure", "Restart=on-failure")
    q.check("/dev/fuse" in (u.unit_value("DeviceAllow") or ""), "DeviceAllow=/dev/fuse")
    q.check(u.unit_value("NoNewPrivileges") == "yes", "NoNewPrivileges=yes")
    # A mount namespace of its own would hide the mount from the host.
    for k in ("ProtectSystem", "ProtectHome", "PrivateTmp", "ReadWritePaths", "PrivateDevices",
              "PrivateMounts"):
        q.check(u.unit_value(k) is None, f"no {k}= (it would hide the mount)")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
