#!/usr/bin/env bash
# Runs every libFuzzer target for a fixed time. The checked-in corpus,
# tests/fuzz/corpus/<target>/, is read; what the fuzzer finds goes to
# <build>/fuzz-corpus/<target>/ and crashes to <build>/fuzz-crashes/. A
# crash input, once fixed, belongs in the checked-in corpus.
#   scripts/fuzz.sh BUILD_DIR SECONDS
# FUZZ_TIMEOUT_S (default 2): an input slower than this is a failure.
set -euo pipefail
build=${1:?build dir, e.g. build/asan}
seconds=${2:-60}
src=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/fuzz-crashes"
status=0
for corpus in "$src"/tests/fuzz/corpus/*/; do
  target=$(basename "$corpus")
  bin="$build/tests/fuzz/$target"
  [ -x "$bin" ] || { echo "fuzz: $bin not built (needs the asan preset)" >&2; exit 2; }
  mkdir -p "$build/fuzz-corpus/$target"
  log="$build/fuzz-crashes/$target.log"
  if "$bin" -max_total_time="$seconds" -timeout="${FUZZ_TIMEOUT_S:-2}" -rss_limit_mb=2048 -max_len=1048576 \
      -artifact_prefix="$build/fuzz-crashes/$target-" -print_final_stats=1 \
      "$build/fuzz-corpus/$target" "$corpus" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$target: ${execs:-?} execs in ${seconds}s, no crash"
  else
    echo "$target: FAILED, see $log; its end:"
    tail -n 40 "$log"
    status=1
  fi
done
exit $status
