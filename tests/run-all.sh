#!/usr/bin/env bash
# The whole test suite: install what it needs, build, run every test.
#   bash tests/run-all.sh            (BUILD_DIR, MESON_ARGS override the defaults)
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
# A closing line any CI reader understands.
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
ok = fail = skip = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r == "SKIP": skip += 1
    else: fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
exit $rc
