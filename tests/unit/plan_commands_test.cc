// `kmsfleetctl plan commit` and the --fence flag: parsing, and keeping the
// coordinator's refusal (reason and where to go) intact.
#include "cli/leader_status.h"
#include "cli/plan_commands.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <fstream>
#include <functional>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "cli/fleet_commands.h"
#include "cli/usage_exit.h"
#include "loopback_server.h"

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/error.pb.h"
#include "kmsfleet/v1/fleet_mock.grpc.pb.h"

namespace kmsfleet {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Return;

// kmsfleetctl's `plan` and `plan commit`, built as its main builds them.
struct PlanCommandLine {
  CLI::App app{"kmsfleetctl"};
  PlanCommitFlags commit_flags;
  FleetFlags plan_flags;
  CLI::App* commit = AddPlanCommands(app, commit_flags);
  std::vector<CLI::App*> fleet = AddFleetCommands(app, plan_flags);

  // Parses `kmsfleetctl args...`: nullopt to go on, else the exit code.
  std::optional<int> Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "kmsfleetctl");
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    return ParseCommandLine(app, static_cast<int>(argv.size()), argv.data());
  }
  absl::Status Resolve() {
    return ResolvePlanCommitFlags(*commit->get_parent(), plan_flags, commit_flags);
  }
};

// Answers ProposePlan with `refusal`, or when it is OK with `fence`.
class FakeCoordinator final : public v1::Fleet::Service {
 public:
  FakeCoordinator(grpc::Status refusal, v1::Fence fence)
      : refusal_(std::move(refusal)), fence_(std::move(fence)) {}
  grpc::Status ProposePlan(grpc::ServerContext*, const v1::ProposePlanRequest*,
                           v1::ProposePlanReply* reply) override {
    if (!refusal_.ok()) return refusal_;
    *reply->mutable_fence() = fence_;
    return grpc::Status::OK;
  }

 private:
  grpc::Status refusal_;
  v1::Fence fence_;
};

struct CommitOutcome {
  int exit_code = -1;
  std::string out, err;
};

// Runs RunPlanCommit against `coordinator`, served in-process on loopback.
CommitOutcome CommitAgainst(FakeCoordinator& coordinator, PlanCommitFlags flags) {
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(coordinator, port);
  if (server == nullptr) return {};
  flags.agent = "127.0.0.1:" + std::to_string(port);
  flags.tls.insecure = true;
  CommitOutcome r;
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  r.exit_code = RunPlanCommit(flags);
  std::cout.flush();
  r.err = ::testing::internal::GetCapturedStderr();
  r.out = ::testing::internal::GetCapturedStdout();
  server->Shutdown(std::chrono::system_clock::now());
  return r;
}

PlanCommitFlags CommitFlags(const std::string& in_flight, const std::string& output = "table") {
  PlanCommitFlags flags;
  flags.in_flight = in_flight;
  flags.output = output;
  return flags;
}

v1::Fence Fence(uint64_t term, uint64_t index, const std::string& in_flight) {
  v1::Fence fence;
  fence.set_term(term);
  fence.set_index(index);
  fence.set_in_flight(in_flight);
  return fence;
}

TEST(ParseFenceTest, ReadsWhatPlanCommitPrints) {
  v1::Fence fence;
  fence.set_term(12);
  fence.set_index(40);
  fence.set_in_flight("cp-2");
  absl::StatusOr<v1::Fence> back = ParseFence(FormatFence(fence));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), fence.SerializeAsString());
  EXPECT_EQ(FormatFence(fence), "12/40/cp-2");
}

TEST(ParseFenceTest, BadValuesAreNamedWithTheFlag) {
  for (const char* bad : {"", "12", "12/40", "12/40/", "x/40/cp-1", "12/-1/cp-1",
                          "0/3/cp-1", "99999999999999999999/1/cp-1", "1//cp-1"}) {
    absl::StatusOr<v1::Fence> f = ParseFence(bad);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(f.status().message()),
                HasSubstr("--fence \"" + std::string(bad) + "\""));
  }
}

TEST(FleetChannelTest, TcpAgentWithoutTlsFlagsIsRefusedNamingTheMissingFlag) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> none = FleetChannel("127.0.0.1:7443", {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(ReasonOf(none.status()), reason::kInvalidConfig);
  EXPECT_EQ(MetadataOf(none.status(), "flag"), "--ca");
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("--ca is missing"));
  absl::StatusOr<std::shared_ptr<grpc::Channel>> no_key =
      FleetChannel("127.0.0.1:7443", {.ca = "/ca.pem", .cert = "/op.pem"});
  ASSERT_FALSE(no_key.ok());
  EXPECT_EQ(MetadataOf(no_key.status(), "flag"), "--key");
  // Plain TCP only when asked for by name.
  EXPECT_TRUE(FleetChannel("127.0.0.1:7443", {.insecure = true}).ok());
}

TEST(FleetChannelTest, UnreadableOrOversizedPemIsNamedWithItsFlag) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> missing =
      FleetChannel("127.0.0.1:7443",
                   {.ca = "/nonexistent/ca.pem", .cert = "/x.pem", .key = "/x.key"});
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("--ca /nonexistent/ca.pem: cannot be read"));

  std::string big = ::testing::TempDir() + "/big.pem";
  {
    std::ofstream out(big);
    out << std::string(65 << 10, 'A');
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> oversized =
      FleetChannel("127.0.0.1:7443", {.ca = big, .cert = big, .key = big});
  ASSERT_FALSE(oversized.ok());
  EXPECT_THAT(std::string(oversized.status().message()), HasSubstr("--ca " + big));
  EXPECT_THAT(std::string(oversized.status().message()), HasSubstr("not a PEM file"));

  // A unix socket needs no certificate at all.
  EXPECT_TRUE(FleetChannel("unix:/run/kmsfleet/agent.sock", {.ca = "/nonexistent"}).ok());
}

TEST(CommitPlanTest, ReturnsTheCommittedFence) {
  v1::MockFleetStub stub;
  v1::ProposePlanReply reply;
  reply.mutable_fence()->set_term(3);
  reply.mutable_fence()->set_index(5);
  reply.mutable_fence()->set_in_flight("cp-1");
  v1::ProposePlanRequest seen;
  EXPECT_CALL(stub, ProposePlan(_, _, _))
      .WillOnce([&](grpc::ClientContext*, const v1::ProposePlanRequest& request,
                    v1::ProposePlanReply* out) {
        seen = request;
        *out = reply;
        return grpc::Status::OK;
      });
  absl::StatusOr<v1::Fence> fence =
      CommitPlan(stub, "cp-1.sock", "cp-1", "plan", std::chrono::seconds(1));
  ASSERT_TRUE(fence.ok()) << fence.status();
  EXPECT_EQ(FormatFence(*fence), "3/5/cp-1");
  EXPECT_EQ(seen.in_flight(), "cp-1");
  EXPECT_EQ(seen.payload(), "plan");
}

TEST(CommitPlanTest, FollowerRefusalKeepsTheLeadersAddress) {
  v1::MockFleetStub stub;
  v1::ErrorInfo info;
  info.set_reason(reason::kNotLeader);
  (*info.mutable_metadata())["leader"] = "cp-3";
  (*info.mutable_metadata())["leader_address"] = "10.0.0.3:7443";
  EXPECT_CALL(stub, ProposePlan(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "ask cp-3",
                                    info.SerializeAsString())));
  absl::StatusOr<v1::Fence> fence =
      CommitPlan(stub, "cp-1.sock", "cp-1", "", std::chrono::seconds(1));
  ASSERT_FALSE(fence.ok());
  EXPECT_EQ(ReasonOf(fence.status()), reason::kNotLeader);
  EXPECT_EQ(MetadataOf(fence.status(), "leader_address"), "10.0.0.3:7443");
}

// Found in review: `leader` turned every refusal into AGENT_UNREACHABLE,
// so an operator whose certificate names no member saw "unreachable".
TEST(QueryLeaderTest, AnAgentsRefusalKeepsItsReasonAndOnlySilenceIsUnreachable) {
  v1::MockFleetStub stub;
  v1::ErrorInfo info;
  info.set_reason(reason::kUnknownCaller);
  EXPECT_CALL(stub, GetLeader(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "who are you",
                                    info.SerializeAsString())))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused")));
  LeaderRow refused = QueryLeader(stub, "cp-1:7443", std::chrono::seconds(1));
  ASSERT_FALSE(refused.view.ok());
  EXPECT_EQ(ReasonOf(refused.view.status()), reason::kUnknownCaller);
  LeaderRow silent = QueryLeader(stub, "cp-2:7443", std::chrono::seconds(1));
  ASSERT_FALSE(silent.view.ok());
  EXPECT_EQ(ReasonOf(silent.view.status()), reason::kAgentUnreachable);
  EXPECT_THAT(std::string(silent.view.status().message()), HasSubstr("cp-2:7443"));
}

// Found in review: every error without a reason code read as
// AGENT_UNREACHABLE (exit 3, "ask again"), an answer such as UNIMPLEMENTED
// (the agent does not serve the call) or INTERNAL too.
TEST(FromAgentCallTest, OnlySilenceIsUnreachable) {
  // CANCELLED: kmsfleetctl never cancels its calls, so the agent's
  // shutdown (after its grace period) or the transport did.
  for (grpc::StatusCode silent : {grpc::StatusCode::UNAVAILABLE,
                                  grpc::StatusCode::DEADLINE_EXCEEDED,
                                  grpc::StatusCode::CANCELLED}) {
    absl::Status s = FromAgentCall(grpc::Status(silent, "no answer"), "cp-1:7443");
    EXPECT_EQ(ReasonOf(s), reason::kAgentUnreachable) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("cp-1:7443"));
  }
  for (grpc::StatusCode answered : {grpc::StatusCode::UNIMPLEMENTED,
                                    grpc::StatusCode::INTERNAL,
                                    grpc::StatusCode::RESOURCE_EXHAUSTED}) {
    absl::Status s = FromAgentCall(grpc::Status(answered, "said so"), "cp-1:7443");
    EXPECT_EQ(ReasonOf(s), reason::kAgentCallFailed) << s;
    EXPECT_EQ(static_cast<int>(s.code()), static_cast<int>(answered));
    EXPECT_THAT(std::string(s.message()), HasSubstr("said so"));
  }
}

// Found in review: details that parse as an ErrorInfo but carry no reason
// (a proxy's google.rpc.Status) were taken for the agent's refusal: the
// operator saw [ERROR], exit 1, for what was silence or an error answer.
TEST(FromAgentCallTest, DetailsWithoutAReasonAreNoRefusal) {
  v1::ErrorInfo no_reason;
  (*no_reason.mutable_metadata())["via"] = "proxy";
  absl::Status silent = FromAgentCall(
      grpc::Status(grpc::StatusCode::UNAVAILABLE, "upstream gone", no_reason.SerializeAsString()),
      "cp-1:7443");
  EXPECT_EQ(ReasonOf(silent), reason::kAgentUnreachable) << silent;
  EXPECT_FALSE(AgentAnswered(silent));
  v1::ErrorInfo refusal;
  refusal.set_reason(reason::kPlanActive);
  absl::Status refused = FromAgentCall(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "a plan runs", refusal.SerializeAsString()),
      "cp-1:7443");
  EXPECT_EQ(ReasonOf(refused), reason::kPlanActive) << refused;
  EXPECT_TRUE(AgentAnswered(refused));
}

TEST(CommitPlanTest, UnreachableAgentIsNamed) {
  v1::MockFleetStub stub;
  EXPECT_CALL(stub, ProposePlan(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed")));
  absl::StatusOr<v1::Fence> fence =
      CommitPlan(stub, "unix:/run/x.sock", "cp-1", "", std::chrono::seconds(1));
  ASSERT_FALSE(fence.ok());
  EXPECT_EQ(ReasonOf(fence.status()), reason::kAgentUnreachable);
  EXPECT_THAT(std::string(fence.status().message()), HasSubstr("unix:/run/x.sock"));
}

TEST(NoElectionFenceCheckTest, StandaloneAdmitsUnfencedAndRefusesFencedCommands) {
  FenceCheck check = NoElectionFenceCheck("cp-1", /*standalone=*/true);
  EXPECT_TRUE(check(std::nullopt).ok());
  v1::Fence fence;
  fence.set_term(4);
  fence.set_index(9);
  fence.set_in_flight("cp-1");
  absl::Status s = check(fence);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kNoElection);
  EXPECT_THAT(std::string(s.message()), HasSubstr("node cp-1 runs no election"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("4/9"));
}

TEST(NoElectionFenceCheckTest, NodeNotDeclaredStandaloneRefusesUnfencedCommands) {
  FenceCheck check = NoElectionFenceCheck("cp-1", /*standalone=*/false);
  absl::Status s = check(std::nullopt);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kStandaloneNotConfigured);
  EXPECT_THAT(std::string(s.message()), HasSubstr("standalone: true"));
  v1::Fence fence;
  fence.set_term(4);
  EXPECT_EQ(ReasonOf(check(fence)), reason::kNoElection);
}

// Found in review: `plan --agent X commit` committed through the default
// unix socket: --agent and the TLS flags before `commit` are `plan`'s,
// and `commit` read only its own.
TEST(PlanCommitFlagsTest, FlagsBeforeCommitReachTheCommit) {
  PlanCommandLine line;
  ASSERT_FALSE(line.Parse({"plan", "--agent", "10.0.0.1:7443", "--ca", "/ca.pem", "--cert",
                           "/op.pem", "--key", "/op.key", "--server-name", "cp-1", "-o", "json",
                           "commit", "--in-flight", "cp-2"})
                   .has_value());
  ASSERT_TRUE(line.commit->parsed());
  ASSERT_TRUE(line.Resolve().ok());
  EXPECT_EQ(line.commit_flags.agent, "10.0.0.1:7443");
  EXPECT_EQ(line.commit_flags.tls.ca, "/ca.pem");
  EXPECT_EQ(line.commit_flags.tls.cert, "/op.pem");
  EXPECT_EQ(line.commit_flags.tls.key, "/op.key");
  EXPECT_EQ(line.commit_flags.tls.server_name, "cp-1");
  EXPECT_EQ(line.commit_flags.output, "json");
  EXPECT_EQ(line.commit_flags.in_flight, "cp-2");
}

TEST(PlanCommitFlagsTest, FlagsAfterCommitStillWorkAndBothSidesMustAgree) {
  PlanCommandLine after;
  ASSERT_FALSE(after
                   .Parse({"plan", "commit", "--in-flight", "cp-2", "--agent", "10.0.0.1:7443",
                           "--insecure"})
                   .has_value());
  ASSERT_TRUE(after.Resolve().ok());
  EXPECT_EQ(after.commit_flags.agent, "10.0.0.1:7443");
  EXPECT_TRUE(after.commit_flags.tls.insecure);

  PlanCommandLine same;
  ASSERT_FALSE(same.Parse({"plan", "--agent", "unix:/a.sock", "commit", "--agent",
                           "unix:/a.sock", "--in-flight", ""})
                   .has_value());
  EXPECT_TRUE(same.Resolve().ok());
  EXPECT_EQ(same.commit_flags.agent, "unix:/a.sock");

  PlanCommandLine both;
  ASSERT_FALSE(both.Parse({"plan", "--agent", "unix:/a.sock", "commit", "--agent",
                           "unix:/b.sock", "--in-flight", "cp-1"})
                   .has_value());
  absl::Status s = both.Resolve();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(ReasonOf(s), reason::kInvalidConfig);
  EXPECT_EQ(MetadataOf(s, "flag"), "--agent");
  EXPECT_THAT(std::string(s.message()), HasSubstr("unix:/a.sock"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("unix:/b.sock"));
}

TEST(PlanCommitFlagsTest, OutputIsTableOrJson) {
  PlanCommandLine json;
  ASSERT_FALSE(
      json.Parse({"plan", "commit", "--in-flight", "cp-1", "--output", "json"}).has_value());
  EXPECT_EQ(json.commit_flags.output, "json");
  PlanCommandLine bad;
  EXPECT_EQ(bad.Parse({"plan", "commit", "--in-flight", "cp-1", "-o", "yaml"}).value_or(0), 2);
}

TEST(PlanCommitFlagsTest, PlanAndCommitHelpShowAnExample) {
  PlanCommandLine line;
  EXPECT_THAT(line.commit->get_parent()->help(), HasSubstr("Example:\n    kmsfleetctl plan "));
  EXPECT_THAT(line.commit->help(), HasSubstr("Example"));
  EXPECT_THAT(line.commit->help(), HasSubstr("\n  kmsfleetctl plan commit --in-flight "));
}

// Found in review: the channel error had no reason code, and the agent's
// message and fence went to the terminal unescaped.
TEST(RunPlanCommitTest, AnUnusableAgentAddressIsAUsageErrorWithItsReason) {
  PlanCommitFlags flags;
  flags.agent = "127.0.0.1:7443";  // TCP without --ca, --cert, --key
  ::testing::internal::CaptureStderr();
  const int code = RunPlanCommit(flags);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 2);
  EXPECT_THAT(err, HasSubstr("[INVALID_CONFIG]"));
  EXPECT_THAT(err, HasSubstr("--ca is missing"));
}

TEST(RunPlanCommitTest, TheAgentsRefusalIsEscapedAndCarriesItsReasonOnce) {
  v1::ErrorInfo info;
  info.set_reason(reason::kHandoffPending);
  FakeCoordinator coordinator(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                   "cp-2\x1b]52;c;ZXZpbA==\x07 has not handed off", info.SerializeAsString()),
      v1::Fence());
  CommitOutcome r = CommitAgainst(coordinator, CommitFlags("cp-3"));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr(": [HANDOFF_PENDING] cp-2\\x1B]52;c;ZXZpbA==\\x07 has not"));
  EXPECT_THAT(r.err, Not(HasSubstr("\x1b")));
  EXPECT_EQ(r.out, "");
}

// Found in review: `plan commit` exited 1, "refused", for
// PLAN_CHANGE_PENDING (proposed, may still commit), for a leader transfer
// and an election under way (ask again), and 3, "ask again", for an answer
// past its deadline (the record may have been committed): the fleet
// commands' codes are 4, 3, 3 and 4.
TEST(RunPlanCommitTest, ExitCodesAreTheFleetCommands) {
  auto refusal = [](grpc::StatusCode code, const char* why) {
    v1::ErrorInfo info;
    info.set_reason(why);
    return grpc::Status(code, "said so", info.SerializeAsString());
  };
  const std::vector<std::pair<grpc::Status, int>> cases = {
      {refusal(grpc::StatusCode::UNAVAILABLE, reason::kPlanChangePending), 4},
      {refusal(grpc::StatusCode::UNAVAILABLE, reason::kLeaderTransferInProgress), 3},
      {refusal(grpc::StatusCode::UNAVAILABLE, reason::kNotLeader), 3},  // names no leader
      {grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"), 4},
      {refusal(grpc::StatusCode::FAILED_PRECONDITION, reason::kPlanActive), 1}};
  for (const auto& [answer, want] : cases) {
    FakeCoordinator coordinator(answer, v1::Fence());
    CommitOutcome r = CommitAgainst(coordinator, CommitFlags("cp-3"));
    EXPECT_EQ(r.exit_code, want) << r.err;
    EXPECT_EQ(r.err.find("it may have been committed") != std::string::npos, want == 4) << r.err;
  }
}

TEST(RunPlanCommitTest, TheCommittedFenceIsEscapedAndJsonOnRequest) {
  FakeCoordinator coordinator(grpc::Status::OK, Fence(3, 7, "cp-2\x1b[2J"));
  CommitOutcome text = CommitAgainst(coordinator, CommitFlags("cp-2"));
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out, "3/7/cp-2\\x1B[2J\n");
  EXPECT_THAT(text.err, Not(HasSubstr("\x1b")));

  FakeCoordinator plain(grpc::Status::OK, Fence(3, 7, "cp-2"));
  CommitOutcome json =
      CommitAgainst(plain, CommitFlags("cp-2", "json"));
  EXPECT_EQ(json.exit_code, 0) << json.err;
  boost::json::object o = boost::json::parse(json.out).as_object();
  EXPECT_EQ(o.at("fence").as_string(), "3/7/cp-2");
  EXPECT_EQ(o.at("term").to_number<uint64_t>(), 3u);
  EXPECT_EQ(o.at("index").to_number<uint64_t>(), 7u);
  EXPECT_EQ(o.at("in_flight").as_string(), "cp-2");
  EXPECT_THAT(std::string(o.at("agent").as_string()), HasSubstr("127.0.0.1:"));
}

// Answers StartUpgrade and CommandPlan with `refusal`.
class FakeCoordinatorRefusing final : public v1::Fleet::Service {
 public:
  explicit FakeCoordinatorRefusing(grpc::Status refusal) : refusal_(std::move(refusal)) {}
  grpc::Status StartUpgrade(grpc::ServerContext*, const v1::UpgradeRequest*,
                            v1::PlanView*) override {
    return refusal_;
  }
  grpc::Status CommandPlan(grpc::ServerContext*, const v1::PlanCommandRequest*,
                           v1::PlanView*) override {
    return refusal_;
  }

 private:
  grpc::Status refusal_;
};

// `kmsfleetctl COMMAND ARGS... --agent (coordinator) --insecure`, with
// `tweak` applied to the parsed flags.
CommitOutcome RunFleetAgainst(v1::Fleet::Service& coordinator, std::vector<std::string> args,
                              const std::function<void(FleetFlags&)>& tweak = {}) {
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(coordinator, port);
  if (server == nullptr) return {};
  PlanCommandLine line;
  const std::string command = args.front();
  for (const std::string& a : {std::string("--agent"), "127.0.0.1:" + std::to_string(port),
                               std::string("--insecure")}) {
    args.push_back(a);
  }
  CommitOutcome r;
  if (std::optional<int> exit = line.Parse(args)) {
    ADD_FAILURE() << "usage exit " << *exit;
    return r;
  }
  if (tweak) tweak(line.plan_flags);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  r.exit_code = RunFleetCommand(*line.app.get_subcommand(command), line.plan_flags);
  std::cout.flush();
  r.err = ::testing::internal::GetCapturedStderr();
  r.out = ::testing::internal::GetCapturedStdout();
  server->Shutdown(std::chrono::system_clock::now());
  return r;
}

// `kmsfleetctl upgrade ARGS... --agent (coordinator) --insecure`.
CommitOutcome RunUpgradeAgainst(v1::Fleet::Service& coordinator, std::vector<std::string> args) {
  args.insert(args.begin(), "upgrade");
  return RunFleetAgainst(coordinator, args);
}

// `kmsfleetctl upgrade --to 0.2.0 ... extra` against `coordinator`.
CommitOutcome UpgradeAgainst(FakeCoordinatorRefusing& coordinator,
                             std::vector<std::string> extra) {
  std::vector<std::string> args = {"--to", "0.2.0", "--remote-paths", "--artifact", "/srv/a",
                                   "--checksums", "/srv/c"};
  args.insert(args.end(), extra.begin(), extra.end());
  return RunUpgradeAgainst(coordinator, args);
}

// The issue: "a target equal to every node's running version is a no-op
// that says so". It said so, but exited 1 as a refusal: a script asking
// for the version the fleet already runs failed.
TEST(RunUpgradeTest, AFleetAlreadyOnTheTargetIsANoOpThatSaysSoAndExitsZero) {
  v1::ErrorInfo info;
  info.set_reason(reason::kAlreadyAtTarget);
  const grpc::Status at_target(grpc::StatusCode::FAILED_PRECONDITION,
                               "Every node already runs 0.2.0.", info.SerializeAsString());
  FakeCoordinatorRefusing coordinator(at_target);
  CommitOutcome text = UpgradeAgainst(coordinator, {});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out, "nothing to do: [ALREADY_AT_TARGET] Every node already runs 0.2.0.\n");
  CommitOutcome json = UpgradeAgainst(coordinator, {"--output", "json"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  boost::json::object o = boost::json::parse(json.out).as_object();
  EXPECT_TRUE(o.at("nothing_to_do").as_bool());
  EXPECT_EQ(o.at("reason").as_string(), "ALREADY_AT_TARGET");

  // Any other refusal still fails.
  info.set_reason(reason::kVersionNotHigher);
  FakeCoordinatorRefusing lower(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                            "0.1.0 is not higher", info.SerializeAsString()));
  CommitOutcome refused = UpgradeAgainst(lower, {});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("[VERSION_NOT_HIGHER]"));
}

// Answers a dry run with `guard`'s `verdict` (OK: work to do; the version
// policy unless named) and counts what else it is asked; refuses every
// upload.
class DryRunCoordinator final : public v1::Fleet::Service {
 public:
  explicit DryRunCoordinator(absl::Status verdict, std::string guard = "version policy")
      : verdict_(std::move(verdict)), guard_(std::move(guard)) {}
  grpc::Status StartUpgrade(grpc::ServerContext*, const v1::UpgradeRequest* request,
                            v1::PlanView* view) override {
    if (!request->dry_run()) {
      ++starts_;
      parity_observations_ = request->settings().parity_observations();
      return grpc::Status(grpc::StatusCode::INTERNAL, "not expected here");
    }
    ++dry_runs_;
    for (const char* guard : {"active plan", "settings", "node order", "fleet health",
                              "version policy", "compatibility", "parity", "openbao"}) {
      v1::GuardResult* g = view->add_dry_run();
      g->set_guard(guard);
      if (guard != guard_) continue;
      g->set_reason(ReasonOf(verdict_));
      g->set_message(std::string(verdict_.message()));
    }
    return grpc::Status::OK;
  }
  grpc::Status UploadArtifact(grpc::ServerContext*, grpc::ServerReader<v1::ArtifactChunk>*,
                              v1::ArtifactRef*) override {
    ++uploads_;
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "no room for uploads");
  }
  int dry_runs() const { return dry_runs_; }
  int starts() const { return starts_; }
  int uploads() const { return uploads_; }
  int parity_observations() const { return parity_observations_; }

 private:
  absl::Status verdict_;
  std::string guard_;
  std::atomic<int> dry_runs_{0}, starts_{0}, uploads_{0}, parity_observations_{-1};
};

// Found in review: `upgrade` with release files on this machine hashed and
// uploaded them before the coordinator said the fleet already ran the
// target. It asks a dry run first, and uploads only when there is work.
TEST(RunUpgradeTest, ReleaseFilesAreUploadedOnlyWhenTheFleetNeedsThem) {
  const std::string dir = ::testing::TempDir();
  const std::string artifact = dir + "/bao-kms-provider_0.2.0_linux_amd64";
  const std::string checksums = dir + "/checksums.txt";
  std::ofstream(artifact) << "binary";
  std::ofstream(checksums) << std::string(64, 'a') << "  bao-kms-provider_0.2.0_linux_amd64\n";
  const std::vector<std::string> args = {"--to", "0.2.0", "--artifact", artifact,
                                         "--checksums", checksums};

  DryRunCoordinator at_target(MakeError(absl::StatusCode::kFailedPrecondition,
                                        reason::kAlreadyAtTarget,
                                        "Every node already runs 0.2.0."));
  CommitOutcome noop = RunUpgradeAgainst(at_target, args);
  EXPECT_EQ(noop.exit_code, 0) << noop.err;
  EXPECT_EQ(noop.out, "nothing to do: [ALREADY_AT_TARGET] Every node already runs 0.2.0.\n");
  EXPECT_EQ(at_target.dry_runs(), 1);
  EXPECT_EQ(at_target.uploads(), 0);
  EXPECT_EQ(at_target.starts(), 0);

  DryRunCoordinator work(absl::OkStatus());
  CommitOutcome upload = RunUpgradeAgainst(work, args);
  EXPECT_EQ(work.dry_runs(), 1);
  EXPECT_EQ(work.uploads(), 1);
  EXPECT_NE(upload.exit_code, 0);
  EXPECT_THAT(upload.err, HasSubstr("upload of --artifact " + artifact + ": agent "));
  EXPECT_THAT(upload.err, HasSubstr("no room for uploads"));
  EXPECT_EQ(work.starts(), 0);

  // A guard the start checks too refuses: the start would refuse the same
  // way after the upload. Found in review: a version not higher was told
  // only after the release's upload.
  DryRunCoordinator lower(MakeError(absl::StatusCode::kFailedPrecondition,
                                    reason::kVersionNotHigher,
                                    "0.2.0 is not higher than node-a's 0.3.0."));
  CommitOutcome refused = RunUpgradeAgainst(lower, args);
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("[VERSION_NOT_HIGHER] 0.2.0 is not higher than node-a's "
                                     "0.3.0."));
  EXPECT_THAT(refused.err, HasSubstr("no release file was sent"));
  EXPECT_EQ(lower.uploads(), 0);
  EXPECT_EQ(lower.starts(), 0);

  // OpenBao sealed refuses the start itself (found by the requirements
  // audit): refused before the upload.
  DryRunCoordinator sealed(MakeError(absl::StatusCode::kFailedPrecondition,
                                     reason::kOpenBaoSealed, "OpenBao at x is sealed."),
                           "openbao");
  EXPECT_EQ(RunUpgradeAgainst(sealed, args).exit_code, 1);
  EXPECT_EQ(sealed.uploads(), 0);
  EXPECT_EQ(sealed.starts(), 0);

  // A gate a committed plan waits on does not refuse the start: upload.
  DryRunCoordinator held(MakeError(absl::StatusCode::kFailedPrecondition,
                                   reason::kParityNotStable, "1 of 3 observations agree."),
                         "parity");
  RunUpgradeAgainst(held, args);
  EXPECT_EQ(held.uploads(), 1);

  // Nothing to upload: no dry run first, the start answers.
  DryRunCoordinator remote(absl::OkStatus());
  RunUpgradeAgainst(remote, {"--to", "0.2.0", "--remote-paths", "--artifact", artifact,
                             "--checksums", checksums});
  EXPECT_EQ(remote.dry_runs(), 0);
  EXPECT_EQ(remote.starts(), 1);
  EXPECT_EQ(remote.parity_observations(), 0) << "the plan's default";
}

// Found by the requirements audit: the plan's parity streak ("stable over
// N consecutive observations (default 3)") had a setting no command set.
TEST(RunUpgradeTest, ParityObservationsReachThePlansSettings) {
  const std::string dir = ::testing::TempDir();
  DryRunCoordinator remote(absl::OkStatus());
  RunUpgradeAgainst(remote, {"--to", "0.2.0", "--remote-paths", "--artifact", dir + "/a",
                             "--checksums", dir + "/c", "--parity-observations", "5"});
  EXPECT_EQ(remote.starts(), 1);
  EXPECT_EQ(remote.parity_observations(), 5);

  // Out of 1-100: a usage error naming the flag, before any call.
  for (const char* bad : {"0", "101"}) {
    PlanCommandLine line;
    ::testing::internal::CaptureStderr();
    const std::optional<int> exit =
        line.Parse({"upgrade", "--to", "0.2.0", "--artifact", "a", "--checksums", "c",
                    "--parity-observations", bad});
    const std::string err = ::testing::internal::GetCapturedStderr();
    EXPECT_EQ(exit, kUsageExitCode) << bad;
    EXPECT_THAT(err, HasSubstr("--parity-observations")) << bad;
  }
}

grpc::Status Refusal(grpc::StatusCode code, const std::string& why, const std::string& message) {
  v1::ErrorInfo info;
  info.set_reason(why);
  return grpc::Status(code, message, info.SerializeAsString());
}

// Found in review: a command that changes the plan and got no answer (the
// agent cut the call at its shutdown), or that the coordinator said may
// still commit, exited 3 ("ask again") or 1 ("refused, nothing changed"):
// a second upgrade was then refused by the first, which the runbook says
// to abort.
TEST(FleetCommandExitTest, ACommandThatMayHaveTakenEffectExitsFour) {
  const grpc::Status cut(grpc::StatusCode::CANCELLED, "the agent is shutting down");
  // As the client library ends a call past its deadline.
  const grpc::Status late(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
  const grpc::Status pending = Refusal(grpc::StatusCode::UNAVAILABLE, reason::kPlanChangePending,
                                       "the change was proposed but not yet committed");
  for (const grpc::Status& answer : {cut, late, pending}) {
    FakeCoordinatorRefusing upgrade(answer);
    CommitOutcome r = UpgradeAgainst(upgrade, {});
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_THAT(r.err, HasSubstr("it may have taken effect: see kmsfleetctl plan before running "
                                 "it again"));
    FakeCoordinatorRefusing resume(answer);
    CommitOutcome c = RunFleetAgainst(resume, {"resume"});
    EXPECT_EQ(c.exit_code, 4) << c.err;
  }
  // A dry run changes nothing: its lost answer is only "ask again".
  FakeCoordinatorRefusing dry(cut);
  CommitOutcome d = UpgradeAgainst(dry, {"--dry-run"});
  EXPECT_EQ(d.exit_code, 3) << d.err;
  EXPECT_THAT(d.err, Not(HasSubstr("may have taken effect")));
}

// Found in review: the coordinator's own INVALID_CONFIG (a cluster run
// without TLS serves no fleet plans) exited 2, which tells the operator
// their flags or files are wrong.
TEST(FleetCommandExitTest, AnAgentsConfigRefusalIsNoUsageError) {
  FakeCoordinatorRefusing insecure(Refusal(grpc::StatusCode::FAILED_PRECONDITION,
                                           reason::kInvalidConfig,
                                           "this cluster runs without TLS"));
  CommitOutcome r = UpgradeAgainst(insecure, {});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[INVALID_CONFIG] this cluster runs without TLS"));
}

TEST(FleetCommandExitTest, NoCoordinatorYetIsAskAgain) {
  for (const grpc::Status& answer :
       {Refusal(grpc::StatusCode::UNAVAILABLE, reason::kNotLeader, "no leader is known yet"),
        Refusal(grpc::StatusCode::UNAVAILABLE, reason::kLeaderTransferInProgress,
                "the coordinator is handing over")}) {
    FakeCoordinatorRefusing pause(answer);
    CommitOutcome r = RunFleetAgainst(pause, {"pause"});
    EXPECT_EQ(r.exit_code, 3) << r.err;
  }
  // A coordinator that is named but not followed (no TLS flags): go there.
  v1::ErrorInfo info;
  info.set_reason(reason::kNotLeader);
  (*info.mutable_metadata())["leader"] = "cp-2";
  (*info.mutable_metadata())["leader_address"] = "10.0.0.2:7443";
  FakeCoordinatorRefusing named(grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader",
                                            info.SerializeAsString()));
  CommitOutcome r = RunFleetAgainst(named, {"pause"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the coordinator is cp-2 (10.0.0.2:7443)"));
}

// Sends one view of a Rolling plan, then nothing, never ending the stream:
// a connection that died without a word.
class SilentWatchCoordinator final : public v1::Fleet::Service {
 public:
  grpc::Status WatchPlan(grpc::ServerContext* context, const v1::GetPlanRequest*,
                         grpc::ServerWriter<v1::PlanView>* writer) override {
    v1::PlanView view;
    view.mutable_plan()->set_plan_id("plan-1");
    view.mutable_plan()->set_phase(v1::PLAN_PHASE_ROLLING);
    writer->Write(view);
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return grpc::Status::OK;
  }
};

// Found in review: a watch through a TCP agent whose host lost power never
// ended; the agent sends a view every second, so silence means a dead link.
TEST(FleetCommandExitTest, AWatchWhoseStreamFallsSilentEndsAskAgain) {
  SilentWatchCoordinator silent;
  const auto start = std::chrono::steady_clock::now();
  CommitOutcome r = RunFleetAgainst(silent, {"watch"}, [](FleetFlags& f) {
    f.watch_silence = std::chrono::milliseconds(300);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no view for 300 ms"));
  EXPECT_THAT(r.err, HasSubstr("watch again"));
}

// Takes a resume, then ends the watch's stream at once, as an agent that
// shuts down does.
class ShuttingDownWatchCoordinator final : public v1::Fleet::Service {
 public:
  grpc::Status CommandPlan(grpc::ServerContext*, const v1::PlanCommandRequest*,
                           v1::PlanView* view) override {
    view->mutable_plan()->set_plan_id("plan-1");
    view->mutable_plan()->set_phase(v1::PLAN_PHASE_ROLLING);
    return grpc::Status::OK;
  }
  grpc::Status WatchPlan(grpc::ServerContext*, const v1::GetPlanRequest*,
                         grpc::ServerWriter<v1::PlanView>*) override {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the agent is shutting down");
  }
};

// Found in review: `resume --watch` whose watch lost its agent after the
// resume was taken exited 3, "run it again"; a second resume could retry a
// node once more. A bare `watch` changed nothing: 3 stays right for it.
TEST(FleetCommandExitTest, AWatchLostAfterATakenCommandIsNotAskAgain) {
  ShuttingDownWatchCoordinator coordinator;
  CommitOutcome r = RunFleetAgainst(coordinator, {"resume", "--watch"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the command itself was taken: see kmsfleetctl plan before "
                               "running it again"));
  CommitOutcome w = RunFleetAgainst(coordinator, {"watch"});
  EXPECT_EQ(w.exit_code, 3) << w.err;
  EXPECT_THAT(w.err, Not(HasSubstr("the command itself was taken")));
}

v1::PlanView ViewAt(uint64_t revision, v1::PlanPhase phase) {
  v1::PlanView view;
  view.mutable_plan()->set_plan_id("plan-1");
  view.mutable_plan()->set_revision(revision);
  view.mutable_plan()->set_phase(phase);
  return view;
}

// Takes the rollback (or an upgrade) at revision 5; its watch first relays
// a follower's older view (revision 3, Completed), then the plan as it is
// (Halted).
class StaleViewCoordinator final : public v1::Fleet::Service {
 public:
  grpc::Status StartUpgrade(grpc::ServerContext*, const v1::UpgradeRequest*,
                            v1::PlanView* view) override {
    *view = ViewAt(5, v1::PLAN_PHASE_ROLLING);
    return grpc::Status::OK;
  }
  grpc::Status CommandPlan(grpc::ServerContext*, const v1::PlanCommandRequest*,
                           v1::PlanView* view) override {
    *view = ViewAt(5, v1::PLAN_PHASE_ROLLING_BACK);
    return grpc::Status::OK;
  }
  grpc::Status WatchPlan(grpc::ServerContext*, const v1::GetPlanRequest*,
                         grpc::ServerWriter<v1::PlanView>* writer) override {
    writer->Write(ViewAt(3, v1::PLAN_PHASE_COMPLETED));
    writer->Write(ViewAt(6, v1::PLAN_PHASE_HALTED));
    return grpc::Status::OK;
  }
};

// Found in review: `rollback --watch` ended on any view of the plan, so a
// relayed view older than the rollback (still Completed) exited 0,
// "rolled back", before the walk back had begun.
TEST(FleetCommandExitTest, AWatchAfterACommandSkipsViewsOlderThanItsAnswer) {
  StaleViewCoordinator coordinator;
  CommitOutcome r = RunFleetAgainst(coordinator, {"rollback", "--watch"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out, Not(HasSubstr("Completed")));
  EXPECT_THAT(r.out, HasSubstr("Halted"));
}

// Found by the requirements audit: `--watch -o json` printed each view as
// a multi-line object, back to back, which no line-reading consumer can
// split. The command's answer and each view are one object per line.
TEST(FleetCommandExitTest, AWatchInJsonPrintsOneObjectPerLine) {
  StaleViewCoordinator coordinator;
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"rollback"},
        std::vector<std::string>{"upgrade", "--to", "0.2.0", "--remote-paths", "--artifact",
                                 "/srv/a", "--checksums", "/srv/c"}}) {
    std::vector<std::string> args = command;
    args.insert(args.end(), {"--watch", "-o", "json"});
    CommitOutcome r = RunFleetAgainst(coordinator, args);
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
    ASSERT_EQ(lines.size(), 2u) << command[0] << ": " << r.out;  // the answer, then Halted
    for (const std::string& line : lines) {
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(line, ec);
      ASSERT_FALSE(ec) << line;
      EXPECT_TRUE(v.is_object()) << line;
    }
    EXPECT_EQ(boost::json::parse(lines[1]).at("plan").at("phase").as_string(),
              "PLAN_PHASE_HALTED");
  }
}

// A dry run with work to do; every upload is stored, but the answer names
// a digest other than the file's.
class LyingUploadCoordinator final : public v1::Fleet::Service {
 public:
  grpc::Status StartUpgrade(grpc::ServerContext*, const v1::UpgradeRequest* request,
                            v1::PlanView* view) override {
    if (!request->dry_run()) return grpc::Status(grpc::StatusCode::INTERNAL, "not expected");
    view->add_dry_run()->set_guard("version policy");
    return grpc::Status::OK;
  }
  grpc::Status UploadArtifact(grpc::ServerContext*, grpc::ServerReader<v1::ArtifactChunk>* reader,
                              v1::ArtifactRef* ref) override {
    v1::ArtifactChunk chunk;
    std::string data;
    while (reader->Read(&chunk)) data += chunk.data();
    ref->set_size(data.size());
    // Echoes the right digest when only the source lies.
    ref->set_sha256(only_the_source_lies ? Sha256Hex(data) : std::string(64, '0'));
    ref->set_node("cp-1");
    ref->set_source("coordinator://cp-1/" + std::string(64, '0') + "/file");
    return grpc::Status::OK;
  }
  bool only_the_source_lies = false;
};

// Found in review: `upgrade` through a follower's socket hashed and read
// every release file before the follower said NOT_LEADER; a file missing
// here was reported as a usage error (exit 2), hiding where to run it.
TEST(RunUpgradeTest, AFollowersAnswerComesBeforeAnyReleaseFileIsRead) {
  v1::ErrorInfo info;
  info.set_reason(reason::kNotLeader);
  (*info.mutable_metadata())["leader"] = "cp-2";
  (*info.mutable_metadata())["leader_address"] = "10.0.0.2:7443";
  FakeCoordinatorRefusing follower(grpc::Status(grpc::StatusCode::UNAVAILABLE, "not the leader",
                                               info.SerializeAsString()));
  CommitOutcome r = RunFleetAgainst(
      follower, {"upgrade", "--to", "0.2.0", "--artifact",
                 "/nonexistent-kmsfleet/bao-kms-provider_0.2.0_linux_amd64", "--checksums",
                 "https://example.test/checksums.txt"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[NOT_LEADER]"));
  EXPECT_THAT(r.err, HasSubstr("the coordinator is cp-2 (10.0.0.2:7443)"));
  EXPECT_THAT(r.err, Not(HasSubstr("nonexistent-kmsfleet")));
}

// Found in review: the upload line printed the coordinator's echo of the
// digest, which upgrade.md tells the operator to check against
// checksums.txt; a coordinator that stored other bytes went unnoticed.
TEST(RunUpgradeTest, AnUploadIsCheckedAgainstTheDigestComputedHere) {
  const std::string artifact = ::testing::TempDir() + "/bao-kms-provider_0.2.0_linux_amd64";
  std::ofstream(artifact) << "binary";
  LyingUploadCoordinator coordinator;
  CommitOutcome r = RunFleetAgainst(
      coordinator, {"upgrade", "--to", "0.2.0", "--artifact", artifact, "--checksums",
                    "https://example.test/checksums.txt"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[UPLOAD_DIGEST_MISMATCH] --artifact " + artifact +
                               ": the coordinator stored sha256 " + std::string(64, '0')));
  EXPECT_THAT(r.err, Not(HasSubstr("uploaded ")));
}

// Found in review: only the echoed digest was compared; the source the
// plan stages from, which names its own digest, was taken as it came.
TEST(RunUpgradeTest, AnUploadWhoseSourceNamesOtherBytesIsRefused) {
  const std::string artifact = ::testing::TempDir() + "/bao-kms-provider_0.2.0_linux_amd64";
  std::ofstream(artifact) << "binary";
  LyingUploadCoordinator coordinator;
  coordinator.only_the_source_lies = true;
  CommitOutcome r = RunFleetAgainst(
      coordinator, {"upgrade", "--to", "0.2.0", "--artifact", artifact, "--checksums",
                    "https://example.test/checksums.txt"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("[UPLOAD_DIGEST_MISMATCH] --artifact " + artifact));
  EXPECT_THAT(r.err, HasSubstr("coordinator://cp-1/" + std::string(64, '0') + "/file"));
  EXPECT_THAT(r.err, Not(HasSubstr("uploaded ")));
}

// No agent answers the dry run asked before an upload: the command ends
// there, "ask again", with nothing hashed or sent.
TEST(RunUpgradeTest, NoAnswerToTheDryRunBeforeAnUploadIsAskAgain) {
  const std::string artifact = ::testing::TempDir() + "/bao-kms-provider_0.2.0_linux_amd64";
  std::ofstream(artifact) << "binary";
  int port = 0;
  {
    FakeCoordinatorRefusing unused(grpc::Status::OK);
    std::unique_ptr<grpc::Server> gone = ServeOnLoopback(unused, port);
    ASSERT_NE(gone, nullptr);
    gone->Shutdown(std::chrono::system_clock::now());
  }
  PlanCommandLine line;
  ASSERT_FALSE(line.Parse({"upgrade", "--to", "0.2.0", "--artifact", artifact, "--checksums",
                           "https://example.test/checksums.txt", "--agent",
                           "127.0.0.1:" + std::to_string(port), "--insecure"}));
  ::testing::internal::CaptureStderr();
  const int code = RunFleetCommand(*line.app.get_subcommand("upgrade"), line.plan_flags);
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(code, 3) << err;
  EXPECT_THAT(err, HasSubstr("kmsfleetctl upgrade: [AGENT_UNREACHABLE]"));
  EXPECT_THAT(err, Not(HasSubstr("uploaded ")));
}

}  // namespace
}  // namespace kmsfleet
