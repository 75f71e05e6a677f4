#!/usr/bin/env bash
# Chaos runs of the real local fleet (issue 12; not part of ctest or CI).
#
# Each run starts the fleet of scripts/lib/local_fleet.sh with every node's
# agent and provider in its own network namespace (FLEET_NETNS), runs
# upgrades and rollbacks (0.1.0 <-> 0.2.0, a two-way release in the chaos
# policy) back to back for --duration seconds while injecting faults at
# times drawn from the run's seed, then lets the last plan settle and
# checks (tests/chaos/check.py):
#   - no two providers were down at once because of kmsfleet (serve.stopping
#     / fake.crash -> serve.ready intervals of the fake providers' logs; an
#     overlap counts when the later interval began with a stop, i.e.
#     kmsfleet took a provider down while another was down);
#   - every plan ended Completed, RolledBack, Aborted, Halted or BreakGlass
#     (Halted/BreakGlass with a reason);
#   - no swap journal is left open in any agent's state directory;
#   - no plan was lost: every plan the driver started or saw is in some
#     agent's history or is the current plan.
# Faults: SIGKILL (restarted after a while, as systemd would) and
# SIGSTOP/SIGCONT of the coordinator and of the in-flight agent, a
# partition of one agent from its peers or between two agents and packet
# loss (nftables rules in the agent's namespace), a provider that crashes
# after ready (the fake's crash_after_ms, set live; the units restart on
# failure), and a full disk on one agent's state directory (a small tmpfs).
# The same seed gives the same fault schedule (kinds, times, durations,
# choices); which node is coordinator or in flight is the fleet's doing.
#
# Usage: tests/chaos/run.sh [--build DIR] [--runs N] [--seed S] [--nodes 3|5]
#                           [--duration SECONDS] [--faults N] [--keep-all]
# Needs root (namespaces, nft, mount) and nftables (scripts/install-deps.sh).
# Logs of a failing run are kept in /tmp/kmsfleet-chaos/seed-S.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$here/../../build/release
runs=1
seed=""
node_count=3
duration=20
fault_count=""
keep_all=0
while [ $# -gt 0 ]; do
  case $1 in
    --build) build=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --nodes) node_count=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --faults) fault_count=$2; shift 2 ;;
    --keep-all) keep_all=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--runs N] [--seed S] [--nodes 3|5] [--duration S] [--faults N] [--keep-all]" >&2
       exit 2 ;;
  esac
done
build=$(cd "$build" && pwd) || exit 2
[ -n "$seed" ] || seed=$(( (RANDOM << 15 | RANDOM) % 1000000 ))
command -v nft >/dev/null || { echo "nft missing: scripts/install-deps.sh" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "chaos runs need root (namespaces, nft, mount)" >&2; exit 2; }

keep_root=/tmp/kmsfleet-chaos
mkdir -p "$keep_root"
summary=$(mktemp /tmp/kmsfleet-chaos/summary.XXXXXX)
export FLEET_QUIET=1 FLEET_KEEP=1 FLEET_NETNS=kfc FLEET_NODES=$node_count
export FLEET_STABILIZATION_MS=500 FLEET_POLL_MS=50 FLEET_PLAN_TICK_MS=100
export FLEET_UNIT_EXTRA=$'Restart=on-failure\nRestartSec=1'
# Unit names of our own: another local fleet's StopUnit on a unit of the
# same name would kill our provider (see unit_of in local_fleet.sh).
export FLEET_UNIT_PREFIX=kfc-chaos-provider-

now_ms() { date +%s%3N; }
log() { printf '  [%6d ms] %s\n' $(($(now_ms) - t0)) "$*"; }

# ---- one run, in a subshell ------------------------------------------------
run_one() {
  run_seed=$1
  RANDOM=$run_seed
  # shellcheck source=../../scripts/lib/local_fleet.sh
  . "$here/../../scripts/lib/local_fleet.sh"

  # The schedule, all drawn before anything runs.
  local kinds=(kill_coordinator stop_coordinator kill_in_flight stop_in_flight
               partition_node partition_pair packet_loss provider_crash disk_full)
  local n=${fault_count:-$((4 + RANDOM % 4))} i
  local -a f_at f_kind f_dur f_pick
  for ((i = 0; i < n; i++)); do
    f_at[i]=$((500 + RANDOM % (duration * 1000 - 500)))
    f_kind[i]=${kinds[RANDOM % ${#kinds[@]}]}
    f_dur[i]=$((300 + RANDOM % 2700))
    f_pick[i]=$RANDOM
  done
  disk_node=cp-$((1 + RANDOM % node_count))
  local -a choices  # the operator's coin for each decision
  for ((i = 0; i < 64; i++)); do choices[i]=$((RANDOM % 100)); done
  local next_choice=0
  # In time order (stable for equal times).
  local order
  order=$(for ((i = 0; i < n; i++)); do echo "${f_at[i]} $i"; done | sort -n -s -k1,1 | cut -d' ' -f2)
  echo "run seed $run_seed: ${node_count} nodes, ${duration}s of plans, disk-full node $disk_node"
  for i in $order; do
    printf '  scheduled +%5d ms %-17s for %4d ms (pick %d)\n' "${f_at[i]}" "${f_kind[i]}" "${f_dur[i]}" "${f_pick[i]}"
  done

  fleet_hook_before_agents() {
    mount -t tmpfs -o size=4m,mode=0700 chaos "$work/$disk_node/state"
  }
  cleanup() {
    local pid
    for pid in "${agent_pid[@]}"; do kill -CONT "$pid" 2>/dev/null; done
    fleet_stop >/dev/null 2>&1
    umount "$work/$disk_node/state" 2>/dev/null
    if [ "$keep" = 1 ]; then
      rm -rf "$keep_root/seed-$run_seed"; cp -a "$work" "$keep_root/seed-$run_seed" 2>/dev/null
      echo "  logs kept in $keep_root/seed-$run_seed"
    fi
    rm -rf "$work"
  }
  keep=$keep_all
  trap cleanup EXIT
  t0=$(now_ms)
  fleet_start >"$keep_root/last-start.log" 2>&1 || { echo "  fleet did not start"; keep=1; return 1; }
  # Releases both ways: 0.2.0 is two-way here, unlike the demo's policy.
  cat >"$work/policy.yaml" <<YAML
apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - version: 0.2.0
    notes: "chaos: 0.1.0 and 0.2.0 read each other's state"
YAML
  for node in "${nodes[@]}"; do cp "$work/$node/scenario.yaml" "$work/$node/scenario.base"; done
  : >"$work/started.txt"; : >"$work/seen.txt"; : >"$work/faults.txt"; : >"$work/driver.log"
  t0=$(now_ms)  # the schedule counts from a running fleet
  drive_run >>"$work/driver.log" 2>&1
  grep -v ' Killed  ' "$work/driver.log"
  now_ms >"$work/run-end-ms"
  python3 "$here/check.py" --work "$work" --seed "$run_seed" --nodes "${nodes[*]}" \
    --summary "$summary"
  local rc=$?
  [ $rc = 0 ] || keep=1
  return $rc
}

# ---- talking to the fleet --------------------------------------------------
ctl_at() {  # ctl_at NODE ARGS...: as the operator, over NODE's cluster listener
  local node=$1; shift
  timeout -k 1 8 "$ctl" "$@" --agent "${node_ip[$node]}:${cluster_port[$node]}" --server-name "$node" \
    --ca "$pki/ca.pem" --cert "$pki/alice.pem" --key "$pki/alice.key"
}
declare -A down  # node -> why its agent does not answer now (stopped, killed)
live_nodes() {
  local node
  for node in "${nodes[@]}"; do [ -n "${down[$node]:-}" ] || echo "$node"; done
}
# The current plan as JSON ("" if no agent answered; {} if there is none).
current_plan() {
  local node out
  for node in $(live_nodes); do
    out=$(timeout -k 1 4 "$ctl" plan --agent "unix:$work/$node/agent.sock" --output json 2>/dev/null)
    if [ -n "$out" ]; then echo "$out"; return 0; fi
    if timeout -k 1 4 "$ctl" plan --agent "unix:$work/$node/agent.sock" 2>&1 | grep -q NO_PLAN; then
      echo '{}'; return 0
    fi
  done
  return 1
}
coordinator() {
  timeout -k 1 4 "$ctl" leader "${locals[@]}" --timeout-ms 1500 --output json 2>/dev/null |
    jq -r '.coordinator // empty' 2>/dev/null
}
# An operator command to whichever live agent takes it; prints its output.
operator() {
  local node out rc=1
  for node in $(live_nodes); do
    out=$(ctl_at "$node" "$@" --output json 2>&1); rc=$?
    [ $rc = 3 ] || [ $rc = 124 ] || break
  done
  echo "$out"
  return $rc
}

# ---- faults ----------------------------------------------------------------
declare -a end_at end_what
end_later() { end_at+=($(($(now_ms) - t0 + $1))); end_what+=("$2"); }

pick_node() { echo "cp-$((1 + $1 % node_count))"; }
peers_of() {
  local node=$1 peer ips=()
  for peer in "${nodes[@]}"; do [ "$peer" = "$node" ] || ips+=("${node_ip[$peer]}"); done
  local IFS=,; echo "${ips[*]}"
}
nft_drop() {  # nft_drop NODE TABLE IPS [PERCENT]
  local ns="$FLEET_NETNS-$1" table=$2 ips=$3 match=""
  [ -z "${4:-}" ] || match="numgen random mod 100 < $4"
  ip netns exec "$ns" nft -f - <<NFT
table inet $table {
  chain in { type filter hook input priority 0; ip saddr { $ips } $match drop; }
  chain out { type filter hook output priority 0; ip daddr { $ips } $match drop; }
}
NFT
}
agent_target() {  # agent_target ROLE PICK -> a node, and says how it was chosen
  local role=$1 pick=$2 node=""
  if [ "$role" = coordinator ]; then node=$(coordinator); else
    for ((try = 0; try < 12; try++)); do  # a node is in flight for about a second
      node=$(current_plan 2>/dev/null | jq -r '.plan.in_flight // empty' 2>/dev/null)
      [ -z "$node" ] || break
      sleep 0.25
    done
  fi
  if [ -z "$node" ] || [ -n "${down[$node]:-}" ]; then
    local live; live=$(live_nodes | wc -l)
    [ "$live" -gt 0 ] || return 0
    node=$(live_nodes | sed -n "$((1 + pick % live))p")
    echo "$node (no $role: random)"
  else
    echo "$node"
  fi
}

inject() {
  local kind=$1 dur=$2 pick=$3 tag=$4 node other target pid
  case $kind in
    kill_coordinator|kill_in_flight|stop_coordinator|stop_in_flight)
      local role=coordinator
      [ "${kind#*_}" = coordinator ] || role=in_flight
      target=$(agent_target "$role" "$pick"); node=${target%% *}
      [ -n "$node" ] || { log "fault $kind: no live agent"; return; }
      pid=${agent_pid[$node]}
      if [ "${kind%%_*}" = kill ]; then
        kill -KILL "$pid"; down[$node]=killed
        end_later "$dur" "agent_start $node; unset 'down[$node]'"
      else
        kill -STOP "$pid"; down[$node]=stopped
        end_later "$dur" "kill -CONT $pid; unset 'down[$node]'"
      fi
      log "fault $kind: $target (pid $pid) for $dur ms"
      echo "$kind $target" >>"$work/faults.txt" ;;
    partition_node)
      node=$(pick_node "$pick")
      nft_drop "$node" "chaos$tag" "$(peers_of "$node")"
      end_later "$dur" "ip netns exec $FLEET_NETNS-$node nft delete table inet chaos$tag"
      log "fault partition: $node cut off from its peers for $dur ms"
      echo "$kind $node" >>"$work/faults.txt" ;;
    partition_pair)
      node=$(pick_node "$pick"); other=$(pick_node $((pick / 7 + 1 + pick % node_count)))
      [ "$other" != "$node" ] || other=$(pick_node $(( ${node#cp-} )))
      nft_drop "$node" "chaos$tag" "${node_ip[$other]}"
      end_later "$dur" "ip netns exec $FLEET_NETNS-$node nft delete table inet chaos$tag"
      log "fault partition: $node <-/-> $other for $dur ms"
      echo "$kind $node-$other" >>"$work/faults.txt" ;;
    packet_loss)
      node=$(pick_node "$pick"); local percent=$((20 + 20 * (pick / 5 % 3)))
      nft_drop "$node" "chaos$tag" "$(peers_of "$node")" "$percent"
      end_later "$dur" "ip netns exec $FLEET_NETNS-$node nft delete table inet chaos$tag"
      log "fault packet loss: $percent% between $node and its peers for $dur ms"
      echo "$kind $node $percent%" >>"$work/faults.txt" ;;
    provider_crash)
      # The in-flight node's provider half the time (a crash in its window).
      node=$(current_plan 2>/dev/null | jq -r '.plan.in_flight // empty' 2>/dev/null)
      [ -n "$node" ] && [ $((pick % 2)) = 0 ] || node=$(pick_node "$pick")
      { cat "$work/$node/scenario.base"; echo "crash_after_ms: 1"; } >"$work/$node/scenario.tmp"
      mv "$work/$node/scenario.tmp" "$work/$node/scenario.yaml"
      # Restored before the unit restarts (RestartSec=1): one crash.
      end_later 600 "cp $work/$node/scenario.base $work/$node/scenario.tmp; mv $work/$node/scenario.tmp $work/$node/scenario.yaml"
      log "fault provider crash: $node"
      echo "$kind $node" >>"$work/faults.txt" ;;
    disk_full)
      # Only on the small tmpfs, and never more than 8 MiB.
      mountpoint -q "$work/$disk_node/state" || { log "fault disk full: no tmpfs, skipped"; return; }
      dd if=/dev/zero of="$work/$disk_node/state/.chaos-fill" bs=64k count=128 2>/dev/null
      end_later "$dur" "rm -f $work/$disk_node/state/.chaos-fill"
      log "fault disk full: $disk_node's state dir for $dur ms ($(df --output=avail "$work/$disk_node/state" | tail -1 | tr -d ' ') KiB left)"
      echo "$kind $disk_node" >>"$work/faults.txt" ;;
  esac
}

end_due() {  # runs the end actions whose time has come (all with "all")
  local el=$(($(now_ms) - t0)) i
  for i in "${!end_at[@]}"; do
    if [ "$1" = all ] || [ "${end_at[i]}" -le "$el" ]; then
      eval "${end_what[i]}"
      unset 'end_at[i]' 'end_what[i]'
    fi
  done
}

# ---- the operator ----------------------------------------------------------
# Sets `c` to the next coin. (Not `c=$(coin)`: in that subshell the
# count never moved, and a halt met the same choice every time.)
coin() { c=${choices[next_choice % 64]}; next_choice=$((next_choice + 1)); }

start_next() {  # upgrade or rollback, whichever the last plan calls for
  local first=upgrade out
  [ "$last_end" = "UPGRADE COMPLETED" ] || [ "$last_end" = "UPGRADE HALTED" ] && first=rollback
  for cmd in "$first" $([ "$first" = upgrade ] && echo rollback || echo upgrade); do
    if [ "$cmd" = upgrade ]; then
      out=$(operator upgrade --to 0.2.0 --artifact "$work/rel/0.2.0/bao-kms-provider_0.2.0_linux_amd64" \
        --checksums "$work/rel/0.2.0/checksums.txt" --signature "$work/rel/0.2.0/checksums.txt.sig" \
        --policy "$work/policy.yaml")
    else
      out=$(operator rollback)
    fi
    local id
    id=$(echo "$out" | sed -n '/^{/,$p' | jq -r '.plan.plan_id // empty' 2>/dev/null)
    if [ -n "$id" ]; then
      log "operator: $cmd accepted: $id"
      echo "$id $cmd" >>"$work/started.txt"
      return 0
    fi
    log "operator: $cmd refused: $(echo "$out" | grep -o '\[[A-Z_]*\]' | head -1)"
  done
  return 1
}

# Halted: resume, roll back or abort, by the seed's coin (abort after 3 resumes).
on_halted() {
  local id=$1 reason=$2 c cmd
  resumes[$id]=$((${resumes[$id]:-0}))
  coin
  if [ "${resumes[$id]}" -ge 3 ]; then cmd=abort
  elif [ "$c" -lt 60 ]; then cmd=resume
  elif [ "$c" -lt 85 ]; then cmd=rollback
  else cmd=abort; fi
  [ "$cmd" = resume ] && resumes[$id]=$((${resumes[$id]} + 1))
  log "operator: plan $id halted [$reason]: $cmd"
  local out
  out=$(operator "$cmd") || log "operator: $cmd refused: $(echo "$out" | grep -o '\[[A-Z_]*\].*' | head -1)"
}

# BreakGlass: do the manual steps (every provider unit running), acknowledge.
on_break_glass() {
  local id=$1 nonce=$2 reason=$3 node
  log "operator: plan $id in break-glass [$reason]: starting every provider unit, ack"
  for node in "${nodes[@]}"; do systemctl_user start "$(unit_of "$node")"; done
  sleep 2
  operator ack-break-glass "$nonce" >/dev/null || log "operator: ack refused"
}

drive_run() {
  local fault_end=$((duration * 1000)) hard_end=$((duration * 1000 + 120000))
  local next=0 el plan phase id kind reason last_id="" last_try=0
  local -a todo; read -r -a todo <<<"$(echo $order)"
  declare -gA resumes=() broke=()
  last_end=""
  while :; do
    el=$(($(now_ms) - t0))
    while [ $next -lt ${#todo[@]} ] && [ "${f_at[${todo[next]}]}" -le "$el" ]; do
      i=${todo[next]}; inject "${f_kind[i]}" "${f_dur[i]}" "${f_pick[i]}" "$i"; next=$((next + 1))
    done
    end_due due
    if [ $el -ge $hard_end ]; then log "settle: no end after $((hard_end / 1000)) s"; break; fi
    plan=$(current_plan) || { sleep 0.3; continue; }
    phase=$(echo "$plan" | jq -r '.plan.phase // "NONE"' | sed 's/PLAN_PHASE_//')
    id=$(echo "$plan" | jq -r '.plan.plan_id // empty')
    kind=$(echo "$plan" | jq -r '.plan.kind // empty' | sed 's/PLAN_KIND_//')
    [ -z "$id" ] || grep -qx "$id" "$work/seen.txt" || echo "$id" >>"$work/seen.txt"
    if [ -n "$id" ] && [ "$id $phase" != "$last_id" ]; then log "plan $id ($kind): $phase"; last_id="$id $phase"; fi
    case $phase in
      COMPLETED|ROLLED_BACK|ABORTED|NONE)
        last_end="$kind $phase"
        if [ $el -ge $fault_end ]; then break; fi
        if [ $((el - last_try)) -ge 1000 ]; then last_try=$el; start_next; fi ;;
      HALTED)
        reason=$(echo "$plan" | jq -r '.plan.halt.reason // ""')
        last_end="$kind HALTED"
        if [ $((el - last_try)) -ge 1500 ]; then
          last_try=$el
          on_halted "$id" "$reason"
        fi ;;
      BREAK_GLASS)
        reason=$(echo "$plan" | jq -r '.plan.break_glass.reason // ""')
        # A second break-glass of one plan needs the runbook's section 4
        # (a fenced swap by hand); the driver leaves that to a human.
        if [ -n "${broke[$id]:-}" ] && [ "${broke[$id]}" != "$(echo "$plan" | jq -r .plan.break_glass.nonce)" ]; then
          log "operator: plan $id in break-glass again [$reason]: left for a human"; break
        fi
        if [ $((el - last_try)) -ge 1500 ]; then
          last_try=$el
          broke[$id]=$(echo "$plan" | jq -r '.plan.break_glass.nonce')
          on_break_glass "$id" "${broke[$id]}" "$reason"
        fi ;;
    esac
    if [ $el -ge $fault_end ] && [ $next -ge ${#todo[@]} ]; then end_due all; fi
    sleep 0.3
  done
  end_due all
  # Every agent back (a killed one finishes its open journal on start).
  wait_for 30 "$ctl" leader "${locals[@]}" >/dev/null
  plan=$(current_plan) && echo "$plan" >"$work/final-plan.json"
  log "run ends: last plan $(echo "$plan" | jq -r '.plan.plan_id // "-"')" \
    "$(echo "$plan" | jq -r '.plan.phase // "-"')"
  for node in "${nodes[@]}"; do
    timeout -k 1 5 "$ctl" history --agent "unix:$work/$node/agent.sock" --output json \
      >"$work/history-$node.json" 2>/dev/null
  done
}

# ---- the runs ----------------------------------------------------------------
echo "chaos: $runs run(s) from seed $seed, $node_count nodes, ${duration}s each; $build"
start=$(now_ms)
failed=0
for ((r = 0; r < runs; r++)); do
  ( run_one $((seed + r)) ) || failed=$((failed + 1))
done
python3 "$here/check.py" --report "$summary" --wall-ms $(($(now_ms) - start))
rm -f "$summary"
[ $failed = 0 ]
