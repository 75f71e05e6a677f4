#!/usr/bin/env bash
# The README's demo on a machine where no `systemd --user` manager can
# start (FLEET_SYSTEMD=/bin/false: the "manager" exits at once). The demo
# must say so, run every provider as a static pod of fake-kubelet and
# fake-cri, and still upgrade the fleet and be refused the rollback; asked
# for systemd by name, it must fail instead of falling back, as it must
# when the manager hangs.
# Usage: demo_without_systemd.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
demo="${1:?usage: demo_without_systemd.sh SOURCE_DIR BUILD_DIR}/scripts/demo.sh"
build=${2:?usage: demo_without_systemd.sh SOURCE_DIR BUILD_DIR}
fail() { echo "FAIL: $*" >&2; exit 1; }

rc=0
out=$(FLEET_QUIET=1 FLEET_SYSTEMD=/bin/false FLEET_RUNTIME=auto "$demo" "$build" 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" = 0 ] || fail "the demo exited $rc without systemd"
grep -q 'systemd --user cannot start here (/bin/false --user exited with status 1)' <<<"$out" ||
  fail "the demo did not say why it fell back"
# Two status tables (before and after the upgrade), three nodes each.
[ "$(grep -cE '^cp-[1-3] +cluster member +static pod ' <<<"$out")" = 6 ] ||
  fail "not every node's provider ran as a static pod"
[ "$(grep -cE '^cp-[1-3] .* static pod +0\.2\.0 +yes +yes .* match ' <<<"$out")" = 3 ] ||
  fail "not every node ended on 0.2.0, ready and in parity"
! grep -qE '^cp-[1-3] +cluster member +systemd ' <<<"$out" || fail "a node ran under systemd"

rc=0
out=$(FLEET_QUIET=1 FLEET_SYSTEMD=/bin/false FLEET_RUNTIME=systemd "$demo" "$build" 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" != 0 ] || fail "FLEET_RUNTIME=systemd fell back instead of failing"
grep -q '/bin/false --user exited with status 1' <<<"$out" || fail "the failure did not say why"
! grep -q 'static pod' <<<"$out" || fail "FLEET_RUNTIME=systemd ran static pods"
# A manager that starts but never opens its socket (a hung systemd) is
# given up after 15 s, and killed.
hung="$(mktemp -d /tmp/kmsfleet-hung.XXXXXX)"
trap 'rm -rf "$hung"' EXIT
printf '#!/bin/sh\nexec sleep 61.25\n' >"$hung/systemd"
chmod 755 "$hung/systemd"
rc=0 started=$SECONDS
out=$(FLEET_QUIET=1 FLEET_SYSTEMD="$hung/systemd" FLEET_RUNTIME=systemd "$demo" "$build" 2>&1) ||
  rc=$?
took=$((SECONDS - started))
printf '%s\n' "$out"
[ "$rc" != 0 ] || fail "a hung manager was taken for a running one"
grep -q "$hung/systemd --user opened no .* in 15 s" <<<"$out" || fail "the hang was not named"
# Left running, the demo's exit would wait for it (61 s).
[ "$took" -lt 45 ] || fail "the demo took ${took}s: the hung manager was left running"
! pgrep -f 'sleep 61[.]25' >/dev/null || fail "the hung manager was left running"
echo "PASS"
