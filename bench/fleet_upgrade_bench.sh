#!/usr/bin/env bash
# Fleet upgrade benchmark (issue 9), on the local three-node fleet of
# scripts/lib/local_fleet.sh whose fake providers are ready as soon as they
# start:
#  1. kmsfleet's orchestration overhead: the wall time of
#     `kmsfleetctl upgrade --watch` minus, for every node, its provider's
#     restart-to-ready (the fake's own serve.stopping -> serve.ready log
#     lines) and its stabilisation window; per node, with its parts.
#  2. The same upgrade done by a script that follows the upstream runbook by
#     hand (per node: doctor with the new binary, stop, replace, start,
#     `curl --retry 60 --retry-delay 2` on /ready, the same stabilisation
#     wait, compare the metric hash with the other nodes), on the same fleet
#     and timings: both wall times and their ratio.
# Usage: bench/fleet_upgrade_bench.sh BUILD_DIR [STABILIZATION_MS] [PLAN_TICK_MS]
set -euo pipefail

build=$(cd "${1:?usage: fleet_upgrade_bench.sh BUILD_DIR [STABILIZATION_MS] [PLAN_TICK_MS]}" && pwd)
stabilization_ms=${2:-500}
export FLEET_STABILIZATION_MS=$stabilization_ms FLEET_PLAN_TICK_MS=${3:-50} FLEET_POLL_MS=20
export FLEET_QUIET=1
# The by-hand runbook below stops and starts systemd units.
export FLEET_RUNTIME=systemd
# shellcheck source=../scripts/lib/local_fleet.sh
. "$(dirname "$0")/../scripts/lib/local_fleet.sh"
trap fleet_stop EXIT INT TERM
fleet_start
release 0.3.0

now_ms() { date +%s%3N; }
ts_ms() { date -d "$1" +%s%3N; }

# The provider's last restart on NODE: "STOPPING_MS READY_MS".
last_restart() {
  local log="$work/$1/provider.log" stopping ready
  stopping=$(grep '"serve.stopping"' "$log" | tail -1 | sed 's/.*"ts":"\([^"]*\)".*/\1/')
  ready=$(grep '"serve.ready"' "$log" | tail -1 | sed 's/.*"ts":"\([^"]*\)".*/\1/')
  echo "$(ts_ms "$stopping") $(ts_ms "$ready")"
}

hash_of() {  # the node's openbao_kms_status_key_id_hash label
  curl -sf "http://127.0.0.1:${metrics_port[$1]}/metrics" |
    sed -n 's/^openbao_kms_status_key_id_hash{hash="\([^"]*\)"} 1$/\1/p'
}

echo "fleet upgrade benchmark: 3 nodes, stabilisation ${stabilization_ms} ms," \
  "plan tick ${FLEET_PLAN_TICK_MS} ms, executor poll ${FLEET_POLL_MS} ms"

# ---- 1. kmsfleet -------------------------------------------------------
rel="$work/rel/0.2.0"
start=$(now_ms)
# --remote-paths: every node reads the release where it lies, as the
# by-hand runbook below does, so no upload is counted in the overhead.
"$ctl" upgrade --to 0.2.0 --artifact "$rel/bao-kms-provider_0.2.0_linux_amd64" \
  --checksums "$rel/checksums.txt" --signature "$rel/checksums.txt.sig" \
  --remote-paths --watch "${op[@]}" >"$work/watch.log"
end=$(now_ms)
kmsfleet_ms=$((end - start))
# The plan's own times: from its creation on the coordinator to the commit
# that completed it (the issue's "total plan time").
plan_json=$("$ctl" plan --output json "${op[@]}")
created=$(jq -r '.plan.created_unix_ms' <<<"$plan_json")
completed=$(jq -r '.plan.updated_unix_ms' <<<"$plan_json")
[ "$(jq -r '.plan.phase' <<<"$plan_json")" = PLAN_PHASE_COMPLETED ] ||
  { echo "the plan did not complete: $plan_json" >&2; exit 1; }
plan_ms=$((completed - created))
provider_ms=0
echo "kmsfleet: the plan took ${plan_ms} ms from its creation to its completion;"
echo "  kmsfleetctl upgrade --watch took ${kmsfleet_ms} ms" \
  "(+$((created - start)) ms to start, connect and propose, +$((end - completed)) ms to see the end and exit)"
# Nodes in the order they went down.
order=$(for node in "${nodes[@]}"; do echo "$(last_restart "$node") $node"; done | sort -n)
previous_up=$created  # when the previous step's provider time ended
while read -r stopping ready node; do
  restart=$((ready - stopping))
  provider_ms=$((provider_ms + restart + stabilization_ms))
  printf '  %-44s %5d ms\n' "kmsfleet before $node's stop" $((stopping - previous_up))
  printf '  %-44s %5d ms + stabilisation %d ms\n' "$node provider restart-to-ready" \
    "$restart" "$stabilization_ms"
  previous_up=$((ready + stabilization_ms))
done <<<"$order"
printf '  %-44s %5d ms\n' "kmsfleet after the last window" $((completed - previous_up))
overhead_ms=$((plan_ms - provider_ms))
printf '  orchestration overhead: %d ms in all, %d ms per node (goal: under 50 ms per node)\n' \
  "$overhead_ms" $((overhead_ms / 3))
echo "  (before the first stop: staging, signature and checksum, doctor and"
echo "   rotation-plan on every node; per node: 3 fresh parity rounds after its"
echo "   window, its hand-off beside the first two, then the one commit that"
echo "   records both and gives the slot to the next node, whose doctor and"
echo "   rotation-plan ran in the window and whose unit state is asked beside"
echo "   its journal writes, then its capture just before the stop)"
# The provider commands kmsfleet runs on the way, timed here one by one:
# their start-up is the fake's, not kmsfleet's.
new_bin="$work/rel/0.2.0/bao-kms-provider_0.2.0_linux_amd64"
t0=$(now_ms)
for _ in 1 2 3 4 5 6 7 8 9 10; do
  FAKE_BAO_KMS_SCENARIO="$work/cp-1/scenario.yaml" "$new_bin" doctor --config "$work/cp-1/provider.yaml" \
    --encryption-config "$work/cp-1/encryption-config.yaml" --output json >/dev/null
done
echo "  (one fake provider command, e.g. doctor, takes $(( ($(now_ms) - t0) / 10 )) ms here)"

# The parts, from the agents' own logs: every plan commit, hand-off and
# swap phase, in time order, with the milliseconds since the line before.
echo "  timeline (ms since the previous line; from the agents' logs):"
grep -h -e '"plan change committed"' -e '"swap command admitted"' -e '"hand-off granted"' \
  -e 'phase=Stopped' -e 'phase=Started' -e 'phase=Stable' \
  "$work"/cp-*/agent.log | sort | awk '
  { split(substr($1, 15, 12), t, ":"); ms = (t[1] * 3600 + t[2] * 60 + t[3]) * 1000
    line = $0; sub(/^[^ ]* level=[a-z]* msg=/, "", line)
    gsub(/ plan=[^ ]*| operation=[^ ]*| detail=.*| fence=[^ ]*/, "", line)
    printf "    %6d  %s\n", NR == 1 ? 0 : ms - prev, line; prev = ms }'

# ---- 2. the upstream runbook, by hand -------------------------------------
new="$work/rel/0.3.0/bao-kms-provider_0.3.0_linux_amd64"
start=$(now_ms)
for node in "${nodes[@]}"; do
  dir="$work/$node"
  FAKE_BAO_KMS_SCENARIO="$dir/scenario.yaml" "$new" doctor --config "$dir/provider.yaml" \
    --encryption-config "$dir/encryption-config.yaml" --output json >/dev/null
  systemctl_user stop "bao-kms-provider-$node.service"
  cp "$new" "$dir/bin/bao-kms-provider.new" && mv "$dir/bin/bao-kms-provider.new" "$dir/bin/bao-kms-provider"
  systemctl_user start "bao-kms-provider-$node.service"
  curl -sf --retry 60 --retry-delay 2 --retry-connrefused \
    "http://127.0.0.1:${health_port[$node]}/ready" >/dev/null
  sleep "$(printf '%d.%03d' $((stabilization_ms / 1000)) $((stabilization_ms % 1000)))"
  mine=$(hash_of "$node")
  for other in "${nodes[@]}"; do
    [ "$(hash_of "$other")" = "$mine" ] || { echo "runbook: $node disagrees with $other" >&2; exit 1; }
  done
done
end=$(now_ms)
runbook_ms=$((end - start))
echo "runbook by hand: ${runbook_ms} ms"
awk -v r="$runbook_ms" -v k="$kmsfleet_ms" \
  'BEGIN { printf "ratio runbook / kmsfleet: %.2f (kmsfleet also stages, verifies signatures, checks rotation, OpenBao and parity over 3 rounds, and commits every step)\n", r / k }'
