#!/usr/bin/env bash
# Run every libFuzzer target of tests/fuzz for a while; exit 1 if any finds a crash, a
# leak, a timeout or an out-of-memory (its input is left in $out/findings/<target>/).
#
#   bash tests/fuzz/run.sh                  25 s per target (what tests/run-all.sh runs)
#   FUZZ_SECONDS=3600 bash tests/fuzz/run.sh                  a longer campaign
#   FUZZ_RUNS=10000000 FUZZ_SECONDS=0 bash tests/fuzz/run.sh  10 million executions each
#   FUZZ_TARGETS="safetensors manifest" bash tests/fuzz/run.sh     some targets only
#   FUZZ_JOBS=2       targets run side by side (default 1)
# Builds the clang fuzz build in $FUZZ_BUILD (default build-fuzz: CC=clang meson setup
# build-fuzz -Dfuzz=true -Dcuda=disabled), its corpus in $FUZZ_OUT (default
# $FUZZ_BUILD/fuzz-out/<target>: the hand-made seeds, inputs derived from ../shared's models
# by tests/fuzz/corpus.py, and what earlier runs found interesting).  A finding gets a
# fix and its input goes to tests/fuzz/regress/<target>/, replayed by meson test
# (fuzz-regress-<target>).
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${FUZZ_BUILD:-build-fuzz}"
out="${FUZZ_OUT:-$build/fuzz-out}"
secs="${FUZZ_SECONDS:-25}"
runs="${FUZZ_RUNS:--1}"
jobs="${FUZZ_JOBS:-1}"
targets="${FUZZ_TARGETS:-safetensors st_index hf_config tokenizer_json sentencepiece imatrix cache_entry manifest}"
if ! command -v clang >/dev/null; then
  echo "fuzz: clang not found (scripts/install-deps.sh installs it)" >&2
  exit 1
fi
[ -d "$build" ] || CC=clang meson setup "$build" -Dfuzz=true -Dcuda=disabled >/dev/null
if ! ninja -C "$build" >"$build/ninja.log" 2>&1; then
  cat "$build/ninja.log" >&2
  echo "fuzz: the fuzz build failed" >&2
  exit 1
fi
python3 tests/fuzz/corpus.py "$out/seed" "${QFS_SHARED:-}" >/dev/null
declare -A max_len=([safetensors]=16384 [st_index]=4096 [hf_config]=4096 [tokenizer_json]=65536
                    [sentencepiece]=65536 [imatrix]=65536 [cache_entry]=4096 [manifest]=4096)
run_one() {
  local t=$1 corpus="$out/corpus/$t" found="$out/findings/$t" log="$out/$t.log"
  mkdir -p "$corpus" "$found"
  local args=(-max_len="${max_len[$t]}" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=2048
              -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$found/")
  [ "$secs" != 0 ] && args+=(-max_total_time="$secs")
  [ "$runs" != -1 ] && args+=(-runs="$runs")
  local start=$SECONDS rc=0
  QFS_FUZZ_QUIET=1 "$build/tests/fuzz/fuzz-$t" "${args[@]}" "$corpus" "$out/seed/$t" \
    >"$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  printf 'fuzz: %-15s %s executions in %d s, corpus %s inputs: %s\n' "$t" "${execs:-?}" \
    $((SECONDS - start)) "$(ls "$corpus" | wc -l)" "$([ $rc = 0 ] && echo ok || echo "FINDING (rc $rc, $log)")"
  return $rc
}
fail=0
pids=()
for t in $targets; do
  run_one "$t" &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$jobs" ]; then
    wait "${pids[0]}" || fail=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || fail=1; done
if [ $fail != 0 ]; then
  echo "fuzz: findings under $out/findings/ (see the logs beside them)"
  find "$out/findings" -type f | head -20
fi
exit $fail
