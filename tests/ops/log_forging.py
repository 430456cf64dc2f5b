#!/usr/bin/env python3
"""Names from the source cannot forge log lines.  A directory of the source named
"nl\\n<3>quantfs: error: FORGED LOG LINE" (and others holding ESC, CR, DEL, a C1
control and a byte that is not UTF-8) is logged, listed in the status file and printed
by `quantfs status` as one escaped line each: no output line starts with the forged
"<3>quantfs: error: FORGED", the status file (JSON) keeps the exact name, and a valid
UTF-8 name stays as it is."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

FORGED = "<3>quantfs: error: FORGED"


def main():
    q.need_fuse()
    t = q.tmpdir("logforge")
    src = os.path.join(t, "src")
    os.makedirs(src)
    r = os.system(f"{q.GENMODEL} --out {src}/good --hidden 64 --layers 1 --heads 4 "
                  f"--kv-heads 2 --ff 128 >/dev/null")
    if r:
        sys.exit("qfs-genmodel failed")
    names = [
        b"nl\n<3>quantfs: error: FORGED LOG LINE",
        b"cr\r<3>quantfs: error: FORGED CR",
        b"esc\x1b[2Jclear\x7fdel\xc2\x85nel",
        b"bad\xffutf8\n<3>quantfs: error: FORGED AFTER BAD BYTE",
        "modèle-été".encode(),
    ]
    for n in names:
        os.makedirs(os.path.join(os.fsencode(src), n))
    mnt = os.path.join(t, "mnt")
    with q.Mount(src, mnt, "cache=none") as m:
        st = m.status()
        r = subprocess.run([q.QUANTFS, "status", mnt], capture_output=True)
        log = m.log()
    out = r.stdout.decode(errors="replace")
    q.check(r.returncode == 0, f"quantfs status exits 0 ({r.returncode})")

    lines = log.splitlines()
    q.check(not [l for l in lines if l.startswith(FORGED)],
            "no daemon log line starts with the forged prefix:\n" + log)
    q.check(not [l for l in out.splitlines() if l.lstrip().startswith(FORGED)],
            "no `quantfs status` line starts with the forged prefix:\n" + out)
    q.check(not [l for l in out.splitlines() if l.lstrip().startswith("<")],
            "no `quantfs status` line starts with a priority prefix")
    q.check(any("nl\\n<3>quantfs: error: FORGED LOG LINE: not served as a model" in l
                for l in lines), "the newline is logged as \\n, on the skip's own line")
    q.check(any("cr\\r<3>quantfs" in l for l in lines), "a carriage return is logged as \\r")
    q.check(any("esc\\x1b[2Jclear\\x7fdel\\xc2\\x85nel" in l for l in lines),
            "ESC, DEL and a C1 control are logged as \\xHH")
    q.check(any("bad\\xffutf8\\n<3>" in l for l in lines), "a byte that is not UTF-8 is \\xHH")
    q.check(any("modèle-été: not served as a model" in l for l in lines),
            "valid UTF-8 is logged as it is")
    for n in (b"nl\n<3>", b"cr\r<3>"):
        escaped = n.decode().replace("\n", "\\n").replace("\r", "\\r")
        q.check(escaped in out, f"quantfs status prints {escaped!r} escaped")
    q.check("modèle-été" in out, "quantfs status keeps valid UTF-8")

    # The status file is JSON: the name is escaped by the encoder and decodes exactly.
    skipped = [s["path"] for s in st.get("skipped", [])]
    q.check(any(p.endswith("/nl\n<3>quantfs: error: FORGED LOG LINE") for p in skipped),
            f"the status file holds the exact name: {skipped}")
    q.finish()


if __name__ == "__main__":
    main()
