// PeerNode, the election shell (architecture.md §6), in-process: one voter
// and a learner, so a plan commits without any peer answering. Issue 8:
// fences, the hand-off answer and proposals that were not persisted.
#include "kmsfleet/cluster/peer_node.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "peer_sender.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using testing::TempDir;
using testing::WaitUntil;

class PeerNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    PeerNodeOptions options;
    options.election = ElectionConfig{.self = "a", .voters = {"a"}, .learners = {"b"}};
    options.tick = Tick();
    options.state_dir = dir_.File("state");
    options.handoff_outcome = [this](const v1::Fence&) {
      return HandoffAnswer{outcome_.load(), "scripted", last_operation_.first,
                           last_operation_.second};
    };
    absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
    ASSERT_TRUE(WaitUntil(
        [&] {
          v1::LeaderView v = node_->View();
          return v.role() == "Leader" && v.committed().term() == v.term();
        },
        std::chrono::seconds(5)));
  }
  void TearDown() override { node_->Stop(); }
  virtual std::chrono::milliseconds Tick() const { return std::chrono::milliseconds(5); }

  absl::StatusOr<v1::Fence> Propose(const std::string& in_flight, const std::string& payload) {
    return node_->ProposePlan(in_flight, payload, std::chrono::seconds(2));
  }

  TempDir dir_;
  std::atomic<v1::HandoffOutcome> outcome_{v1::HANDOFF_NEVER_STARTED};
  // The last operation the scripted answer names (id, phase); set before
  // the query, which runs on the caller's thread.
  std::pair<std::string, std::string> last_operation_;
  std::unique_ptr<PeerNode> node_;
};

// Issue 8 §1: the term is public, so {current term, committed index + 1,
// self} is what anyone can forge; this node has not seen it committed.
TEST_F(PeerNodeTest, SwapUnderTheNextRecordIsRefusedAsUnknownFence) {
  absl::StatusOr<v1::Fence> to_b = Propose("b", "upgrade b");
  ASSERT_TRUE(to_b.ok()) << to_b.status();
  v1::Fence forged = *to_b;
  forged.set_index(to_b->index() + 1);
  forged.set_in_flight("a");
  absl::Status s = node_->AdmitSwap(forged);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(ReasonOf(s), reason::kUnknownFence);
  EXPECT_EQ(ReasonOf(node_->AdmitSwap(*to_b)), reason::kNotInFlight);

  absl::StatusOr<v1::Fence> to_a = Propose("a", "upgrade a");
  ASSERT_FALSE(to_a.ok()) << "b has not handed off yet (it is not reachable)";
}

// The leader sends the command as soon as the record commits, and the
// append that tells the node so at the same time: a command that comes
// first waits for the commit instead of being refused and sent again.
// A tick long enough that a proposal always commits within it, even under
// the sanitizers: the command waits at most a tick.
class PeerNodeLongTickTest : public PeerNodeTest {
  std::chrono::milliseconds Tick() const override { return std::chrono::milliseconds(100); }
};

TEST_F(PeerNodeLongTickTest, SwapThatArrivesBeforeItsCommitIsAdmittedOnceTheCommitLands) {
  v1::LeaderView now = node_->View();
  v1::Fence next;
  next.set_term(now.committed().term());
  next.set_index(now.committed().index() + 1);
  next.set_in_flight("a");
  std::promise<absl::Status> admitted;
  std::thread command([&] {
    node_->AwaitFence(next);  // as the executor does, before it is busy
    admitted.set_value(node_->AdmitSwap(next));
  });
  // The command is waiting (or, on a slow machine, not yet sent: then it
  // finds the record committed and the test proves less, never fails).
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  absl::StatusOr<v1::Fence> to_a = Propose("a", "upgrade a");
  command.join();
  ASSERT_TRUE(to_a.ok()) << to_a.status();
  ASSERT_EQ(to_a->index(), next.index());
  EXPECT_TRUE(admitted.get_future().get().ok());
}

TEST_F(PeerNodeLongTickTest, HandOffQueryThatArrivesBeforeItsCommitIsAnsweredOnceTheCommitLands) {
  absl::StatusOr<v1::Fence> to_a = Propose("a", "upgrade a");
  ASSERT_TRUE(to_a.ok()) << to_a.status();
  // The coordinator asks under a fresh record of the same plan.
  v1::Fence fresh = *to_a;
  fresh.set_index(to_a->index() + 1);
  std::promise<absl::StatusOr<v1::ReleaseReply>> answered;
  std::thread query([&] { answered.set_value(node_->Release(fresh)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  absl::StatusOr<v1::Fence> again = Propose("a", "upgrade a");
  query.join();
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->index(), fresh.index());
  absl::StatusOr<v1::ReleaseReply> reply = answered.get_future().get();
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->released());
}

// Issue 8 §2: after RollbackFailed the node is idle, but its provider may
// be down; it keeps the slot until an operation restores it.
TEST_F(PeerNodeTest, NodeWhoseRollbackFailedKeepsTheInFlightSlot) {
  absl::StatusOr<v1::Fence> to_a = Propose("a", "upgrade a");
  ASSERT_TRUE(to_a.ok()) << to_a.status();
  ASSERT_TRUE(node_->AdmitSwap(*to_a).ok());
  outcome_ = v1::HANDOFF_ROLLBACK_FAILED;

  absl::StatusOr<v1::ReleaseReply> reply = node_->Release(*to_a);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_FALSE(reply->released());
  EXPECT_EQ(reply->outcome(), v1::HANDOFF_ROLLBACK_FAILED);
  EXPECT_EQ(reply->reason(), reason::kNotReleasable);

  absl::StatusOr<v1::Fence> to_b = Propose("b", "upgrade b");
  EXPECT_EQ(to_b.status().code(), absl::StatusCode::kFailedPrecondition) << to_b.status();
  EXPECT_EQ(ReasonOf(to_b.status()), reason::kNotReleasable);
  EXPECT_EQ(MetadataOf(to_b.status(), "outcome"), "HANDOFF_ROLLBACK_FAILED");
  EXPECT_EQ(node_->View().committed().in_flight(), "a") << "the slot stays";

  outcome_ = v1::HANDOFF_ROLLED_BACK;  // an operator's rollback restored it
  to_b = Propose("b", "upgrade b");
  ASSERT_TRUE(to_b.ok()) << to_b.status();
  EXPECT_EQ(to_b->in_flight(), "b");
}

// A plan that gave a's slot back untouched learns from the release whether
// its step ran after all (PlanStep::NoteStepRanAfterAll): HandOff passes
// on the holder's answer, which names its last operation.
TEST_F(PeerNodeTest, AHandOffPassesOnTheLastOperationTheHolderNames) {
  ASSERT_TRUE(Propose("a", "upgrade a").ok());
  last_operation_ = {"plan-1.a.swap.3", "Stable"};
  v1::ReleaseReply released;
  ASSERT_TRUE(node_->HandOff("a", &released).ok());
  EXPECT_TRUE(released.released());
  EXPECT_EQ(released.last_operation_id(), "plan-1.a.swap.3");
  EXPECT_EQ(released.last_operation_phase(), "Stable");
}

// Issue 8 §4: a proposal that could not be persisted was never made; the
// previous fence is no answer to it.
TEST_F(PeerNodeTest, ProposalThatCannotBePersistedIsAnError) {
  absl::StatusOr<v1::Fence> first = Propose("", "plan 1");
  ASSERT_TRUE(first.ok()) << first.status();
  // Root ignores a read-only directory; a non-empty directory where the
  // state file goes makes the final rename fail for everyone, whatever the
  // temporary file is called.
  std::string state = dir_.File("state/election.pb");
  ASSERT_EQ(unlink(state.c_str()), 0);
  ASSERT_EQ(mkdir(state.c_str(), 0700), 0);
  std::string inside = state + "/keep";
  ASSERT_EQ(mkdir(inside.c_str(), 0700), 0);
  absl::StatusOr<v1::Fence> second = Propose("", "plan 2");
  rmdir(inside.c_str());
  rmdir(state.c_str());
  ASSERT_FALSE(second.ok()) << "reported fence " << second->term() << "/"
                            << second->index() << " for an unpersisted proposal";
  EXPECT_EQ(ReasonOf(second.status()), reason::kStateWriteFailed) << second.status();
  EXPECT_NE(node_->View().committed().payload(), "plan 2");
}

// Issue 11: a stopping coordinator with no voter to hand over to says so
// at once (its shell then just stops) and keeps leading meanwhile.
TEST_F(PeerNodeTest, TransferWithNoOtherVoterIsRefusedAndChangesNothing) {
  for (const char* target : {"", "b", "a"}) {
    absl::StatusOr<PeerNode::Transferred> moved =
        node_->TransferLeadership(target, std::chrono::milliseconds(500));
    EXPECT_EQ(moved.status().code(), absl::StatusCode::kFailedPrecondition) << target;
    EXPECT_EQ(ReasonOf(moved.status()), reason::kNoTransferTarget) << target;
  }
  EXPECT_EQ(node_->View().role(), "Leader");
  EXPECT_TRUE(Propose("", "after the refused transfer").ok());
}

// A loopback port nothing listens on: bound, read back, closed.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return 0;
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Answers every hand-off query with `refusal`.
class RefusingPeer final : public v1::Peer::Service {
 public:
  explicit RefusingPeer(absl::Status refusal) : refusal_(std::move(refusal)) {}
  grpc::Status Release(grpc::ServerContext*, const v1::ReleaseRequest*,
                       v1::ReleaseReply*) override {
    return ToGrpcStatus(refusal_);
  }

 private:
  absl::Status refusal_;
};

// Found in review: every failed hand-off query read HANDOFF_PENDING, so a
// plan waiting on an in-flight node that is down said it was still
// finishing its operation.
TEST(PeerSenderTest, AHandOffQueryNobodyAnswersIsAgentUnreachable) {
  const int port = ClosedPort();
  ASSERT_NE(port, 0);
  PeerSender sender("a", "b", "127.0.0.1:" + std::to_string(port),
                    grpc::InsecureChannelCredentials(), std::chrono::milliseconds(300));
  absl::StatusOr<v1::ReleaseReply> r = sender.Release(v1::Fence());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_EQ(ReasonOf(r.status()), reason::kAgentUnreachable) << r.status();
  EXPECT_EQ(MetadataOf(r.status(), "in_flight"), "b");
  EXPECT_NE(r.status().message().find("did not answer"), std::string_view::npos) << r.status();
}

// A wait keeps HANDOFF_PENDING (the caller asks again after a heartbeat on
// UNKNOWN_FENCE, read from peer_reason); any other refusal keeps its own
// reason, so that the plan says why it is held.
TEST(PeerSenderTest, AHandOffQueryThePeerRefusesKeepsThePeersReason) {
  const std::pair<const char*, const char*> cases[] = {
      {reason::kUnknownFence, reason::kHandoffPending},
      {reason::kVoterOnly, reason::kVoterOnly},
      {reason::kStaleTerm, reason::kStaleTerm}};
  for (const auto& [refusal, read_as] : cases) {
    RefusingPeer peer(MakeError(absl::StatusCode::kFailedPrecondition, refusal, "no"));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&peer);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_NE(server, nullptr);
    PeerSender sender("a", "b", "127.0.0.1:" + std::to_string(port),
                      grpc::InsecureChannelCredentials(), std::chrono::seconds(5));
    absl::StatusOr<v1::ReleaseReply> r = sender.Release(v1::Fence());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_EQ(ReasonOf(r.status()), read_as) << r.status();
    EXPECT_EQ(MetadataOf(r.status(), "peer_reason"), refusal);
    server->Shutdown(std::chrono::system_clock::now());
  }
}

}  // namespace
}  // namespace kmsfleet
