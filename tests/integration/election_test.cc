// Multi-process election over mTLS on loopback (issue 3, architecture.md
// §6 and §7): failover after SIGKILL and SIGSTOP, fences of deposed
// coordinators refused everywhere, and hostile peers refused without any
// state change; issue 8: forged fences refused and no hand-off from a node
// whose last operation ended RollbackFailed.
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "election_cluster.h"
#include "fleet.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

std::string ReasonOf(const grpc::Status& status) {
  v1::ErrorInfo info;
  if (!info.ParseFromString(status.error_details())) return "";
  return info.reason();
}

class ElectionFixture : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (int i = 0; i < cluster_->size(); ++i) {
        std::cerr << cluster_->Name(i) << " log:\n" << cluster_->Log(i);
      }
    }
  }

  // Starts the group and returns the elected leader's index.
  int StartGroup(int voters, int learners = 0) {
    cluster_ = std::make_unique<ElectionCluster>(dir_, voters, learners);
    cluster_->StartAll();
    return cluster_->WaitForLeader(All());
  }

  std::vector<int> All() const {
    std::vector<int> all;
    for (int i = 0; i < cluster_->size(); ++i) all.push_back(i);
    return all;
  }
  std::vector<int> AllBut(int skip) const {
    std::vector<int> rest;
    for (int i : All()) {
      if (i != skip) rest.push_back(i);
    }
    return rest;
  }

  grpc::Status Propose(int i, const std::string& in_flight, const std::string& payload,
                       v1::Fence* fence) {
    auto stub = cluster_->LocalFleet(i);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(8));
    v1::ProposePlanRequest request;
    request.set_in_flight(in_flight);
    request.set_payload(payload);
    v1::ProposePlanReply reply;
    grpc::Status status = stub->ProposePlan(&context, request, &reply);
    if (fence) *fence = reply.fence();
    return status;
  }

  // Sends Agent.Swap under `fence` to agent `i`. Nothing is staged there,
  // so a fence the agent admits ends in NOT_STAGED: the executor got past
  // the fence and looked for the release.
  grpc::Status Swap(int i, const v1::Fence& fence) { return cluster_->Swap(i, fence); }
  // As a coordinator does: a node that has not yet heard of the commit
  // answers UNKNOWN_FENCE until the next heartbeat reaches it.
  grpc::Status SwapOnceKnown(int i, const v1::Fence& fence) {
    grpc::Status s = Swap(i, fence);
    for (int n = 0; n < 40 && ReasonOf(s) == "UNKNOWN_FENCE"; ++n) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      s = Swap(i, fence);
    }
    return s;
  }

  TempDir dir_;
  std::unique_ptr<ElectionCluster> cluster_;
};

class ElectionClusterTest : public ElectionFixture,
                            public ::testing::WithParamInterface<int> {};

TEST_P(ElectionClusterTest, KilledLeaderIsReplacedKeepingThePlanAndItsFenceIsRefused) {
  int old = StartGroup(GetParam());
  ASSERT_GE(old, 0) << "no leader elected";
  int target = (old + 1) % GetParam();
  v1::Fence fence;
  grpc::Status proposed = Propose(old, cluster_->Name(target), "plan-A", &fence);
  ASSERT_TRUE(proposed.ok()) << proposed.error_message();
  grpc::Status admitted = SwapOnceKnown(target, fence);
  ASSERT_EQ(ReasonOf(admitted), "NOT_STAGED")
      << "the current coordinator's fence is admitted: " << admitted.error_message();
  grpc::Status unfenced = cluster_->Swap(target, std::nullopt);
  EXPECT_EQ(unfenced.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ReasonOf(unfenced), "FENCE_REQUIRED") << unfenced.error_message();

  cluster_->Kill(old);
  int next = cluster_->WaitForLeader(AllBut(old), fence.term());
  ASSERT_GE(next, 0) << "no new leader after SIGKILL";
  ASSERT_NE(next, old);
  for (int i : AllBut(old)) {
    std::optional<v1::LeaderView> v = cluster_->View(i);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->committed().payload(), "plan-A") << cluster_->Name(i);
    EXPECT_EQ(v->committed().in_flight(), cluster_->Name(target));
    EXPECT_GE(v->committed().index(), fence.index());
  }

  // The old leader comes back from its persisted state and follows.
  cluster_->Start(old);
  ASSERT_EQ(cluster_->WaitForLeader(All(), fence.term()), next);
  for (int i : All()) {
    grpc::Status s = Swap(i, fence);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << cluster_->Name(i);
    EXPECT_EQ(ReasonOf(s), "STALE_TERM") << cluster_->Name(i) << ": " << s.error_message();
  }
  EXPECT_THAT(cluster_->Log(target), HasSubstr("swap command refused"));

  // A follower answers a proposal with where the coordinator is.
  int follower = (next + 1) % GetParam();
  grpc::Status redirected = Propose(follower, "", "plan-B", nullptr);
  EXPECT_EQ(redirected.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ReasonOf(redirected), "NOT_LEADER");
  EXPECT_THAT(redirected.error_message(), HasSubstr("ask " + cluster_->Name(next) + " at 127.0.0.1:"));

  std::vector<std::string> args = {"leader", "--output", "json"};
  for (int i : All()) args.insert(args.end(), {"--agent", cluster_->Socket(i)});
  absl::StatusOr<SubprocessResult> ctl = RunCtl(args);
  ASSERT_TRUE(ctl.ok()) << ctl.status();
  EXPECT_EQ(ctl->exit_code, 0) << ctl->stdout_text << ctl->stderr_text;
  EXPECT_THAT(ctl->stdout_text,
              HasSubstr("\"coordinator\":\"" + cluster_->Name(next) + "\""));
}

INSTANTIATE_TEST_SUITE_P(Voters, ElectionClusterTest, ::testing::Values(3, 5),
                         [](const auto& param_info) {
                           return std::to_string(param_info.param) + "Voters";
                         });

class ElectionThreeTest : public ElectionFixture {};

TEST_F(ElectionThreeTest, FrozenLeaderResumedAfterNewElectionGetsNothingAccepted) {
  int old = StartGroup(3);
  ASSERT_GE(old, 0);
  int target = (old + 1) % 3;
  v1::Fence fence;
  ASSERT_TRUE(Propose(old, cluster_->Name(target), "plan-A", &fence).ok());

  cluster_->Signal(old, SIGSTOP);
  int next = cluster_->WaitForLeader(AllBut(old), fence.term());
  ASSERT_GE(next, 0);
  cluster_->Signal(old, SIGCONT);

  // Still believing it leads, the old leader tries to move the plan on.
  grpc::Status zombie = Propose(old, cluster_->Name((old + 2) % 3), "zombie", nullptr);
  EXPECT_FALSE(zombie.ok());
  for (int i : AllBut(old)) {
    grpc::Status s = Swap(i, fence);
    EXPECT_EQ(ReasonOf(s), "STALE_TERM") << cluster_->Name(i) << ": " << s.error_message();
  }
  ASSERT_EQ(cluster_->WaitForLeader(All(), fence.term()), next);
  for (int i : All()) {
    std::optional<v1::LeaderView> v = cluster_->View(i);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->committed().payload(), "plan-A") << cluster_->Name(i);
  }
}

// Two agents on one node would finish each other's open journals, answer
// hand-offs from journals the other is writing and vote twice in one term.
// A second kmsfleetd on a member's config exits before it reads or serves
// anything, and names the first; the member goes on as it was.
// An append carries the record and the committed one: after a commit of
// the largest payload, both are that large, and every heartbeat must still
// fit the peer transport, or the followers never learn the commit and the
// leader, unheard, steps down for good.
TEST_F(ElectionThreeTest, TheLargestPayloadIsCommittedOnEveryNode) {
  int leader = StartGroup(3);
  ASSERT_GE(leader, 0);
  const std::string big(kMaxPlanPayloadBytes, 'p');
  v1::Fence fence;
  grpc::Status proposed = Propose(leader, "", big, &fence);
  ASSERT_TRUE(proposed.ok()) << proposed.error_message();
  for (int i : All()) {
    EXPECT_TRUE(WaitUntil(
        [&] {
          std::optional<v1::LeaderView> v = cluster_->View(i);
          return v && v->committed().index() == fence.index() &&
                 v->committed().payload() == big;
        },
        std::chrono::seconds(10)))
        << cluster_->Name(i) << " never learned the commit";
  }
  v1::Fence next;
  grpc::Status small = Propose(leader, "", "small", &next);
  EXPECT_TRUE(small.ok()) << small.error_message();
}

TEST_F(ElectionThreeTest, ASecondAgentOnTheSameStateDirExitsBeforeServing) {
  int leader = StartGroup(3);
  ASSERT_GE(leader, 0);
  const int member = (leader + 1) % 3;
  const std::string log = dir_.File("second-agent.log");
  ChildProcess second({KMSFLEETD_PATH, "--config", cluster_->ConfigPath(member)},
                      ChildOptions{.out_path = log});
  std::optional<int> code = second.Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << "the second agent still runs:\n" << ReadFile(log);
  EXPECT_EQ(*code, 1);
  const std::string out = ReadFile(log);
  EXPECT_NE(out.find("STATE_DIR_LOCKED"), std::string::npos) << out;
  EXPECT_NE(out.find("pid " + std::to_string(cluster_->Pid(member))), std::string::npos) << out;
  for (const char* never : {"cluster serving", "agent serving", "recovering"}) {
    EXPECT_EQ(out.find(never), std::string::npos) << never << " in:\n" << out;
  }
  std::optional<v1::LeaderView> v = cluster_->View(member);
  ASSERT_TRUE(v.has_value()) << "the first agent still answers";
  EXPECT_EQ(v->node(), cluster_->Name(member));
  EXPECT_EQ(cluster_->WaitForLeader(All()), leader);
}

// Every (term, leader) any agent reported while it runs: two names for
// one term would be two coordinators at once.
class LeaderWatch {
 public:
  explicit LeaderWatch(ElectionCluster& cluster) : cluster_(cluster) {
    thread_ = std::thread([this] {
      while (!done_.load()) {
        for (int i = 0; i < cluster_.size(); ++i) {
          std::optional<v1::LeaderView> v = cluster_.View(i);
          if (!v || v->role() != "Leader") continue;
          std::lock_guard lock(mu_);
          leaders_[v->term()].insert(v->node());
        }
      }
    });
  }
  ~LeaderWatch() { Stop(); }
  void Stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::map<uint64_t, std::set<std::string>> leaders() {
    std::lock_guard lock(mu_);
    return leaders_;
  }

 private:
  ElectionCluster& cluster_;
  std::atomic<bool> done_{false};
  std::mutex mu_;
  std::map<uint64_t, std::set<std::string>> leaders_;
  std::thread thread_;
};

// Issue 11: a package upgrade restarts kmsfleetd. The coordinator that
// gets SIGTERM hands leadership to an up-to-date voter first, so the
// group has a new coordinator after a few round trips. Without the
// transfer no follower even starts an election before its timeout, which
// runs from its last heartbeat, at most kHeartbeatMs before the SIGTERM:
// a new leader sooner than kElectionTimeoutMs - kHeartbeatMs after it was
// made by the transfer. (Half of that, the bound once, failed under the
// sanitizers with two test processes at once: 308 ms.)
TEST_F(ElectionThreeTest, SigtermedLeaderHandsOverWellBeforeAnElectionTimeout) {
  int old = StartGroup(3);
  ASSERT_GE(old, 0);
  v1::Fence fence;
  ASSERT_TRUE(Propose(old, "", "plan-A", &fence).ok());
  LeaderWatch watch(*cluster_);
  ASSERT_TRUE(WaitUntil([&] { return !watch.leaders().empty(); }, std::chrono::seconds(5)));

  auto t0 = std::chrono::steady_clock::now();
  cluster_->Signal(old, SIGTERM);
  int next = -1;
  uint64_t next_term = 0;
  while (next < 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10)) {
    for (int i : AllBut(old)) {
      std::optional<v1::LeaderView> v = cluster_->View(i);
      if (v && v->role() == "Leader" && v->term() > fence.term()) {
        next = i;
        next_term = v->term();
      }
    }
  }
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                  .count();
  ASSERT_GE(next, 0) << "no new leader after SIGTERM";
  RecordProperty("sigterm_to_new_leader_ms", static_cast<int>(ms));
  const double bound = kElectionTimeoutMs - kHeartbeatMs;
  EXPECT_LT(ms, bound) << "a new leader " << ms << " ms after SIGTERM; an election by "
                       << "timeout could not have started before "
                       << kElectionTimeoutMs - kHeartbeatMs << " ms";
  EXPECT_EQ(next_term, fence.term() + 1) << "one election, the target's";
  EXPECT_EQ(cluster_->WaitExit(old, std::chrono::seconds(10)), std::optional<int>(0));
  EXPECT_THAT(cluster_->Log(old), HasSubstr("leadership handed over before stopping"));
  EXPECT_THAT(cluster_->Log(old), HasSubstr(cluster_->Name(next)));
  ASSERT_EQ(cluster_->WaitForLeader(AllBut(old), fence.term()), next);
  // The plan survived, and the new coordinator commits changes.
  // The new leader first commits its term's own record; a change proposed
  // before that lands is told to retry (a CI run hit it).
  v1::Fence after;
  grpc::Status proposed;
  ASSERT_TRUE(WaitUntil(
      [&] {
        proposed = Propose(next, "", "plan-B", &after);
        return proposed.error_message().find("not committed yet") == std::string::npos;
      },
      std::chrono::seconds(5)));
  EXPECT_TRUE(proposed.ok()) << proposed.error_message();
  EXPECT_EQ(after.term(), next_term);
  watch.Stop();
  for (const auto& [term, names] : watch.leaders()) {
    EXPECT_EQ(names.size(), 1u) << "term " << term << " had " << names.size() << " leaders";
  }
  EXPECT_GE(watch.leaders().size(), 2u) << "the watch saw both coordinators";
}

TEST_F(ElectionThreeTest, LeaderCommandOverTcpNeedsACertificateFromTheFleetCa) {
  int leader = StartGroup(3);
  ASSERT_GE(leader, 0);
  int asked = (leader + 1) % 3;
  auto ctl = [&](const std::string& pki) {
    return RunCtl({"leader", "--agent", cluster_->Address(asked), "--ca",
                   cluster_->pki() + "/ca.pem", "--cert", pki + "/cp-1.pem", "--key",
                   pki + "/cp-1.key", "--server-name", cluster_->Name(asked)});
  };
  absl::StatusOr<SubprocessResult> ok = ctl(cluster_->pki());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->exit_code, 0) << ok->stdout_text << ok->stderr_text;
  EXPECT_THAT(ok->stdout_text, HasSubstr("coordinator " + cluster_->Name(leader)));

  std::string other = dir_.File("other-pki");
  ASSERT_TRUE(MakeCertificates(other, {"cp-1"}));
  absl::StatusOr<SubprocessResult> refused = ctl(other);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->exit_code, 1);
  EXPECT_THAT(refused->stdout_text, HasSubstr("AGENT_UNREACHABLE"));
}

// The bad-input cases: each is refused with a log line naming the peer and
// leaves the agent's term and plan as they were.
class HostilePeerTest : public ElectionFixture {
 protected:
  void SetUp() override {
    leader_ = StartGroup(3, learners_);
    ASSERT_GE(leader_, 0);
    victim_ = (leader_ + 1) % 3;
    // Wait until the leader's first record has committed on the victim too;
    // otherwise that commit arriving later looks like a state change.
    ASSERT_TRUE(WaitUntil(
        [&] {
          std::optional<v1::LeaderView> v = cluster_->View(victim_);
          return v && v->term() > 0 && v->committed().term() == v->term();
        },
        std::chrono::seconds(10)));
    before_ = *cluster_->View(victim_);
  }
  void ExpectUnchanged() {
    std::optional<v1::LeaderView> after = cluster_->View(victim_);
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->term(), before_.term());
    EXPECT_EQ(after->leader(), before_.leader());
    EXPECT_EQ(after->committed().SerializeAsString(),
              before_.committed().SerializeAsString());
  }
  grpc::Status SendAs(const std::string& cert, const v1::PeerMessage& m,
                      const std::string& pki_dir = "") {
    return SendTo(victim_, cert, m, pki_dir);
  }
  grpc::Status SendTo(int to, const std::string& cert, const v1::PeerMessage& m,
                      const std::string& pki_dir = "") {
    auto stub = cluster_->PeerClient(to, cert, pki_dir);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    v1::SendReply reply;
    return stub->Send(&context, m, &reply);
  }
  v1::PeerMessage Append(const std::string& from, uint64_t term) {
    v1::PeerMessage m;
    m.set_type(v1::APPEND);
    m.set_from(from);
    m.set_to(cluster_->Name(victim_));
    m.set_term(term);
    m.mutable_record()->set_term(term);
    m.mutable_record()->set_index(1000);
    m.mutable_record()->set_in_flight(cluster_->Name(victim_));
    return m;
  }

  int learners_ = 0;  // members after the voters that never run
  int leader_ = -1;
  int victim_ = -1;
  v1::LeaderView before_;
};

TEST_F(HostilePeerTest, CertificateForAnotherNodeCannotSpeakForTheLeader) {
  int third = 3 - leader_ - victim_;
  grpc::Status s = SendAs(cluster_->Name(third), Append(cluster_->Name(leader_), 99));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "PEER_IDENTITY_MISMATCH");
  ExpectUnchanged();
  EXPECT_THAT(cluster_->Log(victim_),
              HasSubstr("claimed=" + cluster_->Name(leader_) +
                        " certified=" + cluster_->Name(third)));
}

TEST_F(HostilePeerTest, NonMemberWithFarFutureTermIsRefused) {
  ASSERT_TRUE(MakeCertificates(cluster_->pki(), {"cp-9"}));
  grpc::Status s = SendAs("cp-9", Append("cp-9", 1'000'000'000));
  // Refused at the door since issue 8 §3: the certificate names no member.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "UNKNOWN_CALLER");
  v1::ReleaseRequest request;
  request.mutable_fence()->set_term(1'000'000'000);
  request.mutable_fence()->set_in_flight(cluster_->Name(victim_));
  auto stub = cluster_->PeerClient(victim_, "cp-9");
  grpc::ClientContext context;
  v1::ReleaseReply reply;
  EXPECT_EQ(stub->Release(&context, request, &reply).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ExpectUnchanged();
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("certified=cp-9 reason=UNKNOWN_CALLER"));
}

TEST_F(HostilePeerTest, NobodyCanMakeUpAFenceFromAFutureTerm) {
  v1::Fence forged;
  forged.set_term(before_.term() + 1000);
  forged.set_index(1);
  forged.set_in_flight(cluster_->Name(victim_));
  grpc::Status s = Swap(victim_, forged);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "UNKNOWN_FENCE");
  ExpectUnchanged();
  EXPECT_EQ(cluster_->View(victim_)->highest_fence_term(), before_.highest_fence_term());
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("swap command refused"));
}

// Issue 8 §1: the term and committed index are public (GetLeader), so a
// caller can forge {current term, committed index + 1, its own node}. No
// node has seen that record committed, so none may act on it while the
// plan puts another node in flight.
TEST_F(HostilePeerTest, ForgedFenceForTheNextRecordIsRefusedEndToEnd) {
  int third = 3 - leader_ - victim_;
  v1::Fence fence;
  grpc::Status proposed = Propose(leader_, cluster_->Name(third), "upgrade-third", &fence);
  ASSERT_TRUE(proposed.ok()) << proposed.error_message();
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::optional<v1::LeaderView> v = cluster_->View(victim_);
        return v && v->committed().index() == fence.index();
      },
      std::chrono::seconds(10)))
      << "the victim never learned the commit";

  v1::Fence forged = fence;
  forged.set_index(fence.index() + 1);
  forged.set_in_flight(cluster_->Name(victim_));
  grpc::Status s = Swap(victim_, forged);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "UNKNOWN_FENCE") << s.error_message();

  v1::Fence claimed = fence;  // the real record, claimed for the victim
  claimed.set_in_flight(cluster_->Name(victim_));
  grpc::Status c = Swap(victim_, claimed);
  EXPECT_EQ(ReasonOf(c), "NOT_IN_FLIGHT") << c.error_message();
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("swap command refused"));

  grpc::Status real = SwapOnceKnown(third, fence);
  EXPECT_EQ(ReasonOf(real), "NOT_STAGED") << "the real fence is admitted: "
                                          << real.error_message();
}

TEST_F(HostilePeerTest, CertificateFromAnotherCaIsRefusedAtTheHandshake) {
  std::string other = dir_.File("other-pki");
  ASSERT_TRUE(MakeCertificates(other, {cluster_->Name(leader_)}, "ca"));
  grpc::Status s = SendAs(cluster_->Name(leader_), Append(cluster_->Name(leader_), 99), other);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  ExpectUnchanged();
}

// A voter's certificate may speak for itself, but not lead a term that
// another voter won.
TEST_F(HostilePeerTest, AnAppendAtATermAnotherVoterLeadsIsRefused) {
  int third = 3 - leader_ - victim_;
  grpc::Status s = SendAs(cluster_->Name(third), Append(cluster_->Name(third), before_.term()));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(ReasonOf(s), "MALFORMED_MESSAGE") << s.error_message();
  ExpectUnchanged();
}

// The group's fourth member, cp-4, is a learner that never runs here: the
// attacker holds its certificate.
class HostileLearnerTest : public HostilePeerTest {
 protected:
  HostileLearnerTest() { learners_ = 1; }
  const std::string learner_ = "cp-4";
};

TEST_F(HostileLearnerTest, ALearnerCanNeitherLeadNorCampaign) {
  v1::PeerMessage timeout_now = Append(learner_, before_.term());
  timeout_now.set_type(v1::TIMEOUT_NOW);
  v1::PeerMessage vote = Append(learner_, before_.term() + 5);
  vote.set_type(v1::VOTE);
  for (const v1::PeerMessage& m : {Append(learner_, before_.term() + 5), timeout_now, vote}) {
    grpc::Status s = SendAs(learner_, m);
    EXPECT_FALSE(s.ok()) << m.type();
    EXPECT_EQ(ReasonOf(s), "UNKNOWN_PEER") << m.type() << ": " << s.error_message();
  }
  ExpectUnchanged();
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("sent a message only a voter may send"));
}

// A hand-off query binds the node it asks: a released answer makes it
// refuse swaps at or below that fence. A learner's certificate asking first
// used to leave the coordinator's own swap refused STALE_FENCE.
TEST_F(HostileLearnerTest, ALearnerCannotAskForAHandOff) {
  v1::Fence fence;
  grpc::Status proposed = Propose(leader_, cluster_->Name(victim_), "learner-asks", &fence);
  ASSERT_TRUE(proposed.ok()) << proposed.error_message();
  auto release_as = [&](const std::string& cert) {
    auto stub = cluster_->PeerClient(victim_, cert);
    grpc::Status s;
    // As a coordinator asks: the victim may not have heard of the commit yet.
    for (int n = 0; n < 40; ++n) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      v1::ReleaseRequest request;
      *request.mutable_fence() = fence;
      v1::ReleaseReply reply;
      s = stub->Release(&context, request, &reply);
      if (ReasonOf(s) != "UNKNOWN_FENCE") break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return s;
  };
  grpc::Status s = release_as(learner_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_EQ(ReasonOf(s), "VOTER_ONLY") << s.error_message();
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("caller=" + learner_));
  // The coordinator's swap under that fence still reaches the executor.
  EXPECT_EQ(ReasonOf(SwapOnceKnown(victim_, fence)), "NOT_STAGED");
  EXPECT_NE(ReasonOf(release_as(cluster_->Name(leader_))), "VOTER_ONLY");
}

// An answer at the largest term used to depose the leader and leave the
// group no term to elect anyone in.
TEST_F(HostileLearnerTest, ALearnersAnswerFromAFarFutureTermIsDropped) {
  for (v1::MessageType type : {v1::APPEND_RESP, v1::VOTE_RESP, v1::PRE_VOTE_RESP}) {
    v1::PeerMessage answer = Append(learner_, std::numeric_limits<uint64_t>::max());
    answer.set_type(type);
    answer.set_to(cluster_->Name(leader_));
    answer.set_reject(true);
    grpc::Status s = SendTo(leader_, learner_, answer);
    EXPECT_TRUE(s.ok()) << type << ": " << s.error_message();
  }
  std::optional<v1::LeaderView> leader = cluster_->View(leader_);
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->term(), before_.term());
  EXPECT_EQ(leader->leader(), cluster_->Name(leader_));
  v1::Fence fence;
  grpc::Status proposed = Propose(leader_, cluster_->Name(victim_), "after-the-forgery", &fence);
  EXPECT_TRUE(proposed.ok()) << proposed.error_message();
  EXPECT_EQ(fence.term(), before_.term()) << "the leader went on in its own term";
}

TEST_F(HostilePeerTest, MalformedMessagesAreRefused) {
  v1::PeerMessage unknown_type = Append(cluster_->Name(leader_), 99);
  unknown_type.set_type(static_cast<v1::MessageType>(42));
  grpc::Status s = SendAs(cluster_->Name(leader_), unknown_type);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ReasonOf(s), "MALFORMED_MESSAGE");
  EXPECT_THAT(cluster_->Log(victim_), HasSubstr("peer message refused"));

  // Bytes that are no PeerMessage at all never reach the machine.
  grpc::GenericStub stub(cluster_->PeerChannel(victim_, cluster_->Name(leader_)));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  grpc::Slice garbage(std::string("\xff\xff\xff\xff\x0f garbage", 13));
  grpc::ByteBuffer request(&garbage, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<grpc::Status> status;
  stub.UnaryCall(&context, "/kmsfleet.v1.Peer/Send", grpc::StubOptions(), &request,
                 &response, [&](grpc::Status result) {
                   std::lock_guard lock(mu);
                   status = result;
                   cv.notify_all();
                 });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return status.has_value(); });
  EXPECT_FALSE(status->ok());
  ExpectUnchanged();
}

// Issue 8 §2: a node whose last operation ended RollbackFailed (its unit
// left as it is, the provider possibly down) keeps the in-flight slot. The
// journal is planted before the agents start, as a previous run of the
// executor would have left it; no systemd is needed.
TEST_F(ElectionThreeTest, NodeWhoseRollbackFailedIsNotHandedOffEndToEnd) {
  cluster_ = std::make_unique<ElectionCluster>(dir_, 3);
  for (int i : All()) {
    SwapJournal j;
    j.operation_id = "op-earlier";
    j.phase = SwapPhase::kRollbackFailed;
    j.open = false;
    j.failure_reason = "UNIT_FAILED";
    j.started_unix_ms = j.updated_unix_ms = 1000;
    std::string journal_dir = dir_.File(cluster_->Name(i) + "/state/journal");
    std::filesystem::create_directories(journal_dir);
    WriteFile(journal_dir + "/op-earlier.json", SerializeJournal(j));
  }
  cluster_->StartAll();
  int leader = cluster_->WaitForLeader(All());
  ASSERT_GE(leader, 0);
  int held = (leader + 1) % 3;
  int next = (leader + 2) % 3;
  v1::Fence fence;
  grpc::Status first = Propose(leader, cluster_->Name(held), "upgrade-held", &fence);
  ASSERT_TRUE(first.ok()) << first.error_message();

  grpc::Status moved = Propose(leader, cluster_->Name(next), "upgrade-next", nullptr);
  EXPECT_EQ(moved.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << moved.error_message();
  EXPECT_EQ(ReasonOf(moved), "NOT_RELEASABLE") << moved.error_message();
  EXPECT_THAT(moved.error_message(), HasSubstr("HANDOFF_ROLLBACK_FAILED"));
  EXPECT_THAT(moved.error_message(), HasSubstr("op-earlier"));
  std::optional<v1::LeaderView> v = cluster_->View(leader);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->committed().in_flight(), cluster_->Name(held)) << "the slot stays";
  EXPECT_THAT(cluster_->Log(held), HasSubstr("hand-off withheld"));
}

}  // namespace
}  // namespace kmsfleet::testing
