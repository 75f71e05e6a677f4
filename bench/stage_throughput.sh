#!/bin/sh
# Staging verification throughput on a 200 MiB artifact, against
# `openssl dgst -sha256` on the same file in the same run; prints the ratio
# (goal: >= 0.9). Each tool runs three times after a warm-up read and the
# best run counts, so both read from the page cache.
# Usage: bench/stage_throughput.sh [BUILD_DIR] [SIZE_MIB]
set -eu
build=${1:-build/dev}
size_mib=${2:-200}
tool="$build/bench/kmsfleet_sha256_bench"
[ -x "$tool" ] || { echo "build the kmsfleet_sha256_bench target first" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$dir/artifact"
cat "$dir/artifact" > /dev/null

# Seconds since the epoch with nanoseconds, as a decimal.
now() { date +%s.%N; }
best() { sort -g | head -1; }

openssl_secs=$(for _ in 1 2 3; do
  s=$(now); openssl dgst -sha256 "$dir/artifact" > "$dir/openssl.out"; e=$(now)
  awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f\n", e - s }'
done | best)
hash_secs=$(for _ in 1 2 3; do "$tool" hash "$dir/artifact" | awk '{print $2}'; done | best)
copy_secs=$(for _ in 1 2 3; do "$tool" copy "$dir/artifact" "$dir/copy" | awk '{print $2}'; done | best)

ours=$("$tool" hash "$dir/artifact" | awk '{print $1}')
theirs=$(awk '{print $NF}' "$dir/openssl.out")
[ "$ours" = "$theirs" ] || { echo "digest mismatch: $ours vs $theirs" >&2; exit 1; }

awk -v n="$size_mib" -v o="$openssl_secs" -v h="$hash_secs" -v c="$copy_secs" 'BEGIN {
  mb = n * 1.048576
  printf "artifact: %d MiB\n", n
  printf "openssl dgst -sha256:  %.3f s  %4.0f MB/s (includes process start)\n", o, mb / o
  printf "kmsfleet Sha256File:   %.3f s  %4.0f MB/s\n", h, mb / h
  printf "kmsfleet staging copy: %.3f s  %4.0f MB/s (hash while copying, fsync, rename)\n", c, mb / c
  printf "ratio (Sha256File / openssl throughput): %.2f\n", o / h
  printf "ratio (staging copy / openssl throughput): %.2f\n", o / c
}'
