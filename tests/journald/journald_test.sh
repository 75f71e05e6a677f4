#!/bin/sh
# Log records against a real systemd-journald (docs/logs.md).
#
#   journald_test.sh <log_emitter>
#
# Re-runs itself in a private mount namespace with tmpfs over /run (and
# over /var/log/journal, if it exists), starts systemd-journald there and
# checks with journalctl that:
#  - log.target journal: `journalctl KMSFLEET_OPERATION=<id>` finds exactly
#    that operation's records, with PRIORITY and the KMSFLEET_* fields;
#  - auto picks the journal when $JOURNAL_STREAM names stderr, and stderr
#    when it names something else;
#  - stderr never sends native records;
#  - with journald gone, log.target journal falls back to stderr.
# The host's own journal (if any) is never touched. Needs root, unshare and
# systemd-journald; exits 77 (skipped) without them.
set -eu

emitter=$1
journald=""
for j in /usr/lib/systemd/systemd-journald /lib/systemd/systemd-journald; do
  if [ -x "$j" ]; then journald=$j; break; fi
done
if [ "$(id -u)" != 0 ] || [ -z "$journald" ] || ! command -v unshare >/dev/null ||
   ! command -v journalctl >/dev/null; then
  echo "SKIP: needs root, unshare, journalctl and systemd-journald"
  exit 77
fi
if [ -z "${KMSFLEET_JOURNALD_TEST_NS:-}" ]; then
  if ! unshare --mount --propagation private true 2>/dev/null; then
    echo "SKIP: cannot create a mount namespace here"
    exit 77
  fi
  KMSFLEET_JOURNALD_TEST_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi

mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal
if [ -d /var/log/journal ]; then mount -t tmpfs tmpfs /var/log/journal; fi
work=$(mktemp -d)
unset JOURNAL_STREAM
"$journald" >"$work/journald.log" 2>&1 &
journald_pid=$!
trap 'kill $journald_pid 2>/dev/null || true; rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*"
  echo "--- journal:"; journalctl -D /run/log/journal --no-pager -o short 2>&1 | tail -n 40
  echo "--- journald:"; cat "$work/journald.log"
  exit 1
}

i=0
until [ -S /run/systemd/journal/socket ] && [ -S /run/systemd/journal/stdout ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "journald did not open its sockets"
  sleep 0.05
done

q() { journalctl -D /run/log/journal --no-pager "$@"; }

# Waits until `q -o cat <match...>` prints `want` exactly (records arrive
# asynchronously), failing with what it printed instead.
expect_cat() {
  want=$1; shift
  i=0
  while :; do
    got=$(q -o cat "$@" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    i=$((i + 1))
    [ $i -lt 100 ] || fail "journalctl $*: want [$want], got [$got]"
    sleep 0.05
  done
}

expect_none() {
  got=$(q -o cat "$@" 2>/dev/null || true)
  [ -z "$got" ] || fail "journalctl $*: want nothing, got [$got]"
}

two_records="swap started
swap failed"

# log.target journal: one operation's records, and only those.
"$emitter" journal t1 2>"$work/t1.err" || fail "emitter t1 exited $?"
[ ! -s "$work/t1.err" ] || fail "journal target wrote to stderr: $(cat "$work/t1.err")"
expect_cat "$two_records" KMSFLEET_OPERATION=t1-a
expect_cat "other operation" KMSFLEET_OPERATION=t1-b
expect_cat "swap failed" KMSFLEET_OPERATION=t1-a PRIORITY=3
expect_cat "swap started" KMSFLEET_OPERATION=t1-a PRIORITY=6
expect_cat "other operation" KMSFLEET_OPERATION=t1-b PRIORITY=4
expect_cat "swap started" KMSFLEET_OPERATION=t1-a KMSFLEET_PLAN=p-1 KMSFLEET_PHASE=Staging \
  KMSFLEET_NODE=cp-1 SYSLOG_IDENTIFIER=log_emitter _TRANSPORT=journal
expect_cat "swap failed" KMSFLEET_OPERATION=t1-a KMSFLEET_REASON=UNIT_FAILED
q -o json KMSFLEET_OPERATION=t1-a PRIORITY=3 | grep -q '"KMSFLEET_ERROR":"first line\\nsecond line"' ||
  fail "multi-line field not kept: $(q -o json KMSFLEET_OPERATION=t1-a PRIORITY=3)"

# auto, stderr connected to the journal as systemd does: native records.
"$emitter" auto t2 --stream || fail "emitter t2 exited $?"
expect_cat "$two_records" KMSFLEET_OPERATION=t2-a _TRANSPORT=journal

# stderr, even when connected to the journal: lines on the stream only.
"$emitter" stderr t3 --stream || fail "emitter t3 exited $?"
i=0
until [ "$(q -o cat SYSLOG_IDENTIFIER=log_emitter _TRANSPORT=stdout | grep -c 'operation=t3-')" = 3 ]; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "stderr target over the stream: want 3 lines"
  sleep 0.05
done

# auto with an inherited $JOURNAL_STREAM that is not fd 2: stderr.
JOURNAL_STREAM=1:1 "$emitter" auto t4 2>"$work/t4.err" || fail "emitter t4 exited $?"
n=$(grep -c 'operation=t4-' "$work/t4.err" || true)
[ "$n" = 3 ] || fail "auto without the journal on stderr: want 3 stderr lines, got $n"
sleep 0.5
expect_none KMSFLEET_OPERATION=t3-a
expect_none KMSFLEET_OPERATION=t4-a

# journald gone: log.target journal falls back to stderr, losing nothing.
kill "$journald_pid"
wait "$journald_pid" 2>/dev/null || true
"$emitter" journal t5 2>"$work/t5.err" || fail "emitter t5 exited $?"
n=$(grep -c 'operation=t5-' "$work/t5.err" || true)
[ "$n" = 3 ] || fail "fallback: want 3 stderr lines, got $n: $(cat "$work/t5.err")"
grep -q 'level=error msg="swap failed".*reason=UNIT_FAILED' "$work/t5.err" ||
  fail "fallback line lacks its fields: $(cat "$work/t5.err")"
echo "PASS"
