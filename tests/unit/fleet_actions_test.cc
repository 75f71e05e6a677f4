// FleetActions against an in-process Agent service: the deadline each
// call is given, and how a refused swap is read.
#include "fleet_actions.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/v1/agent.grpc.pb.h"
#include "loopback_server.h"

namespace kmsfleet {
namespace {

using std::chrono::milliseconds;

// Answers Stage and Preflight at once, recording how long the caller gave
// the call.
class DeadlineRecorder final : public v1::Agent::Service {
 public:
  grpc::Status Stage(grpc::ServerContext* context, const v1::StageRequest*,
                     v1::StageResponse*) override {
    return Record(*context);
  }
  grpc::Status Preflight(grpc::ServerContext* context, const v1::PreflightRequest*,
                         v1::PreflightResponse*) override {
    return Record(*context);
  }
  int64_t given_ms() const { return given_ms_; }

 private:
  grpc::Status Record(const grpc::ServerContext& context) {
    given_ms_ = std::chrono::duration_cast<milliseconds>(context.deadline() -
                                                         std::chrono::system_clock::now())
                    .count();
    return grpc::Status::OK;
  }

  std::atomic<int64_t> given_ms_{-1};
};

// Runs `action` with FleetActions against `agent`, served in-process as
// node cp-1.
ActionResult RunAgainst(v1::Agent::Service& agent, const PlanAction& action,
                        const v1::PlanSettings& settings = {},
                        const std::function<bool()>& keep_going = [] { return true; }) {
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  if (server == nullptr) return ActionResult{};
  FleetActions actions({{"cp-1", "127.0.0.1:" + std::to_string(port)}},
                       grpc::InsecureChannelCredentials(), milliseconds(3000),
                       milliseconds(16000), std::chrono::minutes(11), std::chrono::minutes(3));
  ActionResult r = actions.Run(action, v1::Fence(), settings, "", keep_going);
  server->Shutdown(std::chrono::system_clock::now());
  return r;
}

// `kind` on cp-1, for version 0.2.0, as plan-1's third swap names it.
PlanAction ActionOn(ActionKind kind) {
  PlanAction action;
  action.kind = kind;
  action.node = "cp-1";
  action.version = "0.2.0";
  action.operation_id = "plan-1.cp-1.swap.3";
  return action;
}

int64_t Ms(std::chrono::milliseconds d) { return d.count(); }

// Found in review: Stage was given ten plain call timeouts (30 s), so a
// 100 MB artifact fetched by several nodes over a slow link never staged:
// each attempt was cut and started again from its first byte.
TEST(FleetActionsTest, AStageCallIsGivenTheStageTimeoutNotAPlainCallsBound) {
  DeadlineRecorder agent;
  const PlanAction stage = ActionOn(ActionKind::kStage);
  ActionResult r = RunAgainst(agent, stage);
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::minutes(10)));
  // The wire rounds a deadline up to whole seconds (this failed once by 999 ms).
  EXPECT_LE(agent.given_ms(), Ms(std::chrono::minutes(11) + std::chrono::seconds(2)));

  // A static-pod release: the binary, then the kit, each up to the
  // agent's download timeout.
  v1::PlanSettings static_pod;
  static_pod.set_image_ref_source("coordinator://cp-1/" + std::string(64, 'a') +
                                  "/bao-kms-provider_0.2.0_static-pod_linux_amd64.tar.gz");
  r = RunAgainst(agent, stage, static_pod);
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::minutes(21)));
}

// Found in review: Preflight was given ten plain call timeouts (30 s),
// while a doctor may take the agent's doctor timeout (60 s by default), and
// a rotation-plan after it as long again: a doctor waiting on a slow
// OpenBao was cut every time and sent again for ever as AGENT_UNREACHABLE.
TEST(FleetActionsTest, APreflightCallIsGivenThePreflightTimeout) {
  DeadlineRecorder agent;
  ActionResult r = RunAgainst(agent, ActionOn(ActionKind::kPreflight));
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::minutes(2)));
  // The wire rounds a deadline up to whole seconds.
  EXPECT_LE(agent.given_ms(), Ms(std::chrono::minutes(3) + std::chrono::seconds(2)));
}

// Refuses every swap STALE_FENCE (it answered a hand-off at that fence)
// and answers GetOperation with `lookup`.
class StaleFenceAgent final : public v1::Agent::Service {
 public:
  explicit StaleFenceAgent(grpc::Status lookup) : lookup_(std::move(lookup)) {}
  grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest*, v1::Operation*) override {
    return ToGrpcStatus(MakeError(absl::StatusCode::kFailedPrecondition, reason::kStaleFence,
                                  "answered a hand-off at this fence"));
  }
  grpc::Status GetOperation(grpc::ServerContext*, const v1::GetOperationRequest*,
                            v1::Operation*) override {
    return lookup_;
  }

 private:
  grpc::Status lookup_;
};

ActionResult SwapAgainst(StaleFenceAgent& agent) {
  const PlanAction swap = ActionOn(ActionKind::kSwap);
  return RunAgainst(agent, swap);
}

// Found in review: after STALE_FENCE, any failed lookup of the operation
// (a timeout) was taken for "it never ran", and a paused plan gave the
// slot back untouched although the swap had ended Stable.
TEST(FleetActionsTest, AStaleFenceWhoseOperationCannotBeLookedUpIsAskedAgain) {
  StaleFenceAgent timing_out(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "slow disk"));
  ActionResult r = SwapAgainst(timing_out);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_NE(ReasonOf(r.status), reason::kStaleFence);
  EXPECT_NE(r.status.message().find("plan-1.cp-1.swap.3"), std::string::npos) << r.status;
  StaleFenceAgent never_ran(ToGrpcStatus(MakeError(
      absl::StatusCode::kNotFound, reason::kOperationNotFound, "no operation")));
  EXPECT_EQ(ReasonOf(SwapAgainst(never_ran).status), reason::kStaleFence)
      << "only the node's own word that it never ran gives the slot back";
}

// Admits every swap, then ends every watch of it with `watch_end` at once,
// with no word of the operation.
class AdmittingAgent final : public v1::Agent::Service {
 public:
  explicit AdmittingAgent(grpc::Status watch_end) : watch_end_(std::move(watch_end)) {}
  grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest* request,
                    v1::Operation* operation) override {
    operation->set_operation_id(request->operation_id());
    operation->set_phase("Idle");
    return grpc::Status::OK;
  }
  grpc::Status WatchOperation(grpc::ServerContext*, const v1::GetOperationRequest*,
                              grpc::ServerWriter<v1::Operation>*) override {
    return watch_end_;
  }

 private:
  const grpc::Status watch_end_;
};

// Found in review: the refused watch came back as the swap's result, which
// the plan reads as "refused before anything ran", though the node runs it.
TEST(FleetActionsTest, AWatchRefusedAfterAdmissionLeavesTheOutcomeOpen) {
  // As an agent restarted with a member list that no longer names the
  // coordinator.
  AdmittingAgent agent(ToGrpcStatus(
      MakeError(absl::StatusCode::kPermissionDenied, reason::kVoterOnly, "cp-9 is not a voter")));
  const PlanAction swap = ActionOn(ActionKind::kSwap);
  ActionResult r = RunAgainst(agent, swap);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(ReasonOf(r.status), reason::kVoterOnly) << r.status;
  EXPECT_NE(r.status.message().find("plan-1.cp-1.swap.3"), std::string::npos) << r.status;
}

// Found in review: a node whose agent went down mid-swap was followed in
// silence until the coordinator's term ended; the plan showed no reason.
TEST(FleetActionsTest, ANodeThatStopsAnsweringAWatchIsReportedUnreachable) {
  // As a node whose agent went down just after the admission.
  AdmittingAgent agent(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"));
  const PlanAction swap = ActionOn(ActionKind::kSwap);
  // Ends the follow after 10 s, as a lost term would: before the fix it
  // came back NOT_LEADER then, having said nothing.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  ActionResult r = RunAgainst(agent, swap, {}, [until] {
    return std::chrono::steady_clock::now() < until;
  });
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(ReasonOf(r.status), reason::kAgentUnreachable) << r.status;
  EXPECT_NE(r.status.message().find("cannot follow plan-1.cp-1.swap.3"), std::string::npos)
      << r.status;
}

}  // namespace
}  // namespace kmsfleet
