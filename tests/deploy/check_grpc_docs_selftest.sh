#!/usr/bin/env bash
# check_grpc_docs.sh must fail on broken copies of what it checks: a method
# heading removed from the API page, a heading for a method no proto has,
# and a reason code that no page describes. Each run must exit 1 and name
# the gap; the unbroken copy must pass.
# Usage: check_grpc_docs_selftest.sh CHECKER PROTO_DIR API_DOC REASONS_H DOCS_DIR
set -euo pipefail
checker=$1 proto_dir=$2 api_doc=$3 reasons_h=$4 docs_dir=$5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect_gap NAME TEXT: the checker run on $tmp's copies must exit 1 and say TEXT.
expect_gap() {
  local out rc=0
  out=$("$checker" "$proto_dir" "$tmp/docs/grpc-api.md" "$tmp/reasons.h" "$tmp/docs" 2>&1) || rc=$?
  if [[ $rc -ne 1 || $out != *"$2"* ]]; then
    echo "FAIL: $1: exit $rc, wanted 1 and \"$2\" in:"; echo "$out"
    failures=$((failures + 1))
  else
    echo "ok: $1"
  fi
}
fresh_copy() {
  rm -rf "$tmp/docs"
  cp -r "$docs_dir" "$tmp/docs"
  cp "$api_doc" "$tmp/docs/grpc-api.md"
  cp "$reasons_h" "$tmp/reasons.h"
}

fresh_copy
if ! "$checker" "$proto_dir" "$tmp/docs/grpc-api.md" "$tmp/reasons.h" "$tmp/docs" >/dev/null; then
  echo "FAIL: the unbroken copy does not pass"; failures=$((failures + 1))
fi

fresh_copy
sed -i '/^### Agent.Swap$/d' "$tmp/docs/grpc-api.md"
expect_gap "a method heading removed" 'no heading "### Agent.Swap"'

fresh_copy
sed -i 's/^## kmsfleet.v1.Peer$/## Peer/' "$tmp/docs/grpc-api.md"
expect_gap "a service section renamed" 'no section "## kmsfleet.v1.Peer"'

fresh_copy
printf '\n### Agent.Teleport\n\nNot a method.\n' >>"$tmp/docs/grpc-api.md"
expect_gap "a heading for a method no proto has" '"### Agent.Teleport", which no proto declares'

fresh_copy
sed -i 's|^}  // namespace kmsfleet::reason|inline constexpr char kSelfTestOnly[] = "SELFTEST_UNDOCUMENTED";\n&|' "$tmp/reasons.h"
expect_gap "an undocumented reason code" 'reason code SELFTEST_UNDOCUMENTED'

fresh_copy
sed -i 's|^}  // namespace kmsfleet::reason|inline constexpr char kSelfTestSplit[] =\n    "SELFTEST_SPLIT_LINE";\n&|' "$tmp/reasons.h"
expect_gap "an undocumented code defined over two lines" 'reason code SELFTEST_SPLIT_LINE'

exit $((failures > 0))
