#!/usr/bin/env bash
# The local three-node demo (./dev demo builds and calls this):
#   three fake bao-kms-provider units under a real `systemd --user`
#   manager (where none can start, or with FLEET_RUNTIME=static_pod: three
#   fake providers as static pods of fake-kubelet), a fake OpenBao, three kmsfleetd agents electing a coordinator
#   over mTLS, and the operator (kmsfleetctl, with an operator
#   certificate) upgrading the fleet from 0.1.0 to 0.2.0 one node at a
#   time with live progress, then a rollback refused across a one-way
#   release, with its reason.
# Usage: scripts/demo.sh BUILD_DIR
set -euo pipefail

build=${1:?usage: demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)

# shellcheck source=lib/local_fleet.sh
. "$(dirname "$0")/lib/local_fleet.sh"
trap fleet_stop EXIT INT TERM
fleet_start

rel="$work/rel/0.2.0"
upgrade=(upgrade --to 0.2.0 --artifact "$rel/bao-kms-provider_0.2.0_linux_amd64"
         --checksums "$rel/checksums.txt" --signature "$rel/checksums.txt.sig"
         --policy "$work/policy.yaml")
# Static-pod nodes run an image: the release's kit names it, pinned.
[ "$runtime" = systemd ] || upgrade+=(--image "$(image_of 0.2.0)" --image-ref "$(kit_of 0.2.0)")

step "kmsfleetctl status: every node on 0.1.0, in key_id hash parity"
"$ctl" status "${locals[@]}" || true

step "kmsfleetctl upgrade --dry-run: the node order and every guard, nothing changed"
# It must refuse for the acknowledgement alone (a guard left to the real
# run, or parity's rounds still coming, is no refusal); anything else ends
# the demo here rather than in the upgrade.
rc=0; dry=$("$ctl" "${upgrade[@]}" --dry-run "${op[@]}" 2>&1) || rc=$?
printf '%s\n' "$dry"
others=$(sed -n 's/^  [a-z ]*[a-z]  *\[\([A-Z_]*\)\].*/\1/p' <<<"$dry" |
  grep -vx -e ACKNOWLEDGEMENT_REQUIRED -e NOT_EVALUATED -e PARITY_NOT_STABLE || true)
if [ "$rc" = 0 ] || [[ $dry != *ACKNOWLEDGEMENT_REQUIRED* ]] || [ -n "$others" ]; then
  echo "FAIL: the dry run exited $rc, not refused for the one-way acknowledgement alone" \
    "(other refusals: ${others:-none})" >&2
  exit 1
fi
echo "(exit $rc: 0.2.0 is one-way in the policy, so it must be acknowledged)"

step "kmsfleetctl upgrade --acknowledge ONE_WAY_UPGRADE --watch: one node at a time"
"$ctl" "${upgrade[@]}" --acknowledge ONE_WAY_UPGRADE --watch "${op[@]}"

step "kmsfleetctl status: every node on 0.2.0, still in parity"
"$ctl" status "${locals[@]}"

step "kmsfleetctl rollback: refused, 0.2.0 is one-way"
# The demo's point: it fails unless the rollback is refused for its reason.
if refusal=$("$ctl" rollback "${op[@]}" 2>&1); then
  printf '%s\n' "$refusal"
  echo "FAIL: the rollback across a one-way release was accepted" >&2
  exit 1
fi
printf '%s\n' "$refusal"
if [[ $refusal != *ROLLBACK_REFUSED_ONE_WAY* ]]; then
  echo "FAIL: the rollback was refused, but not as ROLLBACK_REFUSED_ONE_WAY" >&2
  exit 1
fi
echo "(refused: nothing was touched)"

step "kmsfleetctl history"
"$ctl" history "${op[@]}"

step "demo finished; stopping agents, providers and their runtime"
