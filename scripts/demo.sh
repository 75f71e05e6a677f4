#!/usr/bin/env bash
# The local three-node demo: three fake bao-kms-provider processes, three
# kmsfleetd agents, and kmsfleetctl showing key_id hash parity, then
# detecting a node whose provider switched to another key_id; then the
# agents' coordinator election: failover after SIGKILL, and a command
# under the deposed coordinator's fence refused.
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

# A free loopback TCP port for each agent's cluster listener.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 20000))
    ss -ltn "sport = :$port" | grep -q ":$port" || { echo "$port"; return; }
  done
}

nodes=(cp-1 cp-2 cp-3)
agents=()
declare -A agent_pid cluster_port
for node in "${nodes[@]}"; do cluster_port[$node]=$(free_port); done
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
peers:
$(for peer in "${nodes[@]}"; do
    [ "$peer" = "$node" ] || echo "  - {name: $peer, address: 127.0.0.1:${cluster_port[$peer]}}"
  done)
cluster:
  listen: 127.0.0.1:${cluster_port[$node]}
  insecure: true   # plain TCP on loopback, for this demo only
YAML
  "$agent" --config "$dir/kmsfleet.yaml" >"$dir/agent.log" 2>&1 &
  pids+=($!)
  agent_pid[$node]=$!
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

step "kmsfleetctl leader: the agents elected a coordinator among themselves"
wait_for 30 "$ctl" leader "${agents[@]}" || true
"$ctl" leader "${agents[@]}" || true
coordinator=$("$ctl" leader "${agents[@]}" --output json |
  sed -n 's/.*"coordinator":"\([^"]*\)".*/\1/p')
survivor=cp-1; [ "$coordinator" = cp-1 ] && survivor=cp-2

step "$coordinator commits a plan naming $survivor in flight: the fence its swap must carry"
old_fence=$("$ctl" plan commit --agent "unix:$work/$coordinator/agent.sock" \
  --in-flight "$survivor" --payload "demo plan")
echo "  fence $old_fence"

step "$coordinator is killed (SIGKILL); the other two elect a new coordinator"
kill -9 "${agent_pid[$coordinator]}"
rest=()
for node in "${nodes[@]}"; do
  [ "$node" = "$coordinator" ] || rest+=(--agent "unix:$work/$node/agent.sock")
done
# The survivors agree on a coordinator, and it is not the dead one.
new_coordinator() {
  local json now
  json=$("$ctl" leader "${rest[@]}" --output json) || return 1
  now=$(sed -n 's/.*"coordinator":"\([^"]*\)".*/\1/p' <<<"$json")
  [ -n "$now" ] && [ "$now" != "$coordinator" ]
}
wait_for 30 new_coordinator || true
"$ctl" leader "${rest[@]}" || true

step "a swap on $survivor under the dead coordinator's fence is refused"
"$ctl" node --agent "unix:$work/$survivor/agent.sock" swap --version 0.2.0 \
  --fence "$old_fence" && echo "(unexpected: the stale fence was accepted)" \
  || echo "kmsfleetctl node swap exited $?: nothing was stopped or installed"

step "demo finished; stopping agents and providers"
