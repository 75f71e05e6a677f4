#!/usr/bin/env bash
# Checks systemd/kmsfleetd.service with systemd's own tools:
#   - `systemd-analyze verify` accepts it (unknown or misspelt directives,
#     bad values and a missing ExecStart binary all fail);
#   - `systemd-analyze security --offline` rates it no worse than the
#     exposure recorded in docs/systemd.md, so loosening a directive fails
#     here until the doc says why;
#   - it is Type=notify and never starts on install (WantedBy only);
#   - its privileges reach the provider's KMS socket: root under exactly
#     the unit's CapabilityBoundingSet connects to a 0660 socket of another
#     user and group in a 2750 directory, as the provider makes it (as
#     root only: the bounding set cannot be tried otherwise).
# The unit is checked as shipped except for ExecStart's path, which points
# at the kmsfleetd just built (verify needs the binary to exist), and the
# man page, which only the package installs.
#   check_systemd_unit.sh UNIT KMSFLEETD MAX_EXPOSURE_TIMES_10
set -euo pipefail
unit=${1:?unit file}
kmsfleetd=${2:?kmsfleetd binary}
max_exposure=${3:?max exposure x10}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -q '^ExecStart=/usr/bin/kmsfleetd ' "$unit" || { echo "FAIL: ExecStart is not /usr/bin/kmsfleetd" >&2; exit 1; }
sed "s|^ExecStart=/usr/bin/kmsfleetd |ExecStart=$kmsfleetd |" "$unit" >"$work/kmsfleetd.service"

systemd-analyze verify --man=no "$work/kmsfleetd.service"
echo "verify: ok"

grep -qx 'Type=notify' "$unit" || { echo "FAIL: not Type=notify" >&2; exit 1; }
if grep -q '^Alias=\|^RequiredBy=' "$unit"; then echo "FAIL: unexpected activation" >&2; exit 1; fi

report=$(systemd-analyze security --offline=yes "$work/kmsfleetd.service" 2>&1 | tail -1)
echo "security: $report"
if ! systemd-analyze security --offline=yes --threshold="$max_exposure" \
    "$work/kmsfleetd.service" >/dev/null 2>&1; then
  echo "FAIL: exposure above $max_exposure/10; record the relaxed directive in docs/systemd.md" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$unit")
  bounding=-all
  for cap in $caps; do bounding+=",+$(tr 'A-Z' 'a-z' <<<"${cap#CAP_}")"; done
  run="$work/run-openbao-kms"
  mkdir "$run"
  /usr/bin/python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o660)
os.chown(sys.argv[1], 65534, 65533)
s.listen(4)
time.sleep(30)' "$run/kms.sock" &
  listener=$!
  for _ in $(seq 100); do [ -S "$run/kms.sock" ] && break; sleep 0.05; done
  chown 65534:65533 "$run"
  chmod 2750 "$run"
  if ! setpriv --bounding-set="$bounding" --inh-caps=-all /usr/bin/python3 -c '
import socket, sys
socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$run/kms.sock"; then
    kill "$listener"
    echo "FAIL: under CapabilityBoundingSet=$caps root cannot connect to the provider's 0660 KMS socket" >&2
    exit 1
  fi
  kill "$listener"
  echo "kms socket: connected under $bounding"
  echo "2 passed, 0 failed"
else
  echo "kms socket: skipped (not root)"
  echo "1 passed, 0 failed"
fi
