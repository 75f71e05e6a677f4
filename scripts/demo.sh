#!/usr/bin/env bash
# The local three-node demo: three fake bao-kms-provider processes, three
# kmsfleetd agents, and kmsfleetctl showing key_id hash parity, then
# detecting a node whose provider switched to another key_id.
# Usage: scripts/demo.sh BUILD_DIR   (./dev demo builds and calls this)
set -euo pipefail

build=${1:?usage: demo.sh BUILD_DIR}
build=$(cd "$build" && pwd)
fake="$build/tests/fakes/fake-bao-kms-provider"
agent="$build/src/daemon/kmsfleetd"
ctl="$build/src/cli/kmsfleetctl"
for bin in "$fake" "$agent" "$ctl"; do
  [ -x "$bin" ] || { echo "demo: missing $bin; run ./dev demo" >&2; exit 1; }
done

work=$(mktemp -d /tmp/kmsfleet-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"; }

# Waits until "$@" succeeds, for at most $1 seconds.
wait_for() {
  local seconds=$1; shift
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  echo "  (still not done after ${seconds}s: $*)"; return 1
}

json_field() {  # json_field FILE KEY -> value of "KEY":"value"
  sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p" "$1"
}

nodes=(cp-1 cp-2 cp-3)
agents=()
step "starting three simulated providers (fake-bao-kms-provider serve)"
for node in "${nodes[@]}"; do
  dir="$work/$node"; mkdir -p "$dir"
  cat >"$dir/provider.yaml" <<YAML
configVersion: v1alpha1
server:
  socketPath: $dir/kms.sock
  metricsAddress: 127.0.0.1:0
  healthAddress: 127.0.0.1:0
YAML
  echo "key_seed: demo-lineage/v1" >"$dir/scenario.yaml"
  "$fake" serve --config "$dir/provider.yaml" --scenario "$dir/scenario.yaml" \
    --listen-info "$dir/listen.json" >"$dir/provider.log" 2>&1 &
  pids+=($!)
done
for node in "${nodes[@]}"; do
  dir="$work/$node"
  wait_for 30 test -s "$dir/listen.json" || { cat "$dir/provider.log"; exit 1; }
  echo "  $node metrics $(json_field "$dir/listen.json" metrics), health $(json_field "$dir/listen.json" health)"
done

step "starting one kmsfleetd agent per node"
for node in "${nodes[@]}"; do
  dir="$work/$node"
  cat >"$dir/kmsfleet.yaml" <<YAML
node: $node
state_dir: $dir/state
listen:
  unix: $dir/agent.sock
provider:
  metrics_url: http://$(json_field "$dir/listen.json" metrics)/metrics
  ready_url: http://$(json_field "$dir/listen.json" health)/ready
  live_url: http://$(json_field "$dir/listen.json" health)/live
  kms_socket: $dir/kms.sock
  binary: $fake
YAML
  "$agent" --config "$dir/kmsfleet.yaml" >"$dir/agent.log" 2>&1 &
  pids+=($!)
  agents+=(--agent "unix:$dir/agent.sock")
done

step "waiting for every agent to answer and every provider to be ready"
wait_for 30 "$ctl" status "${agents[@]}" || true

step "kmsfleetctl status: all nodes in parity"
"$ctl" status "${agents[@]}" || true

step "cp-2's provider now reports a different key_id (as after a diverging rotation)"
echo "key_seed: demo-lineage/v2" >"$work/cp-2/scenario.yaml.tmp"
mv "$work/cp-2/scenario.yaml.tmp" "$work/cp-2/scenario.yaml"
wait_for 30 sh -c "'$ctl' status ${agents[*]} --output json | grep -q MISMATCH" || true

step "kmsfleetctl status: the mismatch is detected and cp-2 is named"
"$ctl" status "${agents[@]}" && echo "(unexpected: fleet reported healthy)" \
  || echo "kmsfleetctl status exited $? : the fleet is not in parity"

step "cp-2 returns to the fleet's key_id"
echo "key_seed: demo-lineage/v1" >"$work/cp-2/scenario.yaml.tmp"
mv "$work/cp-2/scenario.yaml.tmp" "$work/cp-2/scenario.yaml"
wait_for 30 "$ctl" status "${agents[@]}" || true
"$ctl" status "${agents[@]}"

step "demo finished; stopping agents and providers"
