#!/bin/bash
# Mount smoke test: a generated model, a broken model, plain files, symlinks; multi- and
# single-threaded mounts, a memory-only cache; and /work/shared/models when present.
# Exit 77 (skipped) without /dev/fuse or fusermount3.
set -u
QFS_BUILD=${QFS_BUILD:?} QFS_SHARED=${QFS_SHARED:-}
QUANTFS=$QFS_BUILD/fs/quantfs
GENMODEL=$QFS_BUILD/tools/qfs-genmodel

if [ ! -c /dev/fuse ] || [ ! -r /dev/fuse ] || [ ! -w /dev/fuse ]; then
    echo "skip: /dev/fuse is missing or not usable"; exit 77
fi
if ! command -v fusermount3 >/dev/null; then
    echo "skip: fusermount3 not found"; exit 77
fi
command -v python3 >/dev/null || { echo "skip: python3 not found"; exit 77; }

T=$(mktemp -d /tmp/qfs-smoke.XXXXXX)
MNT=$T/mnt
PID=
NLOG=0
LOG=
fails=0

cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; fi
    [ -n "$PID" ] && kill "$PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# mount SRC [options...]: start quantfs in the foreground in the background, wait for it.
mount_qfs() {
    local src=$1; shift
    NLOG=$((NLOG + 1))
    LOG=$T/log.$NLOG
    "$QUANTFS" "$src" "$MNT" -f "$@" >"$LOG" 2>&1 &
    PID=$!
    for _ in $(seq 100); do
        if grep -qs " $MNT fuse" /proc/mounts; then return 0; fi
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "quantfs exited early:"; cat "$LOG"; PID=; return 1
        fi
        sleep 0.1
    done
    echo "mount did not appear"; cat "$LOG"; return 1
}

# unmount and check that the daemon exits 0.
umount_qfs() {
    fusermount3 -u "$MNT" || { fail "fusermount3 -u"; return; }
    local rc=0
    wait "$PID" || rc=$?
    PID=
    [ "$rc" = 0 ] && ok "daemon exited 0" || { fail "daemon exit status $rc"; cat "$LOG"; }
}

# ---- source tree -------------------------------------------------------------
SRC=$T/src
mkdir -p "$SRC" "$MNT" "$T/outside"
"$GENMODEL" --out "$SRC/tiny" --layers 2 --hidden 64 >/dev/null || { echo "FAIL: qfs-genmodel"; exit 1; }
mkdir "$SRC/broken" && echo '{ not json' >"$SRC/broken/config.json"
cp "$SRC/tiny/model.safetensors" "$SRC/broken/"
mkdir -p "$SRC/notes/sub" && echo hello >"$SRC/notes/sub/readme.txt"
head -c 100000 /dev/urandom >"$SRC/data.bin"
echo secret >"$T/outside/secret.txt"
ln -s "$T/outside/secret.txt" "$SRC/escape.txt"
ln -s "$T/outside" "$SRC/escape-dir"
ln -s data.bin "$SRC/data-link.bin"
mkfifo "$SRC/fifo"

# ---- multi-threaded mount ----------------------------------------------------
mount_qfs "$SRC" -o "cache=$T/cache" || exit 1
ls -a "$MNT" >"$T/root.ls"
for n in .quantfs broken data.bin data-link.bin notes tiny; do
    grep -qx -- "$n" "$T/root.ls" || fail "root listing lacks $n"
done
for n in escape.txt escape-dir fifo; do
    grep -qx -- "$n" "$T/root.ls" && fail "root listing shows $n"
done
[ -e "$MNT/escape.txt" ] && fail "escape.txt resolves"
ok "root listing"

ls "$MNT/tiny" >"$T/tiny.ls"
for f in $(ls "$SRC/tiny"); do
    grep -qx -- "$f" "$T/tiny.ls" || fail "tiny lacks $f"
    cmp -s "$SRC/tiny/$f" "$MNT/tiny/$f" || fail "tiny/$f differs from the source"
done
VF=$(grep -e '\.gguf$' -e '\.awq\.safetensors$' "$T/tiny.ls")
[ -n "$VF" ] && ok "virtual files: $(echo $VF)" || fail "no virtual .gguf files in tiny/"
grep -qx 'tiny.awq.safetensors' "$T/tiny.ls" && [ -d "$MNT/tiny/tiny.awq" ] ||
    fail "tiny/ lacks tiny.awq.safetensors or tiny.awq/"
cmp -s "$SRC/data.bin" "$MNT/data.bin" || fail "data.bin differs"
cmp -s "$SRC/data.bin" "$MNT/data-link.bin" || fail "data-link.bin differs"
cmp -s "$SRC/notes/sub/readme.txt" "$MNT/notes/sub/readme.txt" || fail "notes/sub/readme.txt differs"
ok "passthrough bytes"

# broken model: passed through as a plain directory, the mount stays up
cmp -s "$SRC/broken/config.json" "$MNT/broken/config.json" || fail "broken/config.json differs"
ls "$MNT/broken" | grep -q '\.gguf$' && fail "broken/ shows virtual files"
ok "broken model passed through"

# virtual files end to end
mkdir "$T/out"
for f in $VF; do
    size=$(stat -c %s "$MNT/tiny/$f")
    cat "$MNT/tiny/$f" >"$T/out/$f" || { fail "reading $f"; continue; }
    got=$(stat -c %s "$T/out/$f")
    [ "$size" = "$got" ] || fail "$f: stat size $size, read $got bytes"
    case "$f" in
    *.gguf) [ "$(head -c 4 "$T/out/$f")" = GGUF ] || fail "$f: no GGUF magic" ;;
    *) [ "$(tail -c +9 "$T/out/$f" | head -c 1)" = "{" ] || fail "$f: no safetensors header" ;;
    esac
    cmp -s "$T/out/$f" "$MNT/tiny/$f" || fail "$f: second read differs"
    for spec in "1 1" "4095 3" "4097 9000" "$((size / 3)) 65537" "$((size - 7)) 100"; do
        set -- $spec
        dd if="$MNT/tiny/$f" iflag=skip_bytes,count_bytes skip="$1" count="$2" bs=65536 \
            status=none >"$T/slice" || fail "$f: dd at $1"
        tail -c +$(($1 + 1)) "$T/out/$f" | head -c "$2" | cmp -s - "$T/slice" ||
            fail "$f: bytes at [$1, +$2) differ from the full read"
    done
done
ok "virtual files read"
[ "$(LC_ALL=C ls "$MNT/tiny/tiny.awq" | tr '\n' ' ')" = "config.json generation_config.json model.safetensors tokenizer.model tokenizer_config.json " ] ||
    fail "tiny.awq/ lists: $(ls "$MNT/tiny/tiny.awq" | tr '\n' ' ')"
cmp -s "$MNT/tiny/tiny.awq/model.safetensors" "$T/out/tiny.awq.safetensors" ||
    fail "tiny.awq/model.safetensors differs from tiny.awq.safetensors"
python3 -c 'import json, sys; assert json.load(open(sys.argv[1]))["quantization_config"]["quant_method"] == "awq"' \
    "$MNT/tiny/tiny.awq/config.json" || fail "tiny.awq/config.json"
ok "tiny.awq/ directory"

# read-only
touch "$MNT/tiny/new" 2>"$T/err"; grep -q "Read-only file system" "$T/err" || fail "touch: $(cat "$T/err")"
( echo x >"$MNT/data.bin" ) 2>"$T/err"; grep -q "Read-only file system" "$T/err" || fail "write: $(cat "$T/err")"
mkdir "$MNT/d" 2>"$T/err"; grep -q "Read-only file system" "$T/err" || fail "mkdir: $(cat "$T/err")"
rm -f "$MNT/data.bin" 2>"$T/err"; grep -q "Read-only file system" "$T/err" || fail "rm: $(cat "$T/err")"
ok "writes fail with EROFS"

# status
python3 -m json.tool "$MNT/.quantfs/status" >"$T/status.json" || fail "status is not JSON"
python3 - "$T/status.json" "$SRC" <<'PY' || fail "status content"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["source"] == sys.argv[2], s["source"]
names = [m["name"] for m in s["models"]]
assert "tiny" in names, names
tiny = s["models"][names.index("tiny")]
assert tiny["files"] and all(f["bytes_served"] > 0 for f in tiny["files"]), tiny["files"]
assert all(f["chunks_quantized"] + f["cache_hits"] > 0 for f in tiny["files"])
skipped = {k["path"].rsplit("/", 1)[-1] for k in s["skipped"]}
assert "broken" in skipped and "notes" in skipped, s["skipped"]
PY
ok "status JSON"
mountpoint -q "$MNT" || fail "mount went away"
cp -r "$T/out" "$T/out-mt"
umount_qfs

# ---- single-threaded, same disk cache: same bytes ------------------------------
mount_qfs "$SRC" -s -o "cache=$T/cache" || exit 1
for f in $VF; do cmp -s "$T/out-mt/$f" "$MNT/tiny/$f" || fail "$f differs single-threaded (disk cache)"; done
ok "single-threaded mount, disk cache"
umount_qfs

# ---- memory-only cache, source is the model directory itself ------------------
mount_qfs "$SRC/tiny" -o cache=none,cache_mem=16M,threads=4 || exit 1
for f in $VF; do cmp -s "$T/out-mt/$f" "$MNT/$f" || fail "$f differs (model root, cache=none)"; done
[ -f "$MNT/config.json" ] && [ -f "$MNT/.quantfs/status" ] || fail "model root listing"
ok "model as the source, memory cache"
umount_qfs

# ---- the shared models, read-only ----------------------------------------------
if [ -n "$QFS_SHARED" ] && [ -d "$QFS_SHARED/models" ]; then
    mount_qfs "$QFS_SHARED/models" -o "cache=$T/cache2" || exit 1
    for d in "$MNT"/*/; do
        m=$(basename "$d")
        for f in $(ls "$QFS_SHARED/models/$m"); do
            cmp -s "$QFS_SHARED/models/$m/$f" "$MNT/$m/$f" || fail "shared $m/$f differs"
        done
    done
    q=$(ls "$MNT"/*/*.Q8_0.gguf 2>/dev/null | head -1)
    if [ -n "$q" ]; then
        [ "$(cat "$q" | wc -c)" = "$(stat -c %s "$q")" ] || fail "$q: size mismatch"
        ok "shared models: $(ls "$MNT"/*/*.gguf | wc -l) virtual files, read $(basename "$q")"
    else
        fail "shared models: no virtual files"
    fi
    python3 -m json.tool "$MNT/.quantfs/status" >/dev/null || fail "shared status is not JSON"
    umount_qfs
else
    echo "note: $QFS_SHARED/models not present, shared-model mount not run"
fi

[ "$fails" = 0 ] && echo "mount-smoke: all passed" || echo "mount-smoke: $fails failures"
[ "$fails" = 0 ]
