#!/usr/bin/env bash
# Builds the .deb and .rpm (scripts/package.sh), lints both, and puts the
# .deb through a real install on this machine: version, unit, man pages,
# completion, alert rules, no activation, an upgrade over itself that
# keeps a changed conffile, removal that keeps the state, purge.
#   check_packages.sh BUILD_DIR
# Needs root, and refuses to touch a kmsfleet package it did not install.
set -euo pipefail
build=${1:?build dir}
src=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^project(kmsfleet VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
out=$(mktemp -d)
marker=/var/lib/kmsfleet/.packages-test-marker
failures=0
passes=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# check WHAT CMD...: runs CMD quietly; its output is shown when it fails.
check() {
  local what=$1; shift
  if "$@" >"$out/check.log" 2>&1; then
    echo "ok: $what"; passes=$((passes + 1))
  else
    cat "$out/check.log" >&2; fail "$what"
  fi
}

if [ "$(id -u)" -ne 0 ]; then echo "skipped: needs root (dpkg -i)"; exit 0; fi
if dpkg -s kmsfleet >/dev/null 2>&1; then
  echo "FAIL: a kmsfleet package is already installed; not touching it" >&2
  exit 1
fi
cleanup() {
  dpkg -P kmsfleet >/dev/null 2>&1 || true
  rm -f "$marker" /var/lib/kmsfleet/journal/packages-test-op.json
  rmdir /var/lib/kmsfleet/journal /var/lib/kmsfleet 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

"$src/scripts/package.sh" "$build" "$out" >/dev/null
deb=$(ls "$out"/kmsfleet_"$version"_*.deb)
rpm=$(ls "$out"/kmsfleet-"$version"-1.*.rpm)

check "lintian: no errors" lintian --fail-on error "$deb"
check "rpmlint: no errors" rpmlint -c "$src/packaging/rpm/rpmlint.toml" "$rpm"
check "rpm marks config.yaml %config(noreplace)" \
  bash -c "rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' '$rpm' 2>/dev/null |
           grep -qx '/etc/kmsfleet/config.yaml cn'"
check "rpm ships the alert rules" \
  bash -c "rpm -qpl '$rpm' 2>/dev/null | grep -qx /usr/share/kmsfleet/prometheus/kmsfleet-alerts.yaml"

dpkg -i "$deb" >/dev/null 2>&1
check "kmsfleetd --version" bash -c "[ \"\$(kmsfleetd --version)\" = 'kmsfleetd $version' ]"
check "kmsfleetctl --version" bash -c "[ \"\$(kmsfleetctl --version)\" = 'kmsfleetctl $version' ]"
check "installed unit verifies, man page included" \
  systemd-analyze verify /usr/lib/systemd/system/kmsfleetd.service
check "man pages" bash -c "man -w kmsfleetd >/dev/null && man -w kmsfleetctl >/dev/null"
check "bash completion" test -f /usr/share/bash-completion/completions/kmsfleetctl
check "the shipped alert rules are valid" \
  promtool check rules /usr/share/kmsfleet/prometheus/kmsfleet-alerts.yaml
check "config.yaml is a conffile" \
  bash -c "dpkg-query -W -f='\${Conffiles}' kmsfleet | grep -q '/etc/kmsfleet/config.yaml'"
check "the shipped config is valid" kmsfleetd --check-config --config /etc/kmsfleet/config.yaml
check "the shipped static-pod config is valid" \
  kmsfleetd --check-config --config /usr/share/kmsfleet/static-pod/config.yaml
check "the static-pod manifest is shipped" test -f /usr/share/kmsfleet/static-pod/kmsfleetd.yaml
check "the gRPC API reference is shipped" test -f /usr/share/doc/kmsfleet/grpc-api.md
check "the runbooks kmsfleetd(8) points at are shipped" \
  test -f /usr/share/doc/kmsfleet/runbooks/break-glass.md -a \
  -f /usr/share/doc/kmsfleet/reference/compatibility-policy.md
check "group kmsfleet" getent group kmsfleet
check "pki directory 0750 root:kmsfleet" \
  bash -c "[ \"\$(stat -c '%a %U %G' /etc/kmsfleet/pki)\" = '750 root kmsfleet' ]"
check "install does not enable the service" \
  bash -c "! ls /etc/systemd/system/*.wants/kmsfleetd.service 2>/dev/null"

echo "# changed by the operator" >>/etc/kmsfleet/config.yaml
dpkg -i "$deb" >/dev/null </dev/null
check "upgrade over itself keeps the changed conffile" \
  grep -qx '# changed by the operator' /etc/kmsfleet/config.yaml

mkdir -p /var/lib/kmsfleet/journal && touch "$marker"
journal=/var/lib/kmsfleet/journal/packages-test-op.json
echo '{"operationId":"packages-test-op","kind":"swap","phase":"Stopped","open":true}' >"$journal"
check "remove is refused while a swap journal is open" \
  bash -c "! dpkg -r kmsfleet && test -x /usr/bin/kmsfleetd"
echo '{"operationId":"packages-test-op","kind":"swap","phase":"Stable","open":false}' >"$journal"
# The agent's stop can itself leave a swap open (one in its stabilisation
# window): a systemctl that stands in for it writes such a journal on stop.
mkdir -p "$out/bin" /run/systemd/system
cat >"$out/bin/systemctl" <<STUB
#!/bin/sh
case "\$*" in
  *" stop kmsfleetd.service"*)
    echo '{"operationId":"packages-test-op","kind":"swap","phase":"Verifying","open":true}' >"$journal" ;;
  *" start kmsfleetd.service"*) touch "$out/started" ;;
esac
exit 0
STUB
chmod 755 "$out/bin/systemctl"
check "remove is refused, and the agent started again, when its stop leaves a swap open" \
  bash -c "! PATH='$out/bin':\$PATH dpkg -r kmsfleet && test -x /usr/bin/kmsfleetd && test -f '$out/started'"
echo '{"operationId":"packages-test-op","kind":"swap","phase":"Stable","open":false}' >"$journal"
dpkg -r kmsfleet >/dev/null
rm -f "$journal" && rmdir /var/lib/kmsfleet/journal
check "remove deletes the programs" test ! -e /usr/bin/kmsfleetd
check "remove keeps the config" test -f /etc/kmsfleet/config.yaml
check "remove keeps the state" test -f "$marker"
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /usr/lib/systemd/system/kmsfleetd.service \
  /etc/systemd/system/multi-user.target.wants/kmsfleetd.service
dpkg -P kmsfleet >/dev/null
check "purge deletes the config" test ! -e /etc/kmsfleet/config.yaml
check "purge forgets that the operator enabled the agent" \
  test ! -L /etc/systemd/system/multi-user.target.wants/kmsfleetd.service
check "purge keeps the state" test -f "$marker"

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
