# A local three-node fleet for the demo and the benchmarks, sourced by
# scripts/demo.sh and bench/fleet_upgrade_bench.sh:
#   three fake bao-kms-provider units under a real `systemd --user`
#   manager (or, where none can start, three fake providers run as static
#   pods by fake-kubelet and fake-cri), a fake OpenBao, three kmsfleetd
#   agents over mTLS, a release signing key, releases 0.1.0 (installed)
#   and 0.2.0 (published), each a binary and a static-pod kit.
# Before sourcing: $build (absolute build directory). Optional:
# FLEET_RUNTIME (auto: systemd if a `systemd --user` manager starts here,
# else static_pod; systemd: fail if none starts; static_pod: no systemd),
# FLEET_SYSTEMD (the manager binary, /lib/systemd/systemd),
# FLEET_STABILIZATION_MS (2000), FLEET_POLL_MS (500: executor.poll_interval_ms),
# FLEET_PLAN_TICK_MS (200), FLEET_QUIET=1, FLEET_KEEP=1 (keep the files),
# FLEET_NODES (3: cp-1..cp-N; 2 to 7, the voters an election takes),
# FLEET_NETNS=PREFIX (each node's agent and
# provider in its own network namespace PREFIX-cp-N, joined by veth pairs
# to a bridge PREFIX-br in 10.77.0.0/24; tests/chaos), and a function
# fleet_hook_before_agents, called once the node directories exist,
# FLEET_UNIT_EXTRA (more lines for each provider unit's [Service]),
# FLEET_UNIT_PREFIX (unit names, see unit_of).
# After fleet_start: $work, $pki, $runtime (systemd or static_pod), nodes,
# cluster_port[], metrics_port[],
# health_port[], node_ip[], agent_pid[], locals (--agent flags for every
# unix socket), op (the operator's flags for cp-1's cluster listener),
# release VERSION, image_of VERSION, kit_of VERSION (the static-pod kit),
# in_node NODE CMD... (CMD in NODE's namespace),
# agent_start NODE (starts, or restarts, NODE's kmsfleetd).

fake="$build/tests/fakes/fake-bao-kms-provider"
openbao="$build/tests/fakes/fake-openbao-health"
agent="$build/src/daemon/kmsfleetd"
ctl="$build/src/cli/kmsfleetctl"
kubelet="$build/tests/fakes/fake-kubelet"
cri="$build/tests/fakes/fake-cri"
for bin in "$fake" "$openbao" "$agent" "$ctl" "$kubelet" "$cri"; do
  [ -x "$bin" ] || { echo "missing $bin; build first (./dev build)" >&2; exit 1; }
done

step() {
  [ "${FLEET_QUIET:-0}" = 1 ] && return 0
  printf '\n\033[1m[%s] %s\033[0m\n' "$(date +%H:%M:%S)" "$*"
}
say() { [ "${FLEET_QUIET:-0}" = 1 ] || echo "$@"; }

# Waits until "$@" succeeds, for at most $1 seconds.
wait_for() {
  local seconds=$1; shift
  for ((i = 0; i < seconds * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  echo "  (still not done after ${seconds}s: $*)"; return 1
}

# Sets variable $1 to a TCP port nobody uses: below the kernel's ephemeral
# range (where any outgoing connection may hold a port a moment later), in
# no socket of any state, and not handed out before in this fleet.
ports_taken=" "
pick_port() {
  local port low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  [ "$low" -gt 21000 ] 2>/dev/null || low=32768
  while :; do
    port=$((20000 + RANDOM % (low - 20000)))
    case $ports_taken in *" $port "*) continue ;; esac
    [ -z "$(ss -Htan "sport = :$port")" ] || continue
    ports_taken+="$port "
    printf -v "$1" '%s' "$port"
    return
  done
}

pids=()
manager_pid=""
declare -gA agent_pid node_ip
fleet_stop() {
  for pid in "${pids[@]}" "${agent_pid[@]}"; do
    kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true
  done
  # The manager stops the provider units before it exits.
  [ -z "$manager_pid" ] || kill "$manager_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "${FLEET_NETNS:-}" ] || fleet_netns_down
  if [ "${FLEET_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}

# Runs "$@" in NODE's network namespace (or here without FLEET_NETNS).
in_node() {
  local node=$1; shift
  if [ -n "${FLEET_NETNS:-}" ]; then ip netns exec "$FLEET_NETNS-$node" "$@"; else "$@"; fi
}

fleet_netns_down() {
  local node
  for node in "${nodes[@]}"; do ip netns del "$FLEET_NETNS-$node" 2>/dev/null || true; done
  ip link del "$FLEET_NETNS-br" 2>/dev/null || true
}

# A bridge at 10.77.0.1 and, per node, a namespace at 10.77.0.(10+i).
fleet_netns_up() {
  local i=0 node ns
  fleet_netns_down
  ip link add "$FLEET_NETNS-br" type bridge
  ip addr add 10.77.0.1/24 dev "$FLEET_NETNS-br"
  ip link set "$FLEET_NETNS-br" up
  for node in "${nodes[@]}"; do
    i=$((i + 1)); ns="$FLEET_NETNS-$node"
    ip netns add "$ns"
    ip link add "$FLEET_NETNS-v$i" type veth peer name "$FLEET_NETNS-p$i"
    ip link set "$FLEET_NETNS-p$i" netns "$ns"
    ip link set "$FLEET_NETNS-v$i" master "$FLEET_NETNS-br" up
    ip -n "$ns" addr add "10.77.0.$((10 + i))/24" dev "$FLEET_NETNS-p$i"
    ip -n "$ns" link set "$FLEET_NETNS-p$i" up
    ip -n "$ns" link set lo up
    node_ip[$node]=10.77.0.$((10 + i))
  done
}

agent_start() {  # $! is kmsfleetd itself: `ip netns exec` execs it
  local node=$1 cmd=("$agent" --config "$work/$1/kmsfleet.yaml")
  [ -z "${FLEET_NETNS:-}" ] || cmd=(ip netns exec "$FLEET_NETNS-$node" "${cmd[@]}")
  "${cmd[@]}" >>"$work/$node/agent.log" 2>&1 &
  agent_pid[$node]=$!
}

# NODE's provider unit. Every `systemd --user` manager of root here puts
# its units' cgroups under the same parent, so two local fleets at once
# must not share unit names, or one's StopUnit kills the other's provider:
# FLEET_UNIT_PREFIX (default bao-kms-provider-) tells them apart.
unit_of() { echo "${FLEET_UNIT_PREFIX:-bao-kms-provider-}$1.service"; }

systemctl_user() {
  XDG_RUNTIME_DIR="$work/rt" DBUS_SESSION_BUS_ADDRESS= systemctl --user --no-pager "$@"
}

# VERSION's image, pinned by digest. The fake images' digests are made up;
# the digest table ($work/digests.txt) tells fake-kubelet which version of
# the fake provider each one runs.
image_of() {
  echo "ghcr.io/dc-tec/bao-kms-provider@sha256:$(printf 'image of %s' "$1" | sha256sum | cut -d' ' -f1)"
}
kit_of() { echo "$work/rel/$1/bao-kms-provider_$1_static-pod_linux_amd64.tar.gz"; }

# release VERSION -> a binary, a static-pod kit naming VERSION's image,
# checksums.txt of both and its signature; the image joins every static-pod
# node's registry (fake-cri's images.json), held already if installed.
release() {
  local dir="$work/rel/$1" name="bao-kms-provider_$1_linux_amd64"
  local kit="bao-kms-provider_$1_static-pod_linux_amd64" image n
  image=$(image_of "$1")
  mkdir -p "$dir/$kit"
  printf '#!/bin/sh\nexec %s --fake-version %s "$@"\n' "$fake" "$1" >"$dir/$name"
  chmod 755 "$dir/$name"
  printf 'bao-kms-provider %s, static-pod kit (kmsfleet demo)\n' "$1" >"$dir/$kit/README.md"
  echo "$image" >"$dir/$kit/image-ref.txt"
  (cd "$dir" && tar -czf "$kit.tar.gz" "$kit/README.md" "$kit/image-ref.txt" &&
     sha256sum "$name" "$kit.tar.gz" >checksums.txt)
  openssl pkeyutl -sign -inkey "$work/release.key" -rawin -in "$dir/checksums.txt" |
    base64 >"$dir/checksums.txt.sig"
  echo "${image#*@} $1" >>"$work/digests.txt"
  echo "$image ${image#*@} $([ "$1" = "$installed" ] && echo true || echo false)" \
    >>"$work/images.list"
  [ "$runtime" != static_pod ] || for n in "${nodes[@]}"; do write_images "$n"; done
}

# NODE's registry, written whole through a rename: fake-cri may read it at
# any moment.
write_images() {
  local cri_dir="$work/$1/cri" ref digest present sep=""
  mkdir -p "$cri_dir"
  {
    printf '{"images": ['
    while read -r ref digest present; do
      printf '%s{"ref": "%s", "digest": "%s", "present": %s}' "$sep" "$ref" "$digest" "$present"
      sep=", "
    done <"$work/images.list"
    printf ']}\n'
  } >"$cri_dir/images.json.tmp"
  mv "$cri_dir/images.json.tmp" "$cri_dir/images.json"
}

# Starts a `systemd --user` manager; fails (leaving manager.log) if it
# cannot start here: no binary, it exits, or its socket never appears.
manager_start() {
  local bin=${FLEET_SYSTEMD:-/lib/systemd/systemd} i
  mkdir -p /run/systemd/system 2>/dev/null || true
  if [ ! -x "$bin" ]; then echo "$bin: not an executable" >"$work/manager.log"; return 1; fi
  env -u DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR="$work/rt" XDG_CONFIG_HOME="$work/cfg" \
    "$bin" --user >"$work/manager.log" 2>&1 &
  manager_pid=$!
  for ((i = 0; i < 60; i++)); do
    [ -S "$work/rt/systemd/private" ] && return 0
    if ! kill -0 "$manager_pid" 2>/dev/null; then
      local rc=0; wait "$manager_pid" || rc=$?
      echo "$bin --user exited with status $rc" >>"$work/manager.log"
      manager_pid=""; return 1
    fi
    sleep 0.25
  done
  kill "$manager_pid" 2>/dev/null || true
  wait "$manager_pid" 2>/dev/null || true
  manager_pid=""
  echo "$bin --user opened no $work/rt/systemd/private in 15 s" >>"$work/manager.log"
  return 1
}

# Which runtime runs the providers: $runtime. Auto tries systemd first and
# says on stderr why it falls back.
runtime_start() {
  case "${FLEET_RUNTIME:-auto}" in
    systemd | auto) ;;
    static_pod)
      runtime=static_pod
      [ -z "${FLEET_NETNS:-}" ] && return 0
      echo "FLEET_NETNS needs FLEET_RUNTIME=systemd (its units join the namespaces)" >&2
      return 2 ;;
    *) echo "FLEET_RUNTIME=${FLEET_RUNTIME}: must be auto, systemd or static_pod" >&2
       return 2 ;;
  esac
  step "a systemd --user manager to run one bao-kms-provider unit per node"
  if manager_start; then runtime=systemd; return 0; fi
  if [ "${FLEET_RUNTIME:-auto}" = systemd ] || [ -n "${FLEET_NETNS:-}" ]; then
    cat "$work/manager.log" >&2; return 1
  fi
  runtime=static_pod
  echo "systemd --user cannot start here ($(tail -1 "$work/manager.log")), so each" \
    "provider runs as a static pod of fake-kubelet and fake-cri instead" >&2
}

# NODE's provider as a static pod: fake-cri answers the agent's CRI calls,
# fake-kubelet runs the fake provider for the image the manifest pins.
static_pod_start() {
  local node=$1 dir="$work/$1"
  mkdir -p "$dir/manifests"
  write_images "$node"
  cat >"$dir/manifests/bao-kms-provider.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: bao-kms-provider
  namespace: kube-system
spec:
  hostNetwork: true
  containers:
    - name: bao-kms-provider
      image: $(image_of "$installed")
      args: [serve]
YAML
  "$cri" --socket "$dir/cri.sock" --state-dir "$dir/cri" >"$dir/cri.log" 2>&1 &
  pids+=($!)
  "$kubelet" --manifest-dir "$dir/manifests" --cri-state-dir "$dir/cri" \
    --digest-table "$work/digests.txt" --node "$node" --provider-binary "$fake" \
    --provider-config "$dir/provider.yaml" --provider-scenario "$dir/scenario.yaml" \
    --provider-log "$dir/provider.log" --event-log "$dir/kubelet-events.jsonl" \
    >"$dir/kubelet.log" 2>&1 &
  pids+=($!)
  wait_for 10 test -S "$dir/cri.sock" || { cat "$dir/cri.log"; exit 1; }
}

# NODE's agent config, the lines that name its provider's runtime: under
# provider:, under executor:, and its own sections at the end.
provider_runtime_lines() {
  if [ "$runtime" = static_pod ]; then echo "  mode: static_pod"; return; fi
  printf '  binary: %s\n  unit: %s\n' "$work/$1/bin/bao-kms-provider" "$(unit_of "$1")"
}
executor_runtime_lines() {
  [ "$runtime" = static_pod ] || echo "  bus_address: unix:path=$work/rt/systemd/private"
}
runtime_sections() {
  [ "$runtime" = static_pod ] || return 0
  printf 'static_pod:\n  manifest: %s\n  cri_socket: %s\n' \
    "$work/$1/manifests/bao-kms-provider.yaml" "$work/$1/cri.sock"
}

# The body is not indented: it holds here-documents of YAML and units.
fleet_start() {
# One node has no peers to elect with (a single-node control plane is
# `standalone: true`, not a fleet); an election takes at most seven voters.
case "${FLEET_NODES:-3}" in
  [2-7]) ;;
  *) echo "FLEET_NODES=${FLEET_NODES}: a local fleet has 2 to 7 nodes" >&2; return 2 ;;
esac
work=$(mktemp -d /tmp/kmsfleet-fleet.XXXXXX)
installed=0.1.0
runtime=""
nodes=()
for ((i = 1; i <= ${FLEET_NODES:-3}; i++)); do nodes+=("cp-$i"); done
host_ip=127.0.0.1
for node in "${nodes[@]}"; do node_ip[$node]=127.0.0.1; done
if [ -n "${FLEET_NETNS:-}" ]; then fleet_netns_up; host_ip=10.77.0.1; fi
pki="$work/pki"
mkdir -p "$pki" "$work/rt" "$work/cfg/systemd/user" "$work/rel"
chmod 700 "$work/rt"

step "making the fleet CA, a certificate per node and one for the operator (openssl)"
openssl_quiet() { openssl "$@" >/dev/null 2>&1; }
openssl_quiet req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$pki/ca.key" -out "$pki/ca.pem" -days 2 -subj "/CN=kmsfleet demo CA" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
issue() {  # issue NAME SAN EKU
  printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" >"$pki/$1.ext"
  openssl_quiet req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=$1"
  openssl_quiet x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
    -CAcreateserial -out "$pki/$1.pem" -days 2 -extfile "$pki/$1.ext"
}
for node in "${nodes[@]}"; do
  issue "$node" "DNS:$node,IP:${node_ip[$node]}" serverAuth,clientAuth
done
issue alice "URI:spiffe://kmsfleet.demo/kmsfleet/operator/alice" clientAuth
say "  CA, cp-1..3 (SAN DNS:<node>), alice (SAN spiffe://kmsfleet.demo/kmsfleet/operator/alice)"

runtime_start || return
step "a release signing key, release 0.1.0 installed everywhere, release 0.2.0 published"
openssl_quiet genpkey -algorithm ed25519 -out "$work/release.key"
openssl_quiet pkey -in "$work/release.key" -pubout -out "$work/release.pub"
release 0.1.0
release 0.2.0
# The demo's policy: 0.2.0 is one-way, as some real releases are.
cat >"$work/policy.yaml" <<YAML
apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - version: 0.2.0
    oneWay: true
    notes: "demo: 0.2.0 writes state 0.1.0 cannot read back"
YAML
say "  $work/rel/0.2.0: bao-kms-provider_0.2.0_linux_amd64, its static-pod kit, checksums.txt, checksums.txt.sig"

step "a fake OpenBao answering /v1/sys/health: initialised, unsealed, active"
pick_port openbao_port
echo active >"$work/openbao.state"
"$openbao" --state-file "$work/openbao.state" --listen "$host_ip:$openbao_port" \
  >"$work/openbao.log" 2>&1 &
pids+=($!)

if [ "$runtime" = static_pod ]; then
  step "one bao-kms-provider static pod per node: fake-kubelet runs it, fake-cri reports it"
else
  step "one bao-kms-provider unit per node under the systemd --user manager"
fi
declare -gA cluster_port metrics_port health_port
for node in "${nodes[@]}"; do
  pick_port "cluster_port[$node]"; pick_port "metrics_port[$node]"; pick_port "health_port[$node]"
done
for node in "${nodes[@]}"; do
  dir="$work/$node"; mkdir -p "$dir/bin" "$dir/pstate" "$dir/state" "$dir/run"
  cp "$work/rel/0.1.0/bao-kms-provider_0.1.0_linux_amd64" "$dir/bin/bao-kms-provider"
  cat >"$dir/provider.yaml" <<YAML
configVersion: v1alpha1
server:
  socketPath: $dir/run/kms.sock
  metricsAddress: 127.0.0.1:${metrics_port[$node]}
  healthAddress: 127.0.0.1:${health_port[$node]}
openbao:
  address: http://$host_ip:$openbao_port
transit:
  keyIdScope: {providerName: openbao-kms-a, clusterId: a, transitMountId: transit-a, keyLineageId: lineage-a}
state:
  path: $dir/pstate/key-registry.json
YAML
  cat >"$dir/encryption-config.yaml" <<YAML
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - kms: {apiVersion: v2, name: openbao-kms-a, endpoint: "unix://$dir/run/kms.sock"}
YAML
  echo "key_seed: demo-lineage/v1" >"$dir/scenario.yaml"
  [ "$runtime" = static_pod ] || cat >"$work/cfg/systemd/user/$(unit_of "$node")" <<UNIT
[Unit]
Description=bao-kms-provider ($node, simulated)
[Service]
Type=exec
$([ -z "${FLEET_NETNS:-}" ] || echo "NetworkNamespacePath=/run/netns/$FLEET_NETNS-$node")
ExecStart=$dir/bin/bao-kms-provider serve --config $dir/provider.yaml
Environment=FAKE_BAO_KMS_SCENARIO=$dir/scenario.yaml
StandardError=append:$dir/provider.log
${FLEET_UNIT_EXTRA:-}
UNIT
done
if [ "$runtime" = static_pod ]; then
  for node in "${nodes[@]}"; do static_pod_start "$node"; done
else
  systemctl_user daemon-reload
  for node in "${nodes[@]}"; do systemctl_user start "$(unit_of "$node")"; done
fi
for node in "${nodes[@]}"; do
  wait_for 20 in_node "$node" curl -sf "http://127.0.0.1:${health_port[$node]}/ready" ||
    { cat "$work/$node/provider.log" "$work/$node/kubelet.log" 2>/dev/null; exit 1; }
  if [ "$runtime" = static_pod ]; then
    say "  static pod bao-kms-provider-$node: running $(image_of "$installed" | cut -c1-60)..., /ready 200"
  else
    say "  $(unit_of "$node"): active, /ready 200"
  fi
done

step "one kmsfleetd agent per node, electing a coordinator over mutual TLS"
for node in "${nodes[@]}"; do
  dir="$work/$node"
  cat >"$dir/kmsfleet.yaml" <<YAML
node: $node
state_dir: $dir/state
listen:
  unix: $dir/agent.sock
provider:
  metrics_url: http://127.0.0.1:${metrics_port[$node]}/metrics
  ready_url: http://127.0.0.1:${health_port[$node]}/ready
  live_url: http://127.0.0.1:${health_port[$node]}/live
  kms_socket: $dir/run/kms.sock
  config: $dir/provider.yaml
  encryption_config: $dir/encryption-config.yaml
$(provider_runtime_lines "$node")
executor:
$(executor_runtime_lines)
  public_keys: [$work/release.pub]
  stabilization_ms: ${FLEET_STABILIZATION_MS:-2000}
  poll_interval_ms: ${FLEET_POLL_MS:-500}
peers:
$(for peer in "${nodes[@]}"; do
    [ "$peer" = "$node" ] || echo "  - {name: $peer, address: ${node_ip[$peer]}:${cluster_port[$peer]}}"
  done)
cluster:
  listen: ${node_ip[$node]}:${cluster_port[$node]}
  plan_tick_ms: ${FLEET_PLAN_TICK_MS:-200}
  tls:
    ca: $pki/ca.pem
    cert: $pki/$node.pem
    key: $pki/$node.key
    operator_trust_domain: kmsfleet.demo
$(runtime_sections "$node")
YAML
done
! declare -F fleet_hook_before_agents >/dev/null || fleet_hook_before_agents
for node in "${nodes[@]}"; do agent_start "$node"; done
locals=()
for node in "${nodes[@]}"; do locals+=(--agent "unix:$work/$node/agent.sock"); done
wait_for 30 "$ctl" status "${locals[@]}" || true
wait_for 30 "$ctl" leader "${locals[@]}" || true
[ "${FLEET_QUIET:-0}" = 1 ] || "$ctl" leader "${locals[@]}" || true

  # The operator: any agent's cluster listener, with alice's certificate.
  op=(--agent "${node_ip[cp-1]}:${cluster_port[cp-1]}" --server-name cp-1
      --ca "$pki/ca.pem" --cert "$pki/alice.pem" --key "$pki/alice.key")
}
