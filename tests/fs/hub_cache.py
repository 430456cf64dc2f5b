#!/usr/bin/env python3
"""The Hugging Face hub cache as SOURCE.

A hub-cache layout is built here from models made by qfs-genmodel, the way
huggingface_hub writes it: models--ORG--NAME/blobs/<sha256 (weights) | git sha1 (small
files)>, snapshots/<REV>/<file> symlinks to ../../blobs/<hash>, refs/main.  Checked:
  - models--org--tiny shows as org--tiny (refs/main's snapshot) and org--tiny@REV for both
    snapshots; the raw repository (blobs/, snapshots/) is not listed; other hub entries
    (.locks/, version.txt) are passed through;
  - every file of org--tiny (every GGUF type, every other virtual file, the loadable
    directories, the passthrough files) has the bytes of the same model served from a
    plain directory named org--tiny; org--tiny@REV2 those of the second model;
  - a snapshot symlink leaving its repository (to another repository's blob: inside
    SOURCE, outside its models--* directory) is not listed, with exactly one log line;
  - a repository with blobs/*.incomplete, a snapshot missing a shard its index names and
    one with a dangling symlink are not served, each logged once and listed under
    `skipped`; finishing the download (blob renamed, link made) serves it, without a
    signal (inotify on blobs/ and the snapshot);
  - moving refs/main (a new download) switches new opens of org--tiny to the other
    revision, without a signal (inotify on refs/); a file opened before keeps its bytes;
  - a snapshot directory as SOURCE, and a models--* directory as SOURCE."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qfstest as q  # noqa: E402

REV1 = "1" * 40
REV2 = "2" * 40


def genmodel(path, seed, *extra):
    r = subprocess.run([q.GENMODEL, "--out", path, "--arch", "llama", "--hidden", "64",
                        "--layers", "2", "--seed", str(seed), *extra],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"qfs-genmodel {path}: {r.stderr}")


def blob_name(data, lfs):
    """huggingface_hub's blob names: the SHA-256 of an LFS file, the git blob SHA-1 of
    another."""
    if lfs:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(repo, rev, model_dir, skip=()):
    """Put every file of model_dir into repo as snapshot rev (blobs + relative links)."""
    blobs = os.path.join(repo, "blobs")
    snap = os.path.join(repo, "snapshots", rev)
    os.makedirs(blobs, exist_ok=True)
    os.makedirs(snap, exist_ok=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    for name in sorted(os.listdir(model_dir)):
        if name in skip:
            continue
        data = open(os.path.join(model_dir, name), "rb").read()
        h = blob_name(data, name.endswith(".safetensors"))
        if not os.path.exists(os.path.join(blobs, h)):
            with open(os.path.join(blobs, h), "wb") as f:
                f.write(data)
        os.symlink(os.path.join("..", "..", "blobs", h), os.path.join(snap, name))
    return snap


def set_main(repo, rev):
    with open(os.path.join(repo, "refs", "main"), "w") as f:  # as huggingface_hub does
        f.write(rev)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def tree_digests(d):
    """{relative path: sha256} of every file below d (through the mount)."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in files:
            p = os.path.join(root, name)
            out[os.path.relpath(p, d)] = sha(p)
    return out


def wait_for(cond, secs):
    end = time.time() + secs
    while time.time() < end:
        try:
            if cond():
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return cond()


def listing(d):
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def main():
    q.need_fuse()
    t = q.tmpdir("hub")
    gen = os.path.join(t, "gen")
    a, b = os.path.join(gen, "a"), os.path.join(gen, "b")
    os.makedirs(gen)
    genmodel(a, 1)
    genmodel(b, 2, "--shards", "2")
    # The same models as plain directories of the name the hub views' model has.
    plain_a, plain_b = os.path.join(t, "plain-a"), os.path.join(t, "plain-b")
    shutil.copytree(a, os.path.join(plain_a, "org--tiny"))
    shutil.copytree(b, os.path.join(plain_b, "org--tiny"))

    hub = os.path.join(t, "hub")
    tiny = os.path.join(hub, "models--org--tiny")
    add_snapshot(tiny, REV1, a)
    add_snapshot(tiny, REV2, b)
    set_main(tiny, REV1)
    # another repository, and a link from org--tiny's snapshot to its blob
    other = os.path.join(hub, "models--org--other")
    add_snapshot(other, REV1, a)
    set_main(other, REV1)
    other_blob = sorted(os.listdir(os.path.join(other, "blobs")))[0]
    os.symlink(os.path.join("..", "..", "..", "models--org--other", "blobs", other_blob),
               os.path.join(tiny, "snapshots", REV1, "escape.txt"))
    # a download in progress: model.safetensors still a blob being written
    partial = os.path.join(hub, "models--org--partial")
    add_snapshot(partial, REV1, a, skip=("model.safetensors",))
    set_main(partial, REV1)
    st_data = open(os.path.join(a, "model.safetensors"), "rb").read()
    st_blob = blob_name(st_data, True)
    with open(os.path.join(partial, "blobs", st_blob + ".incomplete"), "wb") as f:
        f.write(st_data[: len(st_data) // 2])
    # a sharded snapshot missing a shard, and one with a dangling link
    sharded = os.path.join(hub, "models--org--sharded")
    add_snapshot(sharded, REV2, b, skip=("model-00002-of-00002.safetensors",))
    set_main(sharded, REV2)
    dangle = os.path.join(hub, "models--org--dangle")
    snap = add_snapshot(dangle, REV1, a)
    os.symlink(os.path.join("..", "..", "blobs", "0" * 64), os.path.join(snap, "extra.json"))
    set_main(dangle, REV1)
    # a file the model reader uses, linked out of its repository: the model is not served
    evil = os.path.join(hub, "models--org--evil")
    snap = add_snapshot(evil, REV1, a, skip=("tokenizer_config.json",))
    os.symlink(os.path.join("..", "..", "..", "models--org--tiny", "snapshots", REV1,
                            "tokenizer_config.json"), os.path.join(snap, "tokenizer_config.json"))
    set_main(evil, REV1)
    os.makedirs(os.path.join(hub, ".locks", "models--org--tiny"))
    with open(os.path.join(hub, "version.txt"), "w") as f:
        f.write("1")

    with q.Mount(plain_a, os.path.join(t, "mnt-a"), "rescan=0") as m:
        want_a = tree_digests(os.path.join(m.mnt, "org--tiny"))
    with q.Mount(plain_b, os.path.join(t, "mnt-b"), "rescan=0") as m:
        want_b = tree_digests(os.path.join(m.mnt, "org--tiny"))
    q.check(len([k for k in want_a if k.endswith(".gguf")]) >= 20,
            f"the plain model serves GGUF files ({len(want_a)} files)")

    with q.Mount(hub, os.path.join(t, "mnt"), f"cache={t}/cache,rescan=0") as m:
        top = [x for x in listing(m.mnt) if not x.startswith("org--evil")]
        evil_dir = os.path.join(m.mnt, "org--evil")
        q.check(not any(x.endswith(".gguf") for x in listing(evil_dir)),
                "a model whose tokenizer file leaves its repository is not served")
        q.check("tokenizer_config.json" not in listing(evil_dir), "nor that file listed")
        q.check(top == [".locks", ".quantfs", "org--other", f"org--other@{REV1}", "org--tiny",
                        f"org--tiny@{REV1}", f"org--tiny@{REV2}", "version.txt"],
                f"hub views listed, raw repositories and partial downloads not ({top})")
        got = tree_digests(os.path.join(m.mnt, "org--tiny"))
        want_a_ = dict(want_a)
        q.check(set(got) == set(want_a_),
                f"org--tiny lists the plain model's files ({sorted(set(got) ^ set(want_a_))})")
        diff = [k for k in want_a_ if got.get(k) != want_a_[k]]
        q.check(not diff, f"every file of org--tiny equals the plain model's ({len(got)} files; "
                f"differ: {diff[:5]})")
        got2 = tree_digests(os.path.join(m.mnt, f"org--tiny@{REV2}"))
        q.check(got2 == want_b, f"org--tiny@REV2 equals the plain second model "
                f"({[k for k in want_b if got2.get(k) != want_b[k]][:5]})")
        q.check(tree_digests(os.path.join(m.mnt, f"org--tiny@{REV1}")) == got,
                "org--tiny@REV1 equals org--tiny")
        log = m.log()
        esc = [ln for ln in log.splitlines() if "escape.txt" in ln]
        q.check(len(esc) == 1 and "outside its repository" in esc[0],
                f"the link leaving its repository is refused with one log line ({esc})")
        q.check("escape.txt" not in listing(os.path.join(m.mnt, "org--tiny")),
                "and not listed")
        st = m.status()
        skipped = {s["path"]: s["reason"] for s in st["skipped"]}
        real = os.path.realpath(hub)
        want_skips = {
            os.path.join(real, "models--org--partial"): "incomplete download: blobs/",
            os.path.join(real, "models--org--sharded", "snapshots", REV2):
                "model-00002-of-00002.safetensors (named by model.safetensors.index.json)",
            os.path.join(real, "models--org--dangle", "snapshots", REV1):
                "extra.json is a dangling symlink",
            os.path.join(real, "models--org--evil", "snapshots", REV1):
                "cannot open the model: Permission denied",
        }
        for p, why in want_skips.items():
            q.check(why in skipped.get(p, ""), f"skipped: {p}: {skipped.get(p)}")
            n = sum(1 for ln in log.splitlines() if p + ":" in ln and "not served" in ln)
            q.check(n == 1, f"logged once ({n})")
        paths = sorted(x["path"] for x in st["models"])
        q.check(paths == ["/org--other", f"/org--other@{REV1}", "/org--tiny",
                          f"/org--tiny@{REV1}", f"/org--tiny@{REV2}"], f"status models {paths}")
        names = {x["name"] for x in st["models"]}
        q.check(names == {"org--tiny", "org--other"}, f"model names {names}")

        # The download finishes: its blob renamed into place, then linked.
        os.rename(os.path.join(partial, "blobs", st_blob + ".incomplete"),
                  os.path.join(partial, "blobs", st_blob))
        with open(os.path.join(partial, "blobs", st_blob), "wb") as f:
            f.write(st_data)
        os.symlink(os.path.join("..", "..", "blobs", st_blob),
                   os.path.join(partial, "snapshots", REV1, "model.safetensors"))
        q.check(wait_for(lambda: "org--partial.Q8_0.gguf" in listing(
            os.path.join(m.mnt, "org--partial")), 10),
            "the finished download is served without a signal")

        # refs/main moves to REV2 (a new download): new opens see it, an open file keeps its
        # bytes.
        q8 = os.path.join(m.mnt, "org--tiny", "org--tiny.Q8_0.gguf")
        old = open(q8, "rb")
        set_main(tiny, REV2)
        q.check(wait_for(lambda: sha(q8) == want_b["org--tiny.Q8_0.gguf"], 10),
                "after refs/main moves, a new open reads the other revision (inotify on refs/)")
        h = hashlib.sha256()
        while True:
            chunk = old.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
        old.close()
        q.check(h.hexdigest() == want_a["org--tiny.Q8_0.gguf"],
                "a file opened before keeps the old revision's bytes")
        got = tree_digests(os.path.join(m.mnt, "org--tiny"))
        q.check(got == want_b, "every file of org--tiny is now the second model's")
        q.check(f"org--tiny@{REV1}" in listing(m.mnt), "both revisions are still listed")
        q.check(m.status()["generation"] >= 1, "a new generation")
        rc = m.unmount()
        q.check(rc == 0, f"clean exit ({rc})")

    # A snapshot directory as SOURCE: its links into ../../blobs are followed.
    with q.Mount(os.path.join(tiny, "snapshots", REV1), os.path.join(t, "mnt-snap"),
                 "rescan=0") as m:
        got = tree_digests(m.mnt)
        got.pop(".quantfs/status", None)
        got.pop(".quantfs/metrics", None)
        q.check(got == want_a, "a snapshot as SOURCE serves the model as org--tiny "
                f"({sorted(set(got) ^ set(want_a))[:5]})")
        q.check(sum(1 for ln in m.log().splitlines() if "escape.txt" in ln) == 1,
                "its link leaving the repository is refused with one log line")
        q.check(m.status()["models"][0]["name"] == "org--tiny", "named org--tiny")
    # A models--* directory as SOURCE: its views.
    with q.Mount(tiny, os.path.join(t, "mnt-repo"), "rescan=0") as m:
        top = listing(m.mnt)
        q.check(top == [".quantfs", "org--tiny", f"org--tiny@{REV1}", f"org--tiny@{REV2}"],
                f"a repository as SOURCE lists its views ({top})")
        q.check(tree_digests(os.path.join(m.mnt, "org--tiny")) == want_b,
                "its org--tiny is refs/main's revision")
    shutil.rmtree(t, ignore_errors=True)
    q.finish()


if __name__ == "__main__":
    main()
