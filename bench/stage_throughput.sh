#!/bin/sh
# Staging verification throughput on a 200 MB artifact, against
# `openssl dgst -sha256` on the same file in the same run; prints the ratio
# (goal: >= 0.9). Each tool runs three times after a warm-up read, and the
# best run counts, so both read from the page cache.
# Usage: bench/stage_throughput.sh [BUILD_DIR] [SIZE_MB]
set -eu
build=${1:-build/dev}
size_mb=${2:-200}
tool="$build/bench/kmsfleet_sha256_bench"
[ -x "$tool" ] || { echo "build the kmsfleet_sha256_bench target first" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c "$((size_mb * 1024 * 1024))" /dev/urandom > "$dir/artifact"
cat "$dir/artifact" > /dev/null

now() { date +%s.%N; }
best() { sort -n | head -1; }

openssl_secs=$(for i in 1 2 3; do
  s=$(now); openssl dgst -sha256 "$dir/artifact" > "$dir/openssl.out"; e=$(now)
  echo "$e - $s" | bc -l
done | best)
hash_secs=$(for i in 1 2 3; do "$tool" hash "$dir/artifact" | awk '{print $2}'; done | best)
copy_secs=$(for i in 1 2 3; do "$tool" copy "$dir/artifact" "$dir/copy" | awk '{print $2}'; done | best)

ours=$("$tool" hash "$dir/artifact" | awk '{print $1}')
theirs=$(awk '{print $NF}' "$dir/openssl.out")
[ "$ours" = "$theirs" ] || { echo "digest mismatch: $ours vs $theirs" >&2; exit 1; }

mb=$(echo "$size_mb * 1.048576" | bc -l)
printf 'artifact: %d MiB\n' "$size_mb"
printf 'openssl dgst -sha256: %.3f s  %.0f MB/s\n' "$openssl_secs" "$(echo "$mb / $openssl_secs" | bc -l)"
printf 'kmsfleet Sha256File:   %.3f s  %.0f MB/s\n' "$hash_secs" "$(echo "$mb / $hash_secs" | bc -l)"
printf 'kmsfleet stage copy:   %.3f s  %.0f MB/s (hash while copying + fsync)\n' "$copy_secs" "$(echo "$mb / $copy_secs" | bc -l)"
printf 'ratio (verification / openssl): %.2f\n' "$(echo "$openssl_secs / $hash_secs" | bc -l)"
