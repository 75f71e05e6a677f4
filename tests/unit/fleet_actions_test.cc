// FleetActions against an in-process Agent service: the deadline each
// call is given, and how a refused swap is read.
#include "fleet_actions.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <limits>
#include <thread>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/v1/agent.grpc.pb.h"
#include "loopback_server.h"
#include "process_harness.h"
#include "silent_relay.h"
#include "watch_ending_agent.h"

namespace kmsfleet {
namespace {

using std::chrono::milliseconds;

// Answers Stage and Preflight at once, recording how long the caller gave
// the call; GetNodeState reports `bounds`.
class DeadlineRecorder final : public v1::Agent::Service {
 public:
  explicit DeadlineRecorder(v1::CallBounds bounds = {}) : bounds_(std::move(bounds)) {}
  grpc::Status GetNodeState(grpc::ServerContext*, const v1::GetNodeStateRequest*,
                            v1::NodeState* state) override {
    *state->mutable_call_bounds() = bounds_;
    return grpc::Status::OK;
  }
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

  const v1::CallBounds bounds_;
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

// Found in review: the refused watch came back as the swap's result, which
// the plan reads as "refused before anything ran", though the node runs it.
TEST(FleetActionsTest, AWatchRefusedAfterAdmissionLeavesTheOutcomeOpen) {
  // As an agent restarted with a member list that no longer names the
  // coordinator.
  WatchEndingAgent agent("", ToGrpcStatus(
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
  WatchEndingAgent agent("", grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"));
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

// A watch that brings word of the operation before it breaks is no
// silence: a long swap whose streams break now and then (every stream ends
// at its 5 s deadline) is followed on, not reported unreachable.
TEST(FleetActionsTest, WatchesThatBringWordAreNotSilence) {
  WatchEndingAgent agent("Verifying",
                         grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream reset"));
  const PlanAction swap = ActionOn(ActionKind::kSwap);
  // Five or more breaks (200 ms apart), then the term ends.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  ActionResult r = RunAgainst(agent, swap, {}, [until] {
    return std::chrono::steady_clock::now() < until;
  });
  EXPECT_EQ(ReasonOf(r.status), reason::kNotLeader) << r.status;
}

// Holds every Stage and RestartApiServer until the caller cancels it (or
// `answer_after` passes), as a node whose download or kube-apiserver
// restart is slow. Its GetNodeState reports call bounds unless `old`, as
// a kmsfleetd older than them (whose listener refuses frequent pings).
class SlowAgent final : public v1::Agent::Service {
 public:
  explicit SlowAgent(milliseconds answer_after = std::chrono::hours(1), bool old = false)
      : answer_after_(answer_after), old_(old) {}
  grpc::Status GetNodeState(grpc::ServerContext*, const v1::GetNodeStateRequest*,
                            v1::NodeState* state) override {
    if (!old_) state->mutable_call_bounds()->set_stage_ms(1);
    return grpc::Status::OK;
  }
  grpc::Status Stage(grpc::ServerContext* context, const v1::StageRequest*,
                     v1::StageResponse*) override {
    return Hold(*context);
  }
  grpc::Status RestartApiServer(grpc::ServerContext* context, const v1::RestartApiServerRequest*,
                                v1::RestartApiServerResponse*) override {
    return Hold(*context);
  }
  // Waits up to 10 s for a call to arrive (or to be cancelled).
  bool Entered() const { return WaitFor(entered_); }
  bool SawCancel() const { return WaitFor(saw_cancel_); }

 private:
  grpc::Status Hold(grpc::ServerContext& context) {
    entered_ = true;
    const auto until = std::chrono::steady_clock::now() + answer_after_;
    while (std::chrono::steady_clock::now() < until) {
      if (context.IsCancelled()) {
        saw_cancel_ = true;
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    return grpc::Status::OK;
  }
  static bool WaitFor(const std::atomic<bool>& flag) {
    return testing::WaitUntil([&] { return flag.load(); }, std::chrono::seconds(10));
  }

  const milliseconds answer_after_;
  const bool old_;
  std::atomic<bool> entered_{false};
  std::atomic<bool> saw_cancel_{false};
};

// FleetActions for cp-1 at 127.0.0.1:`port`, its stage timeout a minute.
std::unique_ptr<FleetActions> ActionsFor(int port, const PeerKeepalive& keepalive = {}) {
  return std::make_unique<FleetActions>(
      std::map<std::string, std::string>{{"cp-1", "127.0.0.1:" + std::to_string(port)}},
      grpc::InsecureChannelCredentials(), milliseconds(3000), milliseconds(16000),
      std::chrono::minutes(1), std::chrono::minutes(1), keepalive);
}

milliseconds Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t);
}

// Found in review: a Stage or a Preflight ran on to its deadline (minutes)
// after the term that sent it ended, while the next coordinator asked
// again; only the kube-apiserver restart was cancelled.
TEST(FleetActionsTest, AStageIsCancelledOnceTheTermThatSentItEnds) {
  SlowAgent agent;
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<FleetActions> actions = ActionsFor(port);
  std::atomic<bool> leading{true};
  std::thread depose([&] {
    agent.Entered();
    leading = false;
  });
  const auto began = std::chrono::steady_clock::now();
  ActionResult r = actions->Run(ActionOn(ActionKind::kStage), v1::Fence(), {}, "",
                                [&] { return leading.load(); });
  depose.join();
  EXPECT_LT(Since(began), milliseconds(15000)) << "the stage ran on to its deadline";
  EXPECT_FALSE(r.status.ok());
  // Before the server's shutdown, which would cancel the call anyway.
  EXPECT_TRUE(agent.SawCancel()) << "the node was not told the call ended";
  server->Shutdown(std::chrono::system_clock::now());
}

// Found in review: a node that went silent during its kube-apiserver
// restart (its host froze or dropped off the network, the connection
// neither closed nor answered) was waited for up to the call's two-hour
// deadline, and the plan said nothing.
TEST(FleetActionsTest, ANodeThatFallsSilentDuringARestartIsFoundByKeepalive) {
  SlowAgent agent;
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  ASSERT_NE(server, nullptr);
  SilentRelay relay(port);
  ASSERT_NE(relay.port(), 0);
  // A generous timeout: a ping must not be given up on a loaded machine
  // before the relay goes silent.
  std::unique_ptr<FleetActions> actions =
      ActionsFor(relay.port(), {.interval = milliseconds(200), .timeout = milliseconds(2000)});
  ASSERT_TRUE(actions->Observe("cp-1").ok());  // a node whose listener takes pings
  std::thread freeze([&] {
    agent.Entered();
    relay.Silence();
  });
  // The term lasts 40 s: before the fix, the call ended only then.
  const auto began = std::chrono::steady_clock::now();
  ActionResult r = actions->Run(ActionOn(ActionKind::kRestartApiServer), v1::Fence(), {}, "",
                                [&] { return Since(began) < std::chrono::seconds(40); });
  freeze.join();
  EXPECT_LT(Since(began), std::chrono::seconds(20));
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(ReasonOf(r.status), reason::kAgentUnreachable) << r.status;
  server->Shutdown(std::chrono::system_clock::now());
}

// A call to a member listener that waits without a byte either way,
// pinged 10 times a second for 4.5 s (at kmsfleetd's 10 s interval: a
// restart of 7 minutes): `serve` makes the listener.
ActionResult LongPingedRestart(SlowAgent& agent,
                               const std::function<void(grpc::ServerBuilder&)>& serve) {
  const PeerKeepalive keepalive{.interval = milliseconds(100), .timeout = milliseconds(5000)};
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port, serve);
  if (server == nullptr) return ActionResult{};
  std::unique_ptr<FleetActions> actions = ActionsFor(port, keepalive);
  EXPECT_TRUE(actions->Observe("cp-1").ok());
  ActionResult r = actions->Run(ActionOn(ActionKind::kRestartApiServer), v1::Fence(), {}, "",
                                [] { return true; });
  server->Shutdown(std::chrono::system_clock::now());
  return r;
}

// A member listener takes the pings: by default gRPC closes a connection
// pinged more often than every 5 minutes, failing the call it guards
// (here at the fifth ping, 4 s in; at kmsfleetd's 10 s interval, under a
// minute into a restart).
TEST(FleetActionsTest, KeepalivePingsDoNotCutALongCallToAMemberListener) {
  SlowAgent agent(milliseconds(4500));
  ActionResult r = LongPingedRestart(agent, [](grpc::ServerBuilder& builder) {
    AcceptPeerKeepalive(builder, {.interval = milliseconds(100)});
  });
  EXPECT_TRUE(r.status.ok()) << r.status;
}

// Found in review: a node still on a kmsfleetd older than the keepalive
// (its listener keeps gRPC's default ping policy) had every long call cut
// by GOAWAY too_many_pings while the fleet's agents were upgraded. Only a
// node that reports call bounds is pinged.
TEST(FleetActionsTest, ANodeOlderThanKeepaliveIsNotPinged) {
  SlowAgent old_agent(milliseconds(4500), /*old=*/true);
  ActionResult r = LongPingedRestart(old_agent, [](grpc::ServerBuilder&) {});
  EXPECT_TRUE(r.status.ok()) << r.status;
}

// Found in review: the coordinator gave every node's Preflight and Stage
// its own config's time, so a node configured for a slower doctor (or a
// larger download) than the coordinator was cut every time and asked
// again for ever.
TEST(FleetActionsTest, ANodesOwnBoundsGiveItsStageAndPreflightTheirTime) {
  v1::CallBounds bounds;
  bounds.set_stage_ms(Ms(std::chrono::minutes(20)));
  bounds.set_preflight_ms(Ms(std::chrono::minutes(10)));
  DeadlineRecorder agent(bounds);
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<FleetActions> actions = ActionsFor(port);  // a minute each
  ASSERT_TRUE(actions->Observe("cp-1").ok());
  auto leading = [] { return true; };
  EXPECT_TRUE(actions->Run(ActionOn(ActionKind::kPreflight), v1::Fence(), {}, "", leading)
                  .status.ok());
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::minutes(9)));
  EXPECT_LE(agent.given_ms(), Ms(std::chrono::minutes(10) + std::chrono::seconds(2)));
  EXPECT_TRUE(
      actions->Run(ActionOn(ActionKind::kStage), v1::Fence(), {}, "", leading).status.ok());
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::minutes(19)));
  server->Shutdown(std::chrono::system_clock::now());
}

// A node that reports less than the coordinator's own, or absurdly much,
// gets the coordinator's own or kMaxPeerCallBound.
TEST(FleetActionsTest, ANodesBoundsNeverShortenACallNorStretchItPastTheCap) {
  v1::CallBounds bounds;
  bounds.set_stage_ms(1);
  bounds.set_preflight_ms(std::numeric_limits<int64_t>::max());
  DeadlineRecorder agent(bounds);
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  ASSERT_NE(server, nullptr);
  std::unique_ptr<FleetActions> actions = ActionsFor(port);
  ASSERT_TRUE(actions->Observe("cp-1").ok());
  auto leading = [] { return true; };
  EXPECT_TRUE(
      actions->Run(ActionOn(ActionKind::kStage), v1::Fence(), {}, "", leading).status.ok());
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::seconds(55)));
  EXPECT_LE(agent.given_ms(), Ms(std::chrono::minutes(1) + std::chrono::seconds(2)));
  EXPECT_TRUE(actions->Run(ActionOn(ActionKind::kPreflight), v1::Fence(), {}, "", leading)
                  .status.ok());
  EXPECT_GT(agent.given_ms(), Ms(std::chrono::hours(3) - std::chrono::minutes(1)));
  // The wire rounds a long deadline up coarsely (3 h 1 min 40 s here).
  EXPECT_LE(agent.given_ms(), Ms(std::chrono::hours(3) + std::chrono::minutes(2)));
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kmsfleet
