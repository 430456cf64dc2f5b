#!/usr/bin/env python3
"""Device choice and CPU fallback (suite 'fs'; needs /dev/fuse).

  -o device=auto   mounts; without a usable GPU the status says "device": "cpu", a
                   device_note and a log line say why; reads give the same bytes as
                   device=cpu.  With a GPU the status names it ("cuda:0 <name>").
  -o device=cuda   never refuses to mount: without a usable GPU a warning line
                   ("device=cuda asked for, but ...: quantizing on the CPU") and the CPU.
  -o device=tpu, device=cuda:x, gpu_mem=1K   usage errors (exit 2) before mounting.
"""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def main():
    q.need_fuse()
    t = q.tmpdir("device")
    src = os.path.join(t, "src")
    os.makedirs(src)
    model = os.path.join(src, "dev-test")
    # hidden 512 x ff 1024: chunks above the dispatcher's GPU threshold (64K elements)
    r = subprocess.run([q.GENMODEL, "--out", model, "--hidden", "512", "--layers", "2", "--heads", "8",
                        "--kv-heads", "2", "--ff", "1024", "--vocab", "2048", "--seed", "5"],
                       stdout=subprocess.DEVNULL)
    if r.returncode:
        sys.exit("qfs-genmodel failed")

    for bad in ["device=tpu", "device=cuda:x", "device=", "gpu_mem=1K"]:
        p = subprocess.run([q.QUANTFS, src, os.path.join(t, "never"), "-f", "-o", bad],
                           capture_output=True, text=True)
        q.check(p.returncode == 2, f"-o {bad}: exit 2 (got {p.returncode}: {p.stderr.strip()})")

    sums = {}
    for dev in ["cpu", "auto", "cuda"]:
        mnt = os.path.join(t, "mnt-" + dev)
        with q.Mount(src, mnt, f"cache=none,device={dev},gpu_mem=256M") as m:
            st = m.status()
            name, note = st.get("device"), st.get("device_note")
            print(f"device={dev}: status device {name!r}, note {note!r}, gpu {st.get('gpu')}")
            q.check(isinstance(name, str) and (name == "cpu" or name.startswith("cuda:")),
                    f"device={dev}: status names the device")
            for f in ["dev-test.Q8_0.gguf", "dev-test.Q4_K_M.gguf"]:
                sums.setdefault(f, {})[dev] = digest(os.path.join(m.mnt, "dev-test", f))
            st = m.status()
            log = m.log()
        if dev == "cpu":
            q.check(name == "cpu" and note is None, "device=cpu: cpu, no note")
            q.check("device cpu (-o device=cpu)" in log, "device=cpu: logged")
            q.check(st["gpu"]["gpu_chunks"] == 0, "device=cpu: nothing on the GPU")
        elif name == "cpu":
            q.check(bool(note), f"device={dev}: the status says why the CPU is used")
            q.check(note in log, f"device={dev}: a log line says why ({note})")
            q.check(st["gpu"]["gpu_chunks"] == 0 and st["gpu"]["cpu_chunks"] > 0,
                    f"device={dev}: every chunk on the CPU")
            if dev == "cuda":
                q.check("device=cuda asked for, but" in log and "quantizing on the CPU" in log,
                        "device=cuda without a GPU: a warning line and the CPU")
        else:
            q.check(st["gpu"]["gpu_chunks"] > 0 and st["gpu"]["fallbacks"] == 0,
                    f"device={dev}: chunks quantized on {name}")
    for f, by in sums.items():
        q.check(len(set(by.values())) == 1, f"{f}: same bytes on every device ({by})")
    q.finish()


if __name__ == "__main__":
    main()
