// The authenticated Agent API (issue 8 §3, architecture.md §7): three
// agents electing over mTLS, and remote callers on their cluster listeners
// with no certificate, an untrusted one, a member's and an operator's.
// Each refusal is made by the authorisation table, not by the fence.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <sstream>

#include "election_cluster.h"
#include "fleet.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::chrono::seconds kCallDeadline{5};

std::string ReasonOf(const grpc::Status& status) {
  v1::ErrorInfo info;
  if (!info.ParseFromString(status.error_details())) return "";
  return info.reason();
}

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
}

// The lines of `log` that hold both `a` and `b`.
int LinesWith(const std::string& log, std::string_view a, std::string_view b) {
  int count = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) ++count;
  }
  return count;
}

// A unary call of `method` with an empty message over `channel`.
grpc::Status EmptyUnaryCall(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& method) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  SetDeadline(context);
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<grpc::Status> status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = s;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return status.has_value(); });
  return *status;
}

class AgentAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cluster_ = std::make_unique<ElectionCluster>(dir_, 3);
    ASSERT_TRUE(MakeOperatorCertificate(cluster_->pki(), "alice"));
    // A certificate naming cp-1, from a CA the fleet does not trust.
    rogue_ = dir_.File("rogue-pki");
    ASSERT_TRUE(MakeCertificates(rogue_, {"cp-1"}, "rogue"));
    cluster_->StartAll();
    leader_ = cluster_->WaitForLeader({0, 1, 2});
    ASSERT_GE(leader_, 0);
    target_ = (leader_ + 1) % 3;  // a follower: its Swap reaches the fence
  }
  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (int i = 0; i < cluster_->size(); ++i) {
        std::cerr << cluster_->Name(i) << " log:\n" << cluster_->Log(i);
      }
    }
  }

  grpc::Status Swap(const std::shared_ptr<grpc::Channel>& channel) {
    auto stub = v1::Agent::NewStub(channel);
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SwapRequest request;
    request.set_version("9.9.9");
    v1::Operation op;
    return stub->Swap(&context, request, &op);
  }

  // The node certificate `cert` of the fleet (or of `pki`), as a client.
  std::shared_ptr<grpc::Channel> As(const std::string& cert, const std::string& pki = "") {
    return cluster_->PeerChannel(target_, cert, pki);
  }

  std::string TargetLog() const { return cluster_->Log(target_); }

  // The fence `kmsfleetctl plan commit --in-flight <target>` prints, run
  // by the operator alice, once the target holds that record committed.
  v1::Fence CommitTargetInFlight() {
    const std::string pki = cluster_->pki();
    absl::StatusOr<SubprocessResult> r =
        RunCtl({"plan", "commit", "--agent", cluster_->Address(leader_), "--in-flight",
                cluster_->Name(target_), "--ca", pki + "/ca.pem", "--cert", pki + "/alice.pem",
                "--key", pki + "/alice.key", "--server-name", cluster_->Name(leader_)});
    v1::Fence fence;
    EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? r->stderr_text : r.status().ToString());
    if (!r.ok() || r->exit_code != 0) return fence;
    const std::string text = r->stdout_text.substr(0, r->stdout_text.find('\n'));
    const size_t a = text.find('/'), b = text.find('/', a + 1);
    fence.set_term(std::stoull(text.substr(0, a)));
    fence.set_index(std::stoull(text.substr(a + 1, b - a - 1)));
    fence.set_in_flight(text.substr(b + 1));
    EXPECT_TRUE(WaitUntil(
        [&] {
          std::optional<v1::LeaderView> view = cluster_->View(target_);
          return view && view->committed().index() >= fence.index();
        },
        std::chrono::seconds(10)));
    return fence;
  }

  TempDir dir_;
  std::unique_ptr<ElectionCluster> cluster_;
  std::string rogue_;
  int leader_ = -1;
  int target_ = -1;
};

// The same Swap with an operator's certificate reaches the executor's fence:
// what refuses the others below is the missing or untrusted certificate.
TEST_F(AgentAuthTest, SwapWithoutAClientCertificateIsRefused) {
  grpc::Status s = Swap(cluster_->AnonymousChannel(target_));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "UNKNOWN_CALLER");
  std::string log = TargetLog();
  EXPECT_THAT(log, HasSubstr("method=/kmsfleet.v1.Agent/Swap"));
  EXPECT_THAT(log, HasSubstr("caller_kind=anonymous"));
  EXPECT_EQ(ReasonOf(Swap(As("alice"))), "FENCE_REQUIRED");
  // Nor can it read, nor speak in the election.
  auto peer = v1::Peer::NewStub(cluster_->AnonymousChannel(target_));
  grpc::ClientContext context;
  SetDeadline(context);
  v1::SendReply reply;
  EXPECT_EQ(peer->Send(&context, v1::PeerMessage(), &reply).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Nothing on this listener answers without checking its caller: the
  // default health service is not served here.
  EXPECT_EQ(EmptyUnaryCall(cluster_->AnonymousChannel(target_), "/grpc.health.v1.Health/Check")
                .error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(AgentAuthTest, SwapWithACertificateFromAnUntrustedCaIsRefused) {
  grpc::Status s = Swap(As("cp-1", rogue_));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(ReasonOf(Swap(As("alice"))), "FENCE_REQUIRED");
}

TEST_F(AgentAuthTest, NodeCertificateCannotCommitAPlanAsAnOperator) {
  auto stub = v1::Fleet::NewStub(As(cluster_->Name(leader_)));
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ProposePlanRequest request;
  request.set_in_flight(cluster_->Name(target_));
  v1::ProposePlanReply reply;
  grpc::Status s = stub->ProposePlan(&context, request, &reply);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "OPERATOR_ONLY");
  std::string log = TargetLog();
  EXPECT_THAT(log, HasSubstr("call refused"));
  EXPECT_THAT(log, HasSubstr("/kmsfleet.v1.Fleet/ProposePlan"));
  EXPECT_THAT(log, HasSubstr("caller=" + cluster_->Name(leader_)));
  EXPECT_THAT(log, HasSubstr("OPERATOR_ONLY"));
}

TEST_F(AgentAuthTest, OperatorCertificateCannotSpeakInTheElection) {
  auto stub = v1::Peer::NewStub(As("alice"));
  {
    grpc::ClientContext context;
    SetDeadline(context);
    v1::PeerMessage message;
    message.set_from(cluster_->Name(leader_));
    message.set_term(1000);
    v1::SendReply reply;
    grpc::Status s = stub->Send(&context, message, &reply);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_EQ(ReasonOf(s), "MEMBER_ONLY");
  }
  grpc::ClientContext context;
  SetDeadline(context);
  v1::ReleaseReply reply;
  grpc::Status s = stub->Release(&context, v1::ReleaseRequest(), &reply);
  EXPECT_EQ(ReasonOf(s), "MEMBER_ONLY") << s.error_message();
  EXPECT_THAT(TargetLog(), HasSubstr("caller=alice"));
  std::optional<v1::LeaderView> view = cluster_->View(target_);
  ASSERT_TRUE(view.has_value());
  EXPECT_LT(view->term(), 1000u) << "the operator's message changed the term";
}

TEST_F(AgentAuthTest, OperatorReadsTheNodeStateAndItsSwapReachesTheFence) {
  auto stub = v1::Agent::NewStub(As("alice"));
  grpc::ClientContext context;
  SetDeadline(context);
  v1::NodeState state;
  grpc::Status read = stub->GetNodeState(&context, v1::GetNodeStateRequest(), &state);
  ASSERT_TRUE(read.ok()) << read.error_message();
  EXPECT_EQ(state.node(), cluster_->Name(target_));
  EXPECT_EQ(state.agent_mode(), "cluster member");

  // Authorised, so the fence decides: no fence, no swap.
  grpc::Status s = Swap(As("alice"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "FENCE_REQUIRED");
  // A member (the coordinator, later) is authorised the same way.
  s = Swap(As(cluster_->Name(leader_)));
  EXPECT_EQ(ReasonOf(s), "FENCE_REQUIRED") << s.error_message();
}

// Issue 8's end-to-end case: a remote Swap over mTLS, from a certificate
// the table authorises (a member's, as the coordinator's; an operator's),
// under a fence forged from public facts, {current term, committed index +
// 1, the target itself}, is refused by the fence: nobody committed it.
TEST_F(AgentAuthTest, RemoteSwapUnderAForgedFenceIsRefusedByTheFence) {
  // Once the target knows the new leader's first record committed, the
  // index after it is one nobody has committed.
  std::optional<v1::LeaderView> view;
  ASSERT_TRUE(WaitUntil(
      [&] {
        view = cluster_->View(target_);
        return view && view->term() > 0 && view->committed().term() == view->term();
      },
      std::chrono::seconds(10)));
  v1::Fence forged;
  forged.set_term(view->term());
  forged.set_index(view->committed().index() + 1);
  forged.set_in_flight(cluster_->Name(target_));
  for (const std::string& cert : {cluster_->Name(leader_), std::string("alice")}) {
    auto stub = v1::Agent::NewStub(As(cert));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SwapRequest request;
    request.set_version("9.9.9");
    *request.mutable_fence() = forged;
    v1::Operation op;
    grpc::Status s = stub->Swap(&context, request, &op);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << cert << ": " << s.error_message();
    EXPECT_EQ(ReasonOf(s), "UNKNOWN_FENCE") << cert << ": " << s.error_message();
  }
  // The same refusal again and again (a caller asking every tick) is
  // logged once per interval, with how many were not.
  for (int i = 0; i < 3; ++i) {
    auto stub = v1::Agent::NewStub(As("alice"));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SwapRequest request;
    request.set_version("9.9.9");
    *request.mutable_fence() = forged;
    v1::Operation op;
    EXPECT_EQ(ReasonOf(stub->Swap(&context, request, &op)), "UNKNOWN_FENCE");
  }
  const std::string log = TargetLog();
  EXPECT_THAT(log, HasSubstr("swap command refused"));
  // Who sent each forged command, not only why it was refused.
  EXPECT_THAT(log, HasSubstr("msg=\"command refused\""));
  EXPECT_THAT(log, HasSubstr("caller_kind=member caller=" + cluster_->Name(leader_)));
  EXPECT_THAT(log, HasSubstr("caller_kind=operator caller=alice"));
  int alice_lines = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("msg=\"command refused\"") == std::string::npos ||
        line.find("caller=alice") == std::string::npos) {
      continue;
    }
    ++alice_lines;
    EXPECT_THAT(line, HasSubstr("repeats_not_logged=0"));
  }
  EXPECT_EQ(alice_lines, 1) << "four refusals of one caller for one reason within 10 s";
  // The fence's own line says why, once for the five refusals: a caller
  // sending forged fences every tick does not flood the journal through it.
  EXPECT_EQ(LinesWith(log, "msg=\"swap command refused\"", "reason=UNKNOWN_FENCE"), 1);
}

// The simulator's adversary: a fence names the node to disrupt, not the
// command. A member certificate speaks for a coordinator, so under a real
// committed record it may only send the plan's own step; a raw record
// (`plan commit`) holds no plan, and binds only operators' judgement.
TEST_F(AgentAuthTest, MemberSwapThatIsNotThePlansStepIsRefusedUnderARealFence) {
  const v1::Fence fence = CommitTargetInFlight();
  ASSERT_FALSE(HasFailure());
  auto swap_as = [&](const std::string& cert, const std::string& acknowledgement = "") {
    auto stub = v1::Agent::NewStub(As(cert));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SwapRequest request;
    request.set_version("9.9.9");
    request.set_operation_id("forged-9.9.9");
    *request.mutable_fence() = fence;
    if (!acknowledgement.empty()) request.add_acknowledgements(acknowledgement);
    v1::Operation op;
    return stub->Swap(&context, request, &op);
  };
  grpc::Status member = swap_as(cluster_->Name(leader_));
  EXPECT_EQ(member.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << member.error_message();
  EXPECT_EQ(ReasonOf(member), "COMMAND_NOT_IN_PLAN") << member.error_message();
  // Nor can a member's certificate waive a refusal the operator did not:
  // a plan's swap takes the committed plan's acknowledgements.
  grpc::Status waived = swap_as(cluster_->Name(leader_), "STATE_CHECKPOINT_NOT_CURRENT");
  EXPECT_EQ(waived.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << waived.error_message();
  EXPECT_THAT(waived.error_message(), HasSubstr("the committed plan's are used"));
  // An operator passes both checks (and then meets an unstaged version).
  grpc::Status op = swap_as("alice");
  EXPECT_NE(ReasonOf(op), "COMMAND_NOT_IN_PLAN") << op.error_message();
  EXPECT_NE(ReasonOf(op), "STALE_FENCE") << op.error_message();
  EXPECT_THAT(TargetLog(), HasSubstr("member command refused"));
}

// Found in review: any member's certificate passed the plan check, so
// another voter or a learner could send the in-flight node the plan's own
// step while the coordinator held it back (another node's provider down:
// it only follows the step), and take a second provider down. A member's
// swap (rollback, kube-apiserver restart) is taken only from the leader
// the node follows in its committed record's term; from the target's own
// key or another voter's it is refused before the plan is even read.
TEST_F(AgentAuthTest, AMembersCommandFromAnyoneButTheLeaderIsRefused) {
  const v1::Fence fence = CommitTargetInFlight();
  ASSERT_FALSE(HasFailure());
  const std::string other = cluster_->Name((leader_ + 2) % 3);
  const std::string leader = cluster_->Name(leader_);
  // The plan's own step, as a coordinator would send it, under `cert`.
  const auto step_as = [&](const std::string& cert) {
    auto stub = v1::Agent::NewStub(As(cert));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::SwapRequest swap;
    swap.set_version("0.2.0");
    swap.set_operation_id("plan-1." + cluster_->Name(target_) + ".swap.4");
    *swap.mutable_fence() = fence;
    v1::Operation op;
    return stub->Swap(&context, swap, &op);
  };
  for (const std::string& cert : {other, cluster_->Name(target_)}) {
    grpc::Status s = step_as(cert);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << cert << ": " << s.error_message();
    EXPECT_EQ(ReasonOf(s), "COMMAND_NOT_FROM_LEADER") << cert << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("follows " + leader + " in term " +
                                             std::to_string(fence.term())));
    EXPECT_THAT(s.error_message(), HasSubstr(cert + " sent it"));
  }
  // The leader's own key gets past it, to the plan check (a raw record
  // holds no plan).
  EXPECT_EQ(ReasonOf(step_as(leader)), "COMMAND_NOT_IN_PLAN");
  EXPECT_THAT(TargetLog(), HasSubstr("COMMAND_NOT_FROM_LEADER"));
}

// Found in review: a member's Stage and Preflight were bound to nothing,
// so a member certificate could have a node stage, then run as root, a
// release no operator chose. With no fleet plan under way a member may
// stage and preflight nothing; an operator still may, and so may the
// dry run's installed-only preflight. A member other than the leader
// may stage and preflight nothing at all.
TEST_F(AgentAuthTest, MemberStageAndPreflightOfAReleaseNotInThePlanAreRefused) {
  const v1::Fence fence = CommitTargetInFlight();
  ASSERT_FALSE(HasFailure());
  auto stage_as = [&](const std::string& cert, const std::optional<v1::Fence>& under) {
    auto stub = v1::Agent::NewStub(As(cert));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::StageRequest request;
    request.set_version("9.9.9");
    request.set_source(dir_.File("mine/bao-kms-provider"));
    request.set_checksums(dir_.File("mine/checksums.txt"));
    if (under) *request.mutable_fence() = *under;
    v1::StageResponse response;
    return stub->Stage(&context, request, &response);
  };
  auto preflight_as = [&](const std::string& cert, bool installed_only) {
    auto stub = v1::Agent::NewStub(As(cert));
    grpc::ClientContext context;
    SetDeadline(context);
    v1::PreflightRequest request;
    request.set_version("9.9.9");
    request.set_installed_only(installed_only);
    *request.mutable_fence() = fence;
    v1::PreflightResponse response;
    return stub->Preflight(&context, request, &response);
  };
  const std::string member = cluster_->Name(leader_);
  // Under the committed record's fence (the node waits for its commit):
  // a raw record, no fleet plan, so nothing is the plan's release.
  grpc::Status staged = stage_as(member, fence);
  EXPECT_EQ(staged.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << staged.error_message();
  EXPECT_EQ(ReasonOf(staged), "COMMAND_NOT_IN_PLAN") << staged.error_message();
  EXPECT_THAT(staged.error_message(), HasSubstr("not stage of 9.9.9 from " + dir_.File("mine")));
  grpc::Status preflighted = preflight_as(member, false);
  EXPECT_EQ(ReasonOf(preflighted), "COMMAND_NOT_IN_PLAN") << preflighted.error_message();
  EXPECT_NE(ReasonOf(preflight_as(member, true)), "COMMAND_NOT_IN_PLAN");
  // Another member's key is refused before the plan is read: only the
  // leader stages and preflights (the installed-only preflight is not
  // bound).
  const std::string other = cluster_->Name((leader_ + 2) % 3);
  EXPECT_EQ(ReasonOf(stage_as(other, fence)), "COMMAND_NOT_FROM_LEADER");
  EXPECT_EQ(ReasonOf(preflight_as(other, false)), "COMMAND_NOT_FROM_LEADER");
  EXPECT_NE(ReasonOf(preflight_as(other, true)), "COMMAND_NOT_FROM_LEADER");
  // With no fence, or one no election committed, the node cannot tell a
  // lag from a forgery: refused as "not yet", still before any read.
  grpc::Status unfenced = stage_as(member, std::nullopt);
  EXPECT_EQ(unfenced.error_code(), grpc::StatusCode::UNAVAILABLE) << unfenced.error_message();
  EXPECT_EQ(ReasonOf(unfenced), "PLAN_CHANGE_PENDING") << unfenced.error_message();
  v1::Fence forged = fence;
  forged.set_index(fence.index() + 100);
  EXPECT_EQ(ReasonOf(stage_as(member, forged)), "UNKNOWN_FENCE");
  // The operator's reach the executor, which finds no such file or stage.
  grpc::Status by_operator = stage_as("alice", std::nullopt);
  EXPECT_FALSE(by_operator.ok());
  EXPECT_EQ(ReasonOf(by_operator), "ARTIFACT_IO") << by_operator.error_message();
  EXPECT_NE(ReasonOf(preflight_as("alice", false)), "COMMAND_NOT_IN_PLAN");
  EXPECT_THAT(TargetLog(), HasSubstr("method=/kmsfleet.v1.Agent/Stage"));
}

TEST_F(AgentAuthTest, OperatorCommitsAPlanOverTcpWithKmsfleetctl) {
  std::string pki = cluster_->pki();
  absl::StatusOr<SubprocessResult> r =
      RunCtl({"plan", "commit", "--agent", cluster_->Address(leader_), "--in-flight", "",
              "--ca", pki + "/ca.pem", "--cert", pki + "/alice.pem", "--key",
              pki + "/alice.key", "--server-name", cluster_->Name(leader_)});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stdout_text << r->stderr_text;
}

}  // namespace
}  // namespace kmsfleet::testing
