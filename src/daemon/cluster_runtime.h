// Wires the `cluster:` config section into a running PeerNode and its
// cluster listener for kmsfleetd (architecture.md §6).
// Thread-compatible: Start and Stop from one thread.
#ifndef KMSFLEET_DAEMON_CLUSTER_RUNTIME_H_
#define KMSFLEET_DAEMON_CLUSTER_RUNTIME_H_

#include <chrono>
#include <grpcpp/impl/codegen/service_type.h>

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "daemon/agent_config.h"
#include "daemon/fetched_sources.h"
#include "kmsfleet/cluster/cluster_server.h"
#include "kmsfleet/cluster/coordinator.h"
#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/node/executor.h"

namespace kmsfleet {

// How the cluster listener of `config` identifies callers: members are the
// voters and learners, operators carry cluster.tls.operator_trust_domain;
// an insecure (loopback) listener trusts everyone, as before.
CallerPolicy CallerPolicyOf(const AgentConfig& config);

// How long the coordinator's Stage and Preflight calls to an agent
// configured by `config` may run: what that config lets the agent take
// (its download and doctor timeouts) and a margin. Every agent reports its own in NodeState.call_bounds.
v1::CallBounds CallBoundsOf(const AgentConfig& config);

// How this member's Stage fetches coordinator:// sources: from the named
// node's Fleet.FetchArtifact over the cluster channel, with the member
// certificate of cluster.tls. Errors as LoadPeerCredentials.
absl::StatusOr<FetchUpload> UploadFetchOf(const AgentConfig& config);

class ClusterRuntime {
 public:
  // Loads credentials and persisted state and starts electing.
  // `handoff_outcome` answers the coordinator's hand-off query (the
  // executor's HandoffOutcome). `agent_service` (kmsfleet.v1.Agent,
  // authorised by CallerPolicyOf(config); it must outlive the runtime) is
  // served on the cluster listener too, unless that listener is insecure.
  // Errors name the config key or state file at fault; nothing is left
  // running.
  // `on_refusal` is told the coordinator's guard refusals (metrics).
  // `before_serving` runs once the election state is loaded and before the
  // listener takes a call: the executor's checks go in there. What it
  // installs must not be used once Start has failed.
  static absl::StatusOr<std::unique_ptr<ClusterRuntime>> Start(
      const AgentConfig& config,
      std::function<HandoffAnswer(const v1::Fence&)> handoff_outcome,
      grpc::Service* agent_service = nullptr,
      std::function<void(std::string_view reason)> on_refusal = {},
      const std::function<void(ClusterRuntime&)>& before_serving = {});
  ~ClusterRuntime();

  // The executor's fence check for a member of the election: a command
  // without a fence is refused (FENCE_REQUIRED); one with a fence is
  // admitted only by PeerNode::AdmitSwap, which persists what it learns.
  FenceCheck fence_check();
  // The executor's wait before it reserves a fenced command:
  // PeerNode::AwaitFence.
  FenceWait fence_wait();
  // The executor's plan check: PeerNode::CheckCommand.
  PlanCheck plan_check();
  // The executor's release check: PeerNode::CheckRelease.
  ReleaseCheck release_check();

  // This agent's view of the election (for /metrics).
  v1::LeaderView View() { return node_->View(); }
  // Fleet-wide key_id parity, on the coordinator only (for /metrics).
  std::optional<bool> FleetParity() { return coordinator_->FleetParity(); }
  // Progress counters of the election's tick loop and the plan loop, for
  // the systemd watchdog.
  uint64_t election_ticks() const { return node_->ticks(); }
  uint64_t plan_rounds() const { return coordinator_->rounds(); }

  // The Fleet service for the agent's unix socket.
  grpc::Service* local_fleet_service() { return local_fleet_.get(); }
  int port() const { return server_->port(); }
  void Stop(std::chrono::milliseconds grace);
  // The first step of a stop: ends every plan watch, on both listeners.
  void EndWatches();
  // The SIGTERM path (a package upgrade restarts the agent): a coordinator
  // stops dispatching plan actions, hands leadership to an up-to-date voter
  // (waiting at most min(election timeout, 2 s)) and logs the target, the
  // outcome and the time taken; then, coordinator or not, Stop(grace).
  void HandOverAndStop(std::chrono::milliseconds grace);

 private:
  ClusterRuntime() = default;
  std::chrono::milliseconds transfer_wait_{2000};
  std::unique_ptr<PeerNode> node_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<UploadStore> uploads_;  // outlives both Fleet services
  std::unique_ptr<ClusterServer> server_;
  std::unique_ptr<grpc::Service> local_fleet_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_CLUSTER_RUNTIME_H_
