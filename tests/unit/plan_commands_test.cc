// `kmsfleetctl plan commit` and the --fence flag: parsing, and keeping the
// coordinator's refusal (reason and where to go) intact.
#include "cli/leader_status.h"
#include "cli/plan_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/v1/error.pb.h"
#include "kmsfleet/v1/fleet_mock.grpc.pb.h"

namespace kmsfleet {
namespace {

using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Return;

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

}  // namespace
}  // namespace kmsfleet
