#include "daemon/cluster_runtime.h"

#include <algorithm>
#include <random>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/cluster/upload_fetch.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/node/openbao_health.h"
#include "kmsfleet/node/provider_probe.h"

namespace kmsfleet {

CallerPolicy CallerPolicyOf(const AgentConfig& config) {
  const ClusterConfig& c = config.cluster;
  CallerPolicy policy{.local = c.insecure, .self = config.node};
  policy.members = c.voters;
  policy.members.insert(policy.members.end(), c.learners.begin(), c.learners.end());
  policy.operator_trust_domain = c.tls.operator_trust_domain;
  return policy;
}

absl::StatusOr<FetchUpload> UploadFetchOf(const AgentConfig& config) {
  absl::StatusOr<PeerCredentials> creds = LoadPeerCredentials(config.cluster);
  if (!creds.ok()) return creds.status();
  std::map<std::string, std::string> addresses{{config.node, config.cluster.listen}};
  for (const PeerConfig& p : config.peers) addresses[p.name] = p.address;
  // Each file is bounded like a URL download; the Stage call's own
  // deadline, set by the coordinator from its download timeout, also ends it.
  auto fetcher = std::make_shared<UploadFetcher>(addresses, creds->channel,
                                                 config.executor.download_timeout);
  return FetchUpload([fetcher](const std::string& source, UploadKind kind,
                               const std::string& dest, FetchDeadline deadline,
                               const FetchStop& stop) {
    return fetcher->Fetch(source, kind, dest, deadline, stop);
  });
}

namespace {

int64_t WallClockMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

v1::CallBounds CallBoundsOf(const AgentConfig& config) {
  v1::CallBounds b;
  b.set_stage_ms((config.executor.download_timeout + std::chrono::minutes(1)).count());
  // Doctor beside one rotation-plan, then, for a release that predates the
  // Transit check, the other release's rotation-plan.
  b.set_preflight_ms((2 * config.executor.doctor_timeout + std::chrono::minutes(1)).count());
  return b;
}

namespace {

CoordinatorOptions CoordinatorOptionsOf(const AgentConfig& config,
                                        const std::map<std::string, std::string>& addresses,
                                        std::shared_ptr<grpc::ChannelCredentials> channel) {
  CoordinatorOptions o;
  o.self = config.node;
  o.voters = config.cluster.voters;
  o.addresses = addresses;
  o.channel_credentials = std::move(channel);
  o.tick = std::chrono::milliseconds(config.cluster.plan_tick_ms);
  // Every agent observes its provider with the same settings as this one.
  o.observe_timeout = ObserveBound(config.provider) + std::chrono::seconds(1);
  // Until an agent says otherwise (NodeState.call_bounds), as this one.
  const v1::CallBounds bounds = CallBoundsOf(config);
  o.stage_timeout = std::chrono::milliseconds(bounds.stage_ms());
  o.preflight_timeout = std::chrono::milliseconds(bounds.preflight_ms());
  o.history_path = config.state_dir + "/plan-history.pb";
  // The coordinator asks OpenBao itself, at the address and with the CA of
  // its own provider's config (every node's provider uses the same OpenBao).
  o.probe_openbao = [facts = config.provider_facts]() -> std::optional<OpenBaoProbe> {
    return ProbeOpenBaoHealth(facts, std::chrono::seconds(2));
  };
  o.apiserver_restart_method = ApiServerRestartMethodName(config.apiserver);
  o.now_unix_ms = WallClockMs;
  o.random = [] {
    // The shell draws randomness; the plan machine only takes it.
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  };
  return o;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterRuntime>> ClusterRuntime::Start(
    const AgentConfig& config,
    std::function<HandoffAnswer(const v1::Fence&)> handoff_outcome,
    grpc::Service* agent_service, std::function<void(std::string_view reason)> on_refusal,
    const std::function<void(ClusterRuntime&)>& before_serving) {
  const ClusterConfig& c = config.cluster;
  absl::StatusOr<PeerCredentials> creds = LoadPeerCredentials(c);
  if (!creds.ok()) return creds.status();
  if (creds->insecure) {
    Log(LogLevel::kWarn,
        "cluster runs on plain TCP (cluster.insecure: true): peers are not "
        "authenticated and any host can speak for any node; local demos only",
        {{"node", config.node}, {"listen", c.listen}});
  }
  PeerNodeOptions options;
  options.election = ElectionConfig{.self = config.node, .voters = c.voters,
                                    .learners = c.learners,
                                    .election_ticks = c.election_ticks,
                                    .heartbeat_ticks = c.heartbeat_ticks};
  options.tick = std::chrono::milliseconds(c.tick_ms);
  options.state_dir = config.state_dir;
  options.addresses[config.node] = c.listen;
  for (const PeerConfig& p : config.peers) options.addresses[p.name] = p.address;
  const std::map<std::string, std::string> options_addresses = options.addresses;
  options.channel_credentials = creds->channel;
  options.handoff_outcome = std::move(handoff_outcome);
  // The shell may draw randomness; the core only takes it as an input.
  options.seed = (static_cast<uint64_t>(std::random_device()()) << 32) ^
                 std::random_device()();
  absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
  if (!node.ok()) return node.status();

  std::unique_ptr<ClusterRuntime> runtime(new ClusterRuntime());
  // A transfer not done within an election timeout is abandoned by the
  // machine anyway; 2 s caps it for slow configured timings.
  runtime->transfer_wait_ = std::min(
      std::chrono::milliseconds(int64_t{c.tick_ms} * c.election_ticks),
      std::chrono::milliseconds(2000));
  runtime->node_ = std::move(*node);
  CoordinatorOptions coordinator = CoordinatorOptionsOf(
      config, options_addresses, creds->insecure ? nullptr : creds->channel);
  coordinator.on_refusal = std::move(on_refusal);
  runtime->coordinator_ = std::make_unique<Coordinator>(*runtime->node_, std::move(coordinator));
  // One store for both listeners' Fleet services. Found in review: each
  // had its own, so a prune after an upload over TCP did not wait for a
  // plan start over the unix socket that had just found its upload.
  runtime->uploads_ = std::make_unique<UploadStore>(
      runtime->node_->state_dir(), kUploadFreeSpaceReserveBytes,
      UploadLimits{.max_streams = c.upload_streams,
                   .idle_timeout = std::chrono::milliseconds(c.upload_idle_timeout_ms)});
  runtime->server_ = std::make_unique<ClusterServer>(*runtime->node_, *runtime->uploads_,
                                                     runtime->coordinator_.get());
  if (before_serving) before_serving(*runtime);
  // Without TLS nobody can be told from anybody, so the disruptive Agent
  // API stays on the unix socket.
  std::vector<grpc::Service*> extra;
  if (agent_service != nullptr && !creds->insecure) extra.push_back(agent_service);
  if (absl::Status s =
          runtime->server_->Start(c.listen, creds->server, CallerPolicyOf(config), extra);
      !s.ok()) {
    return s;
  }
  runtime->local_fleet_ = NewFleetService(
      *runtime->node_, CallerPolicy{.local = true, .self = config.node},
      runtime->coordinator_.get(), *runtime->uploads_);
  runtime->node_->Start();
  runtime->coordinator_->Start();
  Log(LogLevel::kInfo, "cluster serving",
      {{"node", config.node}, {"listen", c.listen},
       {"port", std::to_string(runtime->server_->port())},
       {"voters", std::to_string(c.voters.size())},
       {"tls", creds->insecure ? "off" : "mutual"},
       {"agent_api", extra.empty() ? "unix socket only" : "cluster listener too"},
       {"operators", c.tls.operator_trust_domain.empty()
                         ? "none"
                         : OperatorUriPrefix(c.tls.operator_trust_domain) + "*"}});
  return runtime;
}

FenceCheck ClusterRuntime::fence_check() {
  PeerNode* node = node_.get();
  return [node](const std::optional<v1::Fence>& fence) -> absl::Status {
    if (!fence) {
      return MakeError(absl::StatusCode::kFailedPrecondition, reason::kFenceRequired,
                       "node " + node->self() +
                           " is a member of an election: swap and rollback need the "
                           "coordinator's fence (kmsfleetctl plan commit --in-flight " +
                           node->self() + " prints one)");
    }
    return node->AdmitSwap(*fence);
  };
}

FenceWait ClusterRuntime::fence_wait() {
  PeerNode* node = node_.get();
  return [node](const v1::Fence& fence) { node->AwaitFence(fence); };
}

PlanCheck ClusterRuntime::plan_check() {
  PeerNode* node = node_.get();
  return [node](const NodeCommand& command) { return node->CheckCommand(command); };
}

ReleaseCheck ClusterRuntime::release_check() {
  PeerNode* node = node_.get();
  return [node](const std::optional<v1::Fence>& fence, const ReleaseCommand& command) {
    return node->CheckRelease(fence, command);
  };
}

ClusterRuntime::~ClusterRuntime() { Stop(std::chrono::milliseconds(0)); }

void ClusterRuntime::HandOverAndStop(std::chrono::milliseconds grace) {
  // No new plan action once we decided to go; the Peer service keeps
  // serving, since the transfer needs the group's votes and appends.
  if (coordinator_) coordinator_->Stop();
  if (node_ && node_->View().role() == RoleName(Role::kLeader)) {
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<PeerNode::Transferred> moved = node_->TransferLeadership("", transfer_wait_);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
    if (moved.ok()) {
      Log(LogLevel::kInfo, "leadership handed over before stopping",
          {{"node", node_->self()}, {"target", moved->target}, {"leader", moved->leader},
           {"term", std::to_string(moved->term)}, {"outcome", "transferred"},
           {"ms", std::to_string(ms)}});
    } else {
      // The group elects a coordinator after its timeout, as after a crash.
      Log(LogLevel::kWarn, "leadership not handed over before stopping",
          {{"node", node_->self()}, {"target", MetadataOf(moved.status(), "target")},
           {"outcome", ReasonOf(moved.status())},
           {"error", std::string(moved.status().message())}, {"ms", std::to_string(ms)}});
    }
  }
  Stop(grace);
}

void ClusterRuntime::EndWatches() {
  if (coordinator_) coordinator_->EndWatches();
}

void ClusterRuntime::Stop(std::chrono::milliseconds grace) {
  if (server_) server_->Shutdown(grace);
  if (coordinator_) coordinator_->Stop();
  if (node_) node_->Stop();
}

}  // namespace kmsfleet
