#include "fleet_actions.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

// How long one WatchOperation stream may stay open before it is opened
// again (so that leadership is re-checked), and the pause before reopening
// one that broke.
constexpr std::chrono::seconds kFollowStream{5};
constexpr std::chrono::milliseconds kRetryInterval{200};
// How long a RestartApiServer call may take: beyond what any agent's
// apiserver config allows (restart_timeout_ms plus timeout_ms, each at most
// an hour), with room for its fence check and record, so that the agent's
// own bound decides; a coordinator that stops leading cancels it sooner.
constexpr std::chrono::minutes kRestartApiServerDeadline{125};

ActionResult ResultFor(const PlanAction& action, ResultKind kind) {
  ActionResult r;
  r.kind = kind;
  r.node = action.node;
  r.revision = action.revision;
  return r;
}

// What a swap and a rollback request share.
template <typename Request>
Request CommandRequest(const PlanAction& action, const v1::Fence& fence) {
  Request request;
  request.set_expected_key_id_hash(action.expected_key_id_hash);
  request.set_stabilization_ms(action.stabilization_ms);
  request.set_operation_id(action.operation_id);
  *request.mutable_fence() = fence;
  return request;
}

// Starts a call with `start` (which passes its callback to the stub's
// async method) and waits for its end, cancelling it once `keep_going()`
// turns false: a long call must not outlast the term that sent it.
grpc::Status WhileLeading(
    grpc::ClientContext& context,
    const std::function<void(std::function<void(grpc::Status)>)>& start,
    const std::function<bool()>& keep_going) {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<grpc::Status> answer;
  start([&](grpc::Status s) {
    std::lock_guard lock(mu);
    answer = std::move(s);
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  bool cancelled = false;
  while (!cv.wait_for(lock, kRetryInterval, [&] { return answer.has_value(); })) {
    lock.unlock();
    const bool stop = !cancelled && !keep_going();
    lock.lock();
    if (stop) {
      context.TryCancel();
      cancelled = true;
    }
  }
  return *answer;
}

}  // namespace

FleetActions::FleetActions(const std::map<std::string, std::string>& addresses,
                           std::shared_ptr<grpc::ChannelCredentials> credentials,
                           std::chrono::milliseconds call_timeout,
                           std::chrono::milliseconds observe_timeout,
                           std::chrono::milliseconds stage_timeout,
                           std::chrono::milliseconds preflight_timeout,
                           const PeerKeepalive& keepalive)
    : call_timeout_(call_timeout),
      observe_timeout_(observe_timeout),
      stage_timeout_(stage_timeout),
      preflight_timeout_(preflight_timeout) {
  for (const auto& [node, address] : addresses) {
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(address, credentials, PeerChannelArguments(node, std::nullopt));
    NodeStubs& stubs = nodes_[node];
    stubs.agent = v1::Agent::NewStub(channel);
    stubs.fleet = v1::Fleet::NewStub(channel);
    stubs.agent_kept_alive = v1::Agent::NewStub(
        grpc::CreateCustomChannel(address, credentials, PeerChannelArguments(node, keepalive)));
  }
}

FleetActions::CallContext FleetActions::Context() { return Context(call_timeout_); }

FleetActions::CallContext FleetActions::Context(std::chrono::milliseconds timeout) {
  CallContext context(new grpc::ClientContext, CallEnd{this});
  std::lock_guard lock(calls_mu_);
  // After CancelAll a call fails at once rather than starting.
  context->set_deadline(std::chrono::system_clock::now() +
                        (cancelled_ ? std::chrono::milliseconds(0) : timeout));
  calls_.insert(context.get());
  return context;
}

void FleetActions::CallEnd::operator()(grpc::ClientContext* context) const {
  {
    std::lock_guard lock(owner->calls_mu_);
    owner->calls_.erase(context);
  }
  delete context;
}

void FleetActions::CancelAll() {
  std::lock_guard lock(calls_mu_);
  cancelled_ = true;
  for (grpc::ClientContext* context : calls_) context->TryCancel();
}

const FleetActions::NodeStubs* FleetActions::StubsOf(const std::string& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second;
}

v1::Agent::StubInterface* FleetActions::Stub(const std::string& node) {
  const NodeStubs* stubs = StubsOf(node);
  if (stubs == nullptr) return nullptr;
  std::lock_guard lock(bounds_mu_);
  return bounds_.contains(node) ? stubs->agent_kept_alive.get() : stubs->agent.get();
}

absl::StatusOr<v1::NodeState> FleetActions::Observe(const std::string& node) {
  v1::Agent::StubInterface* stub = Stub(node);
  if (stub == nullptr) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                     "no cluster address is configured for " + node, {{"node", node}});
  }
  v1::NodeState state;
  grpc::Status s =
      stub->GetNodeState(Context(observe_timeout_).get(), v1::GetNodeStateRequest(), &state);
  if (!s.ok()) return FromGrpcStatus(s, node);
  std::lock_guard lock(bounds_mu_);
  if (state.has_call_bounds()) {
    bounds_[node] = state.call_bounds();
  } else {
    bounds_.erase(node);  // an agent older than the field, again
  }
  return state;
}

std::chrono::milliseconds FleetActions::Bound(const std::string& node,
                                              std::chrono::milliseconds own,
                                              int64_t (v1::CallBounds::*field)() const) {
  std::lock_guard lock(bounds_mu_);
  auto it = bounds_.find(node);
  if (it == bounds_.end()) return own;
  const int64_t said = std::clamp<int64_t>(
      (it->second.*field)(), 0,
      std::chrono::duration_cast<std::chrono::milliseconds>(kMaxPeerCallBound).count());
  return std::max(own, std::chrono::milliseconds(said));
}

absl::StatusOr<v1::PlanView> FleetActions::CoordinatorPlan(const std::string& node) {
  const NodeStubs* stubs = StubsOf(node);
  if (stubs == nullptr) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                     "no cluster address is configured for " + node, {{"node", node}});
  }
  v1::PlanView view;
  grpc::Status s = stubs->fleet->GetPlan(Context().get(), v1::GetPlanRequest(), &view);
  if (!s.ok()) return FromGrpcStatus(s, node);
  return view;
}

absl::StatusOr<v1::PreflightResponse> FleetActions::PreflightInstalled(
    const std::string& node, std::chrono::milliseconds cap,
    const std::function<bool()>& keep_going) {
  v1::Agent::StubInterface* stub = Stub(node);
  if (stub == nullptr) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                     "no cluster address is configured for " + node, {{"node", node}});
  }
  v1::PreflightRequest request;
  request.set_installed_only(true);
  v1::PreflightResponse response;
  CallContext context =
      Context(std::min(cap, Bound(node, preflight_timeout_, &v1::CallBounds::preflight_ms)));
  grpc::Status s = WhileLeading(
      *context,
      [&](std::function<void(grpc::Status)> done) {
        stub->async()->Preflight(context.get(), &request, &response, std::move(done));
      },
      keep_going);
  if (!s.ok()) return FromGrpcStatus(s, node);
  return response;
}

ActionResult FleetActions::Run(const PlanAction& action, const v1::Fence& fence,
                               const v1::PlanSettings& settings,
                               const std::string& metric_rotation_state,
                               const std::function<bool()>& keep_going) {
  if (Stub(action.node) == nullptr) {
    ActionResult r = ResultFor(action, ResultKind::kStaged);
    r.status = MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                         "no cluster address is configured for " + action.node);
    return r;
  }
  switch (action.kind) {
    case ActionKind::kStage: return Stage(action, fence, settings, keep_going);
    case ActionKind::kPreflight:
      return Preflight(action, fence, metric_rotation_state, keep_going);
    case ActionKind::kSwap:
    case ActionKind::kRollbackNode: return Operate(action, fence, keep_going);
    case ActionKind::kRestartApiServer: return RestartApiServer(action, fence, keep_going);
    default: break;
  }
  ActionResult r = ResultFor(action, ResultKind::kApiServerRestarted);
  r.status = MakeError(absl::StatusCode::kUnimplemented, reason::kApiServerRestartFailed,
                       absl::StrCat("kmsfleetd cannot carry out ",
                                    std::string(ActionKindName(action.kind)), " on ",
                                    action.node));
  return r;
}

ActionResult FleetActions::Stage(const PlanAction& action, const v1::Fence& fence,
                                 const v1::PlanSettings& settings,
                                 const std::function<bool()>& keep_going) {
  ActionResult r = ResultFor(action, ResultKind::kStaged);
  v1::StageRequest request;
  request.set_version(action.version);
  // The node waits for this record's commit before it judges the stage
  // against its plan (none: a warm-up, judged on what the node holds).
  if (fence.term() != 0) *request.mutable_fence() = fence;
  request.set_source(settings.artifact_source());
  request.set_checksums(settings.checksums_source());
  request.set_signature(settings.signature_source());
  request.set_image(settings.image());
  request.set_image_ref(settings.image_ref_source());
  v1::StageResponse response;
  // Staging may download the artifact (CoordinatorOptions::stage_timeout);
  // a static-pod release's kit is a second large file, fetched after the
  // binary within the same call, each in up to the agent's download
  // timeout. Found in review: with one timeout for both, a kit fetched
  // over a slow link was cut every time, and the Stage sent again for ever.
  const std::chrono::milliseconds bound =
      Bound(action.node, stage_timeout_, &v1::CallBounds::stage_ms);
  const std::chrono::milliseconds timeout =
      settings.image_ref_source().empty() ? bound : 2 * bound;
  CallContext context = Context(timeout);
  grpc::Status s = WhileLeading(
      *context,
      [&](std::function<void(grpc::Status)> done) {
        Stub(action.node)->async()->Stage(context.get(), &request, &response, std::move(done));
      },
      keep_going);
  r.status = FromGrpcStatus(s, action.node);
  r.previous_artifact_verified = response.previous_artifact_verified();
  r.staged_digest = response.staged_digest();
  return r;
}

ActionResult FleetActions::Preflight(const PlanAction& action, const v1::Fence& fence,
                                     const std::string& metric_state,
                                     const std::function<bool()>& keep_going) {
  ActionResult r = ResultFor(action, ResultKind::kPreflighted);
  v1::PreflightRequest request;
  request.set_version(action.version);
  if (fence.term() != 0) *request.mutable_fence() = fence;
  v1::PreflightResponse response;
  CallContext context =
      Context(Bound(action.node, preflight_timeout_, &v1::CallBounds::preflight_ms));
  grpc::Status s = WhileLeading(
      *context,
      [&](std::function<void(grpc::Status)> done) {
        Stub(action.node)->async()->Preflight(context.get(), &request, &response,
                                              std::move(done));
      },
      keep_going);
  r.status = FromGrpcStatus(s, action.node);
  if (!r.status.ok()) return r;
  r.doctor.node = action.node;
  r.doctor.ran = true;
  r.doctor.passed = response.blocking().reason().empty();
  for (const v1::PreflightCheck& c : response.checks()) {
    if (c.status() != "fail") continue;
    r.doctor.passed = false;
    absl::StrAppend(&r.doctor.failed_checks, r.doctor.failed_checks.empty() ? "" : ",", c.id());
  }
  if (!r.doctor.passed && r.doctor.failed_checks.empty()) {
    r.doctor.failed_checks = response.blocking().reason() + ": " + response.blocking().message();
  }
  r.rotation = RotationOfPreflight(action.node, metric_state, response);
  return r;
}

ActionResult FleetActions::Operate(const PlanAction& action, const v1::Fence& fence,
                                   const std::function<bool()>& keep_going) {
  ActionResult r = ResultFor(action, ResultKind::kOperation);
  r.operation_id = action.operation_id;
  v1::Operation operation;
  if (!action.start_allowed) {
    // Only what the node already has is followed; NotFound starts nothing.
    operation.set_operation_id(action.operation_id);
    return Follow(action, std::move(operation), keep_going);
  }
  grpc::Status s;
  if (action.kind == ActionKind::kSwap) {
    v1::SwapRequest request = CommandRequest<v1::SwapRequest>(action, fence);
    request.set_version(action.version);
    request.set_expected_staged_digest(action.expected_staged_digest);
    s = Stub(action.node)->Swap(Context().get(), request, &operation);
  } else {
    v1::RollbackRequest request = CommandRequest<v1::RollbackRequest>(action, fence);
    request.set_of_operation_id(action.of_operation_id);
    request.set_expected_version(action.version);  // the plan's version before
    s = Stub(action.node)->Rollback(Context().get(), request, &operation);
  }
  r.status = CommandRefusalForPlan(FromGrpcStatus(s, action.node));
  if (ReasonOf(r.status) == reason::kStaleFence) {
    // The node answered a hand-off at this fence: the command may have run
    // before that (follow it), or never (the caller needs a fresh fence).
    v1::GetOperationRequest request;
    request.set_operation_id(action.operation_id);
    grpc::Status got = Stub(action.node)->GetOperation(Context().get(), request, &operation);
    if (got.ok()) return Follow(action, std::move(operation), keep_going);
    if (got.error_code() != grpc::StatusCode::NOT_FOUND) {
      // Found in review: a timeout here was taken for "never ran", and a
      // paused plan gave back, untouched, a slot whose swap had ended
      // Stable. Not known either way: ask again.
      absl::Status unknown = FromGrpcStatus(got, action.node);
      const std::string why = ReasonOf(unknown);
      r.status = MakeError(absl::StatusCode::kUnavailable,
                           why.empty() ? std::string(reason::kAgentUnreachable) : why,
                           "whether operation " + action.operation_id + " ran on " +
                               action.node + " before its hand-off is not known: " +
                               std::string(unknown.message()),
                           {{"node", action.node}, {"operation_id", action.operation_id}});
      return r;
    }
  }
  if (!r.status.ok()) return r;
  return Follow(action, std::move(operation), keep_going);
}

ActionResult FleetActions::RestartApiServer(const PlanAction& action, const v1::Fence& fence,
                                            const std::function<bool()>& keep_going) {
  ActionResult r = ResultFor(action, ResultKind::kApiServerRestarted);
  r.operation_id = action.operation_id;  // a retry's answer is told from the first's
  v1::RestartApiServerRequest request;
  // The restart is named by the swap it follows: asked again, the agent
  // answers from the restart it ran rather than running another.
  if (!action.operation_id.empty()) request.set_restart_id(action.operation_id + ".apiserver");
  *request.mutable_fence() = fence;
  v1::RestartApiServerResponse response;
  CallContext context = Context(kRestartApiServerDeadline);
  const grpc::Status answer = WhileLeading(
      *context,
      [&](std::function<void(grpc::Status)> done) {
        Stub(action.node)->async()->RestartApiServer(context.get(), &request, &response,
                                                     std::move(done));
      },
      keep_going);
  if (answer.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    r.status = MakeError(absl::StatusCode::kFailedPrecondition, reason::kApiServerRestartFailed,
                         "agent " + action.node + " cannot restart kube-apiserver: " +
                             answer.error_message());
    return r;
  }
  r.status = CommandRefusalForPlan(FromGrpcStatus(answer, action.node));
  if (r.status.ok()) {
    r.apiserver_restart = response.method() + ": " + response.done();
    Log(LogLevel::kInfo, "kube-apiserver restarted",
        {{"node", action.node}, {"operation", action.operation_id}, {"done", response.done()},
         {"ready_ms", std::to_string(response.ready_ms())}});
  }
  return r;
}

ActionResult FleetActions::Follow(const PlanAction& action, v1::Operation operation,
                                  const std::function<bool()>& keep_going) {
  ActionResult r = ResultFor(action, ResultKind::kOperation);
  r.operation_id = action.operation_id;
  int silent = 0;
  while (!operation.done()) {
    if (!keep_going()) {
      r.status = MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                           "stopped following " + action.operation_id + " on " + action.node);
      return r;
    }
    // The agent streams every phase change; a stream ends at the deadline
    // (or when the node goes away) and is opened again.
    CallContext context = Context(kFollowStream);
    v1::GetOperationRequest request;
    request.set_operation_id(action.operation_id);
    std::unique_ptr<grpc::ClientReaderInterface<v1::Operation>> stream =
        Stub(action.node)->WatchOperation(context.get(), request);
    v1::Operation next;
    bool open = true, heard = false;
    while (!operation.done() && (open = stream->Read(&next))) {
      operation = next;
      heard = true;
    }
    // Done while the stream is open: Finish would wait for its deadline.
    // Only then: cancelled after it ended, its end read CANCELLED (found
    // in review: a refused watch was opened again for ever, unseen).
    if (open) context->TryCancel();
    const grpc::Status finished = stream->Finish();
    if (operation.done()) break;
    switch (NextFollowStep(static_cast<absl::StatusCode>(finished.error_code()), heard, silent)) {
      case WatchEnd::kOpenAgain: break;
      case WatchEnd::kNotFound:
        // The node does not know it (any more): the plan sends it again.
        r.outcome = OperationOutcome::kNotFound;
        return r;
      case WatchEnd::kFailed: {
        // Said Unavailable, the plan names the node it waits for and asks
        // again under the same id; a stream the server closed said nothing.
        const grpc::Status said =
            finished.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "no word") : finished;
        SetFollowFailed(FromGrpcStatus(said, action.node), action.operation_id, r);
        return r;
      }
    }
    std::this_thread::sleep_for(kRetryInterval);
  }
  SetOperationResult(operation, r);
  return r;
}

}  // namespace kmsfleet
