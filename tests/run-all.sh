#!/usr/bin/env bash
# The whole test suite: install what it needs, build, run every test.
#   bash tests/run-all.sh            (BUILD_DIR, MESON_ARGS override the defaults)
# After meson test: a short run of every fuzz target (tests/fuzz/run.sh, 25 s each in its
# own clang build, build-fuzz; FUZZ_SECONDS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build="${BUILD_DIR:-build-tests}"
[ -d "$build" ] || meson setup "$build" ${MESON_ARGS:-}
ninja -C "$build"
bash tests/setup-ref.sh "$build/npm"
set +e
meson test -C "$build" --print-errorlogs --num-processes 2 ${MESON_TEST_ARGS:-}
rc=$?
set -e
fuzz_rc=skip
if [ "${FUZZ_SECONDS:-25}" != 0 ]; then
  fuzz_rc=0
  bash tests/fuzz/run.sh || fuzz_rc=$?
fi
# A closing line any CI reader understands.
python3 - "$build/meson-logs/testlog.json" "$fuzz_rc" <<'PY'
import json, sys
ok = fail = skip = 0
# the fuzz run counts as one test
if sys.argv[2] == "skip": skip += 1
elif sys.argv[2] == "0": ok += 1
else: fail += 1
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r == "SKIP": skip += 1
    else: fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
[ $rc = 0 ] || exit $rc
[ "$fuzz_rc" = skip ] || exit "$fuzz_rc"
