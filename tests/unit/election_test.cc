// The election machine, one Raft rule per test (architecture.md §6; Raft
// paper sections cited where a rule comes from).
#include "kmsfleet/core/election.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/fence_guard.h"

#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <optional>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

// Pins every randomized timeout to `lo + offset`, so tests choose who
// times out first.
class PinnedRandom final : public ElectionRandom {
 public:
  explicit PinnedRandom(int offset = 0) : offset_(offset) {}
  int64_t Uniform(int64_t lo, int64_t hi) override {
    return std::min<int64_t>(lo + offset_, hi);
  }

 private:
  int offset_;
};

// A few machines and a mailbox; messages move only when a test says so.
class Group {
 public:
  Group(std::vector<std::string> voters, std::vector<std::string> learners = {}) {
    int offset = 0;
    for (const auto* list : {&voters, &learners}) {
      for (const std::string& name : *list) {
        randoms_[name] = std::make_unique<PinnedRandom>(offset++);
        ElectionConfig config{.self = name, .voters = voters, .learners = learners};
        nodes_[name] = std::make_unique<ElectionMachine>(config, v1::HardState(),
                                                         *randoms_[name]);
      }
    }
  }

  ElectionMachine& operator[](const std::string& name) { return *nodes_.at(name); }

  void Collect(const ElectionReady& ready) {
    for (const auto& m : ready.messages) mailbox_.push_back(m);
  }
  // Ticks `name` until it has sent something (its election timeout).
  void TickUntilCampaign(const std::string& name) {
    for (int i = 0; i < 100; ++i) {
      ElectionReady r = nodes_.at(name)->Tick();
      bool sent = !r.messages.empty();
      Collect(r);
      if (sent || nodes_.at(name)->role() == Role::kLeader) return;
    }
  }
  // Delivers messages until none is left, skipping those to or from `cut`.
  void Stabilize(const std::set<std::string>& cut = {}) {
    while (!mailbox_.empty()) {
      v1::PeerMessage m = mailbox_.front();
      mailbox_.pop_front();
      if (cut.contains(m.to()) || cut.contains(m.from())) continue;
      absl::StatusOr<ElectionReady> r = nodes_.at(m.to())->Step(m);
      ASSERT_TRUE(r.ok()) << r.status();
      Collect(*r);
    }
  }
  // Proposes on `leader` and queues what it sends.
  absl::Status Propose(const std::string& leader, std::string_view in_flight,
                       std::string_view payload) {
    absl::StatusOr<ElectionReady> r = nodes_.at(leader)->Propose(in_flight, payload);
    if (r.ok()) Collect(*r);
    return r.status();
  }
  std::deque<v1::PeerMessage>& mailbox() { return mailbox_; }
  // The last queued message to `to` of `type`, if any.
  std::optional<v1::PeerMessage> Queued(const std::string& to, v1::MessageType type) const {
    std::optional<v1::PeerMessage> found;
    for (const v1::PeerMessage& m : mailbox_) {
      if (m.to() == to && m.type() == type) found = m;
    }
    return found;
  }

 private:
  std::map<std::string, std::unique_ptr<PinnedRandom>> randoms_;
  std::map<std::string, std::unique_ptr<ElectionMachine>> nodes_;
  std::deque<v1::PeerMessage> mailbox_;
};

v1::PeerMessage Msg(v1::MessageType type, std::string from, std::string to,
                    uint64_t term) {
  v1::PeerMessage m;
  m.set_type(type);
  m.set_from(std::move(from));
  m.set_to(std::move(to));
  m.set_term(term);
  return m;
}

Group ElectedThree() {
  Group g({"a", "b", "c"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  return g;
}

TEST(ElectionTest, SingleVoterElectsItselfAndCommitsItsFirstRecordAtOnce) {
  PinnedRandom random;
  ElectionMachine m({.self = "a", .voters = {"a"}}, v1::HardState(), random);
  ElectionReady r;
  for (int i = 0; i < 20 && m.role() != Role::kLeader; ++i) r = m.Tick();
  ASSERT_EQ(m.role(), Role::kLeader);
  EXPECT_EQ(m.term(), 1u);
  ASSERT_TRUE(r.committed.has_value());
  EXPECT_EQ(r.committed->term(), 1u);
  ASSERT_TRUE(r.hard_state.has_value());
  EXPECT_EQ(r.hard_state->committed().index(), 1u);
}

TEST(ElectionTest, ThreeVotersElectTheFirstToTimeOutAndCommitItsRecord) {
  Group g = ElectedThree();
  EXPECT_EQ(g["a"].role(), Role::kLeader);
  EXPECT_EQ(g["b"].leader(), "a");
  EXPECT_EQ(g["c"].leader(), "a");
  for (const char* n : {"a", "b", "c"}) {
    EXPECT_EQ(g[n].term(), 1u) << n;
    EXPECT_EQ(g[n].committed().index(), 1u) << n;
  }
  ASSERT_TRUE(g["a"].CurrentFence().has_value());
  EXPECT_EQ(g["a"].CurrentFence()->term(), 1u);
}

// Raft §5.4.1: a voter refuses a candidate whose record is older.
TEST(ElectionTest, VoteIsRefusedToCandidateWithOlderRecord) {
  PinnedRandom random;
  v1::HardState persisted;
  persisted.set_term(1);
  persisted.mutable_record()->set_term(1);
  persisted.mutable_record()->set_index(1);
  ElectionMachine b({.self = "b", .voters = {"a", "b", "c"}}, persisted, random);
  v1::PeerMessage vote = Msg(v1::VOTE, "c", "b", 5);
  vote.mutable_record()->set_term(1);
  vote.mutable_record()->set_index(0);
  ElectionReady r = *b.Step(vote);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_TRUE(r.messages[0].reject());
  EXPECT_EQ(b.term(), 5u) << "the higher term is still adopted";
  EXPECT_TRUE(b.hard_state().voted_for().empty());
  vote.mutable_record()->set_index(1);
  EXPECT_FALSE(b.Step(vote)->messages.at(0).reject()) << "as new is enough";
}

TEST(ElectionTest, VoteIsGrantedOncePerTermAndPersistedBeforeTheAnswer) {
  PinnedRandom random;
  ElectionMachine b({.self = "b", .voters = {"a", "b", "c"}}, v1::HardState(), random);
  ElectionReady first = *b.Step(Msg(v1::VOTE, "a", "b", 1));
  ASSERT_TRUE(first.hard_state.has_value());
  EXPECT_EQ(first.hard_state->voted_for(), "a");
  EXPECT_EQ(first.hard_state->term(), 1u);
  EXPECT_FALSE(first.messages.at(0).reject());
  ElectionReady second = *b.Step(Msg(v1::VOTE, "c", "b", 1));
  EXPECT_TRUE(second.messages.at(0).reject());
  EXPECT_EQ(b.hard_state().voted_for(), "a");
}

TEST(ElectionTest, RestartedVoterKeepsItsVoteFromPersistedState) {
  PinnedRandom random;
  ElectionConfig config{.self = "b", .voters = {"a", "b", "c"}};
  v1::HardState persisted;
  {
    ElectionMachine b(config, v1::HardState(), random);
    persisted = *b.Step(Msg(v1::VOTE, "a", "b", 1))->hard_state;
  }
  ElectionMachine restarted(config, persisted, random);
  ElectionReady r = *restarted.Step(Msg(v1::VOTE, "c", "b", 1));
  EXPECT_TRUE(r.messages.at(0).reject());
}

// Raft §5.1: a message with a higher term makes any node a follower at it.
TEST(ElectionTest, HigherTermAppendTurnsLeaderIntoFollowerOfTheSender) {
  Group g = ElectedThree();
  v1::PeerMessage append = Msg(v1::APPEND, "b", "a", 7);
  append.mutable_record()->set_term(7);
  append.mutable_record()->set_index(2);
  ElectionReady r = *g["a"].Step(append);
  EXPECT_EQ(g["a"].role(), Role::kFollower);
  EXPECT_EQ(g["a"].term(), 7u);
  EXPECT_EQ(g["a"].leader(), "b");
  ASSERT_TRUE(r.hard_state.has_value());
  EXPECT_EQ(r.hard_state->term(), 7u);
}

TEST(ElectionTest, StaleLeaderIsToldTheNewTermAndStepsDown) {
  Group g = ElectedThree();
  // b and c elect a new leader while a is cut off.
  g.mailbox().clear();
  for (int i = 0; i < 30 && g["b"].role() != Role::kLeader &&
                  g["c"].role() != Role::kLeader; ++i) {
    g.Collect(g["c"].Tick());
    g.Collect(g["b"].Tick());
    g.Stabilize({"a"});
  }
  ASSERT_GT(g["b"].term(), 1u);
  // a's heartbeat at term 1 reaches b, whose answer carries the new term.
  ElectionReady hb = *g["b"].Step(Msg(v1::APPEND, "a", "b", 1));
  ASSERT_EQ(hb.messages.size(), 1u);
  EXPECT_EQ(hb.messages[0].term(), g["b"].term());
  ASSERT_TRUE(g["a"].Step(hb.messages[0]).ok());
  EXPECT_EQ(g["a"].role(), Role::kFollower);
  EXPECT_FALSE(g["a"].CurrentFence().has_value());
}

// Raft thesis §9.6: PreVote keeps a rejoining node from disrupting.
TEST(ElectionTest, PreVoteFromCutOffNodeNeitherRaisesTermsNorDeposesLeader) {
  Group g = ElectedThree();
  g.mailbox().clear();
  // c is cut off long enough to time out several times.
  for (int i = 0; i < 60; ++i) {
    g.Collect(g["a"].Tick());
    g.Collect(g["b"].Tick());
    g.Collect(g["c"].Tick());
    g.Stabilize({"c"});
  }
  EXPECT_EQ(g["c"].term(), 1u) << "a pre-candidate never raises its term";
  // c rejoins: its pre-votes reach a and b.
  g.Collect(g["c"].Tick());
  for (int i = 0; i < 30; ++i) {
    g.Collect(g["c"].Tick());
    g.Collect(g["a"].Tick());
    g.Stabilize();
  }
  EXPECT_EQ(g["a"].role(), Role::kLeader);
  EXPECT_EQ(g["a"].term(), 1u);
  EXPECT_EQ(g["b"].term(), 1u);
  EXPECT_EQ(g["c"].leader(), "a");
}

// Split votes (election_step.cc, GrantsPreVote): two followers that time
// out together must not both campaign, or nobody wins for a whole timeout.
TEST(ElectionTest, SimultaneousPreCandidatesBreakTheTieByNameWithoutASplitVote) {
  Group g = ElectedThree();
  g.mailbox().clear();
  // The leader a dies; b and c both time out before hearing each other.
  g.TickUntilCampaign("b");
  g.TickUntilCampaign("c");
  ASSERT_EQ(g["b"].role(), Role::kPreCandidate);
  ASSERT_EQ(g["c"].role(), Role::kPreCandidate);
  g.Stabilize({"a"});
  EXPECT_EQ(g["b"].role(), Role::kLeader) << "b < c: c grants b and stands down";
  EXPECT_EQ(g["b"].term(), 2u) << "one election, not a split and a second one";
  EXPECT_EQ(g["c"].leader(), "b");
  EXPECT_EQ(g["c"].term(), 2u);
}

TEST(ElectionTest, PreVoteGrantHoldsOffTheGrantersCampaignAndRivalPreVotes) {
  Group g = ElectedThree();
  g.mailbox().clear();
  // c is past a's lease but not yet at its own timeout (12 ticks) ...
  for (int i = 0; i < 11; ++i) g.Collect(g["c"].Tick());
  ASSERT_EQ(g["c"].role(), Role::kFollower);
  // ... when b's pre-vote reaches it.
  g.TickUntilCampaign("b");
  std::optional<v1::PeerMessage> to_c = g.Queued("c", v1::PRE_VOTE);
  ASSERT_TRUE(to_c.has_value());
  absl::StatusOr<ElectionReady> granted = g["c"].Step(*to_c);
  ASSERT_TRUE(granted.ok());
  ASSERT_EQ(granted->messages.size(), 1u);
  EXPECT_FALSE(granted->messages[0].reject());

  v1::PeerMessage rival = Msg(v1::PRE_VOTE, "a", "c", to_c->term());
  *rival.mutable_record() = g["c"].record();
  absl::StatusOr<ElectionReady> declined = g["c"].Step(rival);
  ASSERT_TRUE(declined.ok());
  EXPECT_TRUE(declined->messages.empty()) << "a rival for the same term is not answered";

  // c's own timeout (12) passes at the next tick, but it holds off for two
  // heartbeat intervals after the grant (until 11 + 2 * 1).
  int ticks = 0;
  while (g["c"].role() == Role::kFollower && ticks < 20) {
    g["c"].Tick();
    ++ticks;
  }
  EXPECT_EQ(ticks, 2);
  EXPECT_EQ(g["c"].role(), Role::kPreCandidate);
}

TEST(ElectionTest, TieBreakWinnerResendsThePreVoteItsRivalDroppedInLease) {
  Group g = ElectedThree();
  g.mailbox().clear();
  for (int i = 0; i < 9; ++i) g["c"].Tick();  // c still inside a's lease
  g.TickUntilCampaign("b");
  g.Stabilize({"a"});  // c drops b's pre-vote
  ASSERT_EQ(g["c"].role(), Role::kFollower);
  g.TickUntilCampaign("c");  // moments later c times out too
  ASSERT_EQ(g["c"].role(), Role::kPreCandidate);
  std::optional<v1::PeerMessage> to_b = g.Queued("b", v1::PRE_VOTE);
  ASSERT_TRUE(to_b.has_value());
  absl::StatusOr<ElectionReady> r = g["b"].Step(*to_b);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->messages.size(), 1u) << "no answer to c, but b's request again";
  EXPECT_EQ(r->messages[0].type(), v1::PRE_VOTE);
  EXPECT_EQ(r->messages[0].to(), "c");
  g.mailbox().clear();
  g.Collect(*r);
  g.Stabilize({"a"});
  EXPECT_EQ(g["b"].role(), Role::kLeader);
  EXPECT_EQ(g["b"].term(), 2u);
  EXPECT_EQ(g["c"].leader(), "b");
}

TEST(ElectionTest, PreCandidateLeftWithoutAnswersYieldsToALaterRival) {
  Group g = ElectedThree();
  g.mailbox().clear();
  g.TickUntilCampaign("b");
  // b's pre-vote reaches c while c still hears a (in lease): dropped.
  g.Stabilize({"a"});
  ASSERT_EQ(g["b"].role(), Role::kPreCandidate);
  g["b"].Tick();
  g["b"].Tick();  // two heartbeat intervals without a quorum
  g.TickUntilCampaign("c");
  g.Stabilize({"a"});
  EXPECT_EQ(g["c"].role(), Role::kLeader) << "b < c, but b's own round had failed";
  EXPECT_EQ(g["c"].term(), 2u);
  EXPECT_EQ(g["b"].leader(), "c");
}

TEST(ElectionTest, FollowerRefusingAStaleCandidatesPreVoteCampaignsAtOnce) {
  Group g = ElectedThree();
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "", "only a and b hold this").ok());
  g.Stabilize({"c"});
  ASSERT_EQ(g["b"].committed().payload(), "only a and b hold this");
  // a dies; b is past the lease but short of its timeout (11) when c,
  // whose record is older, asks for a pre-vote.
  for (int i = 0; i < 10; ++i) g.Collect(g["b"].Tick());
  ASSERT_EQ(g["b"].role(), Role::kFollower);
  g.TickUntilCampaign("c");
  std::optional<v1::PeerMessage> to_b = g.Queued("b", v1::PRE_VOTE);
  ASSERT_TRUE(to_b.has_value());
  absl::StatusOr<ElectionReady> r = g["b"].Step(*to_b);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(g["b"].role(), Role::kPreCandidate) << "b, up to date, campaigns now";
  g.Collect(*r);
  g.Stabilize({"a"});
  EXPECT_EQ(g["b"].role(), Role::kLeader);
  EXPECT_EQ(g["c"].leader(), "b");
  EXPECT_EQ(g["c"].committed().payload(), "only a and b hold this");
}

TEST(ElectionTest, CheckQuorumLeaderStepsDownWhenMajorityIsSilent) {
  Group g = ElectedThree();
  g.mailbox().clear();
  for (int i = 0; i < 25; ++i) g["a"].Tick();  // nobody answers
  EXPECT_EQ(g["a"].role(), Role::kFollower);
  EXPECT_EQ(g["a"].term(), 1u);
  EXPECT_FALSE(g["a"].CurrentFence().has_value());
}

TEST(ElectionTest, RecordCommitsOnlyWithMajorityOfVoters) {
  Group g({"a", "b", "c", "d", "e"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "b", "plan-2").ok());
  auto ack = [&](const std::string& from) {
    v1::PeerMessage m = Msg(v1::APPEND_RESP, from, "a", g["a"].term());
    m.mutable_record()->set_term(g["a"].record().term());
    m.mutable_record()->set_index(g["a"].record().index());
    return *g["a"].Step(m);
  };
  EXPECT_FALSE(ack("b").committed.has_value()) << "2 of 5 is no majority";
  EXPECT_FALSE(ack("b").committed.has_value()) << "a duplicate is not a vote";
  ElectionReady third = ack("c");
  ASSERT_TRUE(third.committed.has_value());
  EXPECT_EQ(third.committed->payload(), "plan-2");
  EXPECT_EQ(third.committed->in_flight(), "b");
}

TEST(ElectionTest, LearnersNeverVoteNorCampaign) {
  Group g({"a", "b", "c"}, {"l"});
  for (int i = 0; i < 100; ++i) g.Collect(g["l"].Tick());
  EXPECT_TRUE(g.mailbox().empty()) << "a learner never campaigns";
  ElectionReady r = *g["l"].Step(Msg(v1::VOTE, "a", "l", 3));
  EXPECT_TRUE(r.messages.at(0).reject());
  EXPECT_TRUE(g["l"].hard_state().voted_for().empty());

}

TEST(ElectionTest, LearnerAcknowledgementDoesNotCommit) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  g.Stabilize({"c"});
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  ASSERT_TRUE(g.Propose("a", "", "p2").ok());
  g.Stabilize({"b", "c"});  // only the learner acknowledges
  EXPECT_EQ(g["l"].record().payload(), "p2");
  EXPECT_NE(g["a"].committed().payload(), "p2");
}

TEST(ElectionTest, LearnerFollowsTheLeadersCommittedRecord) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  EXPECT_EQ(g["l"].leader(), "a");
  EXPECT_EQ(g["l"].committed().index(), g["a"].committed().index());
}

// A learner's certificate speaks for a member that can neither lead nor
// campaign: it must not make a voter follow it and adopt a record as
// committed (a fence for a swap), raise the term, or start an election.
TEST(ElectionTest, ALearnerCanNeitherLeadNorCampaign) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  const v1::HardState before = g["b"].hard_state();
  const v1::PlanRecord committed = g["b"].committed();
  v1::PeerMessage append = Msg(v1::APPEND, "l", "b", before.term() + 1);
  append.mutable_record()->set_term(before.term() + 1);
  append.mutable_record()->set_index(9);
  append.mutable_record()->set_in_flight("b");
  *append.mutable_committed() = append.record();
  for (v1::PeerMessage m : {append, Msg(v1::TIMEOUT_NOW, "l", "b", before.term()),
                            Msg(v1::VOTE, "l", "b", before.term() + 5),
                            Msg(v1::PRE_VOTE, "l", "b", before.term() + 5)}) {
    absl::StatusOr<ElectionReady> r = g["b"].Step(m);
    EXPECT_EQ(ReasonOf(r.status()), reason::kUnknownPeer) << m.type();
  }
  EXPECT_EQ(g["b"].hard_state().SerializeAsString(), before.SerializeAsString());
  EXPECT_EQ(g["b"].committed().SerializeAsString(), committed.SerializeAsString());
  EXPECT_EQ(g["b"].leader(), "a");
  EXPECT_EQ(g["b"].role(), Role::kFollower);
}

// Nor may its answers raise the term: a forged answer from a far-future
// term would depose the leader, and one at the largest term would leave
// the group no term to elect anyone in. A real learner's answer from a
// later term reaches only a deposed leader, which the voters depose too.
TEST(ElectionTest, ALearnersAnswerFromALaterTermChangesNothing) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  for (const char* to : {"a", "b"}) {
    const v1::HardState before = g[to].hard_state();
    const Role role = g[to].role();
    for (v1::MessageType type : {v1::APPEND_RESP, v1::VOTE_RESP, v1::PRE_VOTE_RESP}) {
      for (uint64_t term : {before.term() + 1, std::numeric_limits<uint64_t>::max()}) {
        v1::PeerMessage m = Msg(type, "l", to, term);
        m.set_reject(true);
        absl::StatusOr<ElectionReady> r = g[to].Step(m);
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_FALSE(r->hard_state.has_value()) << to << " " << type << " " << term;
      }
    }
    EXPECT_EQ(g[to].hard_state().SerializeAsString(), before.SerializeAsString()) << to;
    EXPECT_EQ(g[to].role(), role) << to;
    EXPECT_EQ(g[to].leader(), "a") << to;
  }
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  EXPECT_EQ(g["b"].committed().payload(), "swap b") << "the leader goes on";
}

// Each leader of a term won a majority of single votes, so there is one:
// an append at the term from another voter than its leader is forged (a
// voter's certificate speaking out of turn), and changes nothing.
TEST(ElectionTest, AnAppendFromASecondLeaderInOneTermIsRefused) {
  Group g = ElectedThree();
  const uint64_t term = g["b"].term();
  const v1::PlanRecord committed = g["b"].committed();
  v1::PeerMessage forged = Msg(v1::APPEND, "c", "b", term);
  forged.mutable_record()->set_term(term);
  forged.mutable_record()->set_index(committed.index() + 1);
  forged.mutable_record()->set_in_flight("b");
  *forged.mutable_committed() = forged.record();
  EXPECT_EQ(ReasonOf(g["b"].Step(forged).status()), reason::kMalformedMessage);
  EXPECT_EQ(g["b"].leader(), "a");
  EXPECT_EQ(g["b"].committed().SerializeAsString(), committed.SerializeAsString());
  EXPECT_EQ(ReasonOf(g["a"].Step(Msg(v1::APPEND, "c", "a", term)).status()),
            reason::kMalformedMessage);
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  EXPECT_EQ(g["b"].committed().payload(), "swap b") << "the real leader goes on";
}

TEST(ElectionTest, MessagesFromNonMembersOrMalformedChangeNothing) {
  PinnedRandom random;
  ElectionMachine b({.self = "b", .voters = {"a", "b", "c"}}, v1::HardState(), random);
  v1::HardState before = b.hard_state();
  absl::StatusOr<ElectionReady> far = b.Step(Msg(v1::APPEND, "mallory", "b", 1'000'000));
  EXPECT_EQ(ReasonOf(far.status()), reason::kUnknownPeer);
  EXPECT_NE(far.status().message().find("mallory"), std::string::npos);
  EXPECT_EQ(ReasonOf(b.Step(Msg(v1::APPEND, "a", "c", 2)).status()), reason::kUnknownPeer);
  EXPECT_EQ(ReasonOf(b.Step(Msg(v1::MessageType(42), "a", "b", 2)).status()),
            reason::kMalformedMessage);
  EXPECT_EQ(ReasonOf(b.Step(Msg(v1::APPEND, "a", "b", 0)).status()),
            reason::kMalformedMessage);
  v1::PeerMessage huge = Msg(v1::APPEND, "a", "b", 2);
  huge.mutable_record()->set_payload(std::string(kMaxPlanPayloadBytes + 1, 'x'));
  EXPECT_EQ(ReasonOf(b.Step(huge).status()), reason::kMalformedMessage);
  EXPECT_EQ(b.hard_state().SerializeAsString(), before.SerializeAsString());
}

TEST(ElectionTest, DelayedAppendFromSameTermDoesNotTakeBackARecord) {
  Group g = ElectedThree();
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "", "p2").ok());
  std::deque<v1::PeerMessage> first = g.mailbox();
  g.Stabilize();
  ASSERT_TRUE(g.Propose("a", "", "p3").ok());
  g.Stabilize();
  for (const auto& m : first) ASSERT_TRUE(g[m.to()].Step(m).ok());
  EXPECT_EQ(g["b"].record().payload(), "p3");
  EXPECT_EQ(g["b"].committed().payload(), "p3");
}

TEST(ElectionTest, ProposalWaitsForPreviousChangeToCommit) {
  Group g = ElectedThree();
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "", "p2").ok());
  absl::StatusOr<ElectionReady> again = g["a"].Propose("", "p3");
  EXPECT_EQ(ReasonOf(again.status()), reason::kPlanChangePending);
  EXPECT_EQ(ReasonOf(g["b"].Propose("", "x").status()), reason::kNotLeader);
  EXPECT_EQ(MetadataOf(g["b"].Propose("", "x").status(), "leader"), "a");
}

// A plan whose node in flight was edited out of cluster.voters: its every
// change names that node, so the refusal must say so and what to do, not
// call the coordinator's own record malformed.
TEST(ElectionTest, AChangeNamingANodeOutsideTheGroupInFlightIsRefusedAsMembersChanged) {
  Group g = ElectedThree();
  g.mailbox().clear();
  const std::string before = g["a"].committed().SerializeAsString();
  absl::StatusOr<ElectionReady> removed = g["a"].Propose("d", "abort");
  EXPECT_EQ(ReasonOf(removed.status()), reason::kPlanMembersChanged);
  EXPECT_EQ(removed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(removed.status().message().find("'d'"), std::string::npos)
      << removed.status().message();
  EXPECT_NE(removed.status().message().find("cluster.voters"), std::string::npos);
  absl::StatusOr<ElectionReady> huge =
      g["a"].Propose("b", std::string(kMaxPlanPayloadBytes + 1, 'x'));
  EXPECT_EQ(ReasonOf(huge.status()), reason::kMalformedMessage);
  EXPECT_TRUE(g.mailbox().empty()) << "nothing is sent for a refused change";
  EXPECT_EQ(g["a"].committed().SerializeAsString(), before);
  EXPECT_TRUE(g.Propose("a", "b", "swap b").ok()) << "a member in flight is proposed as before";
}

// Architecture §6 hand-off: a different node goes in flight only after the
// current one has answered at this term.
TEST(ElectionTest, HandOffToAnotherNodeNeedsReleaseAtCurrentTerm) {
  Group g = ElectedThree();
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  absl::StatusOr<ElectionReady> to_c = g["a"].Propose("c", "swap c");
  EXPECT_EQ(ReasonOf(to_c.status()), reason::kHandoffPending);
  EXPECT_EQ(to_c.status().code(), absl::StatusCode::kFailedPrecondition);
  g["a"].RecordRelease("b", g["a"].term() - 1, g["a"].committed().index(),
                       v1::HANDOFF_STABLE);
  EXPECT_FALSE(g.Propose("a", "c", "swap c").ok()) << "an old term is no answer";
  g["a"].RecordRelease("b", g["a"].term(), g["a"].committed().index(), v1::HANDOFF_STABLE);
  EXPECT_TRUE(g.Propose("a", "c", "swap c").ok());
}

// Found in review: the holder answers at record F while the coordinator
// proposes F2, still naming it (an operator's pause). The answer, taken
// before F2 commits, was kept past it, and the next node went in flight
// with no answer at F2, under which the holder would still admit a swap.
TEST(ElectionTest, AnAnswerTakenWhileANewerRecordIsPendingReleasesNothing) {
  Group g = ElectedThree();
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  const uint64_t asked_at = g["a"].committed().index();
  ASSERT_TRUE(g.Propose("a", "b", "swap b, paused").ok());  // F2: pending
  g["a"].RecordRelease("b", g["a"].term(), asked_at, v1::HANDOFF_STABLE);
  g.Stabilize();
  ASSERT_GT(g["a"].committed().index(), asked_at);
  EXPECT_EQ(ReasonOf(g["a"].Propose("c", "swap c").status()), reason::kHandoffPending);
  g["a"].RecordRelease("b", g["a"].term(), g["a"].committed().index(), v1::HANDOFF_STABLE);
  EXPECT_TRUE(g.Propose("a", "c", "swap c").ok()) << "an answer at F2 releases b";
}

// Issue 8 §2: an in-flight node whose provider may be down keeps the slot,
// whatever it answers at the current term.
TEST(ElectionTest, HandOffIgnoresAnswersThatDoNotLeaveTheProviderServing) {
  Group g = ElectedThree();
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  for (v1::HandoffOutcome outcome :
       {v1::HANDOFF_ROLLBACK_FAILED, v1::HANDOFF_JOURNAL_OPEN, v1::HANDOFF_UNKNOWN,
        v1::HANDOFF_RUNNING, v1::HANDOFF_OUTCOME_UNSPECIFIED}) {
    g["a"].RecordRelease("b", g["a"].term(), g["a"].committed().index(), outcome);
    EXPECT_EQ(ReasonOf(g["a"].Propose("c", "swap c").status()), reason::kHandoffPending)
        << v1::HandoffOutcome_Name(outcome);
  }
  g["a"].RecordRelease("b", g["a"].term(), g["a"].committed().index(),
                       v1::HANDOFF_ROLLED_BACK);
  EXPECT_TRUE(g.Propose("a", "c", "swap c").ok());
}

// Issue 3: "a swap command delayed across a leader change". The swap the
// old coordinator sent to b arrives after b handed its slot to the new
// coordinator, which already put c in flight: b must refuse it.
TEST(ElectionTest, SwapDelayedAcrossLeaderChangeIsRefusedAfterHandOff) {
  Group g = ElectedThree();
  ASSERT_TRUE(g.Propose("a", "b", "swap b").ok());
  g.Stabilize();
  v1::Fence held = *g["a"].CurrentFence();  // the swap to b is delayed
  FenceGuard b_guard("b", v1::FenceState());
  FenceGuard c_guard("c", v1::FenceState());

  // a is cut off; b and c elect a new coordinator.
  std::string next;
  for (int i = 0; i < 60 && next.empty(); ++i) {
    g.Collect(g["b"].Tick());
    g.Collect(g["c"].Tick());
    g.Stabilize({"a"});
    for (const char* n : {"b", "c"}) {
      if (g[n].role() == Role::kLeader && g[n].CurrentFence()) next = n;
    }
  }
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(ReasonOf(g.Propose(next, "c", "swap c")), reason::kHandoffPending);

  // The hand-off: b answers at the new term that it never started.
  v1::Fence now = *g[next].CurrentFence();
  EXPECT_EQ(now.in_flight(), "b") << "the committed plan survived the change";
  absl::StatusOr<v1::ReleaseReply> released = b_guard.AdmitRelease(
      now, g["b"].committed(), {v1::HANDOFF_NEVER_STARTED, ""});
  ASSERT_TRUE(released.ok()) << released.status();
  g[next].RecordRelease("b", now.term(), now.index(), released->outcome());
  ASSERT_TRUE(g.Propose(next, "c", "swap c").ok());
  g.Stabilize({"a"});
  v1::Fence to_c = *g[next].CurrentFence();
  ASSERT_EQ(to_c.in_flight(), "c");

  EXPECT_EQ(ReasonOf(b_guard.AdmitSwap(held, g["b"].committed())), reason::kStaleTerm);
  EXPECT_EQ(ReasonOf(b_guard.AdmitSwap(now, g["b"].committed())), reason::kStaleFence);
  EXPECT_EQ(ReasonOf(b_guard.AdmitSwap(to_c, g["b"].committed())), reason::kNotInFlight);
  EXPECT_TRUE(c_guard.AdmitSwap(to_c, g["c"].committed()).ok());
}

// ---- Leadership transfer (Raft thesis §3.10; issue 11). ----

// The messages queued to `to` of `type`.
int CountQueued(Group& g, const std::string& to, v1::MessageType type) {
  int n = 0;
  for (const v1::PeerMessage& m : g.mailbox()) n += m.to() == to && m.type() == type;
  return n;
}

TEST(ElectionTransferTest, UpToDateTargetIsToldAtOnceAndWinsTheNextTermKeepingTheRecord) {
  Group g = ElectedThree();
  ASSERT_TRUE(g.Propose("a", "b", "plan-1").ok());
  g.Stabilize();
  v1::PlanRecord committed = g["a"].committed();
  absl::StatusOr<ElectionReady> r = g["a"].TransferLeadership("c");
  ASSERT_TRUE(r.ok()) << r.status();
  g.Collect(*r);
  EXPECT_EQ(g["a"].transfer_target(), "c");
  EXPECT_EQ(CountQueued(g, "c", v1::TIMEOUT_NOW), 1) << "c already holds a's record";
  g.Stabilize();
  EXPECT_EQ(g["c"].role(), Role::kLeader);
  EXPECT_EQ(g["c"].term(), 2u);
  EXPECT_EQ(g["a"].role(), Role::kFollower);
  EXPECT_EQ(g["a"].leader(), "c");
  EXPECT_TRUE(g["a"].transfer_target().empty());
  EXPECT_EQ(g["b"].leader(), "c");
  // The new leader's no-op carries the committed plan forward.
  EXPECT_EQ(g["c"].committed().payload(), "plan-1");
  EXPECT_EQ(g["c"].committed().in_flight(), "b");
  EXPECT_EQ(g["c"].committed().index(), committed.index() + 1);
}

TEST(ElectionTransferTest, LaggingTargetGetsTheRecordBeforeTimeoutNow) {
  Group g = ElectedThree();
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "", "plan-2").ok());
  g.Stabilize({"c"});  // committed by a and b; c missed it
  ASSERT_EQ(g["a"].committed().payload(), "plan-2");
  ASSERT_NE(g["c"].record().payload(), "plan-2");
  g.Collect(*g["a"].TransferLeadership("c"));
  EXPECT_EQ(CountQueued(g, "c", v1::APPEND), 1);
  EXPECT_EQ(CountQueued(g, "c", v1::TIMEOUT_NOW), 0)
      << "c would lose the election with an older record";
  g.Stabilize();
  EXPECT_EQ(g["c"].role(), Role::kLeader);
  EXPECT_EQ(g["c"].committed().payload(), "plan-2");
}

TEST(ElectionTransferTest, ProposalsAreRefusedWhileTransferringWithAStableReason) {
  Group g = ElectedThree();
  g.mailbox().clear();
  g.Collect(*g["a"].TransferLeadership("c"));
  absl::StatusOr<ElectionReady> p = g["a"].Propose("", "plan-x");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(p.status()), reason::kLeaderTransferInProgress);
  EXPECT_EQ(MetadataOf(p.status(), "target"), "c");
  EXPECT_EQ(g["a"].record().payload(), g["a"].committed().payload()) << "nothing written";
}

TEST(ElectionTransferTest, TransferNotDoneWithinAnElectionTimeoutIsAbandoned) {
  Group g = ElectedThree();
  g.mailbox().clear();
  g.Collect(*g["a"].TransferLeadership("c"));
  // c is gone; b keeps answering heartbeats, so a stays leader.
  for (int i = 0; i < 9; ++i) {
    g.Collect(g["a"].Tick());
    g.Stabilize({"c"});
  }
  EXPECT_EQ(g["a"].transfer_target(), "c") << "still within the election timeout";
  g.Collect(g["a"].Tick());
  g.Stabilize({"c"});
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  EXPECT_TRUE(g["a"].transfer_target().empty());
  EXPECT_TRUE(g.Propose("a", "", "plan-after").ok()) << "proposals accepted again";
  EXPECT_EQ(g["a"].term(), 1u);
}

TEST(ElectionTransferTest, WithoutANameTheMostUpToDateVoterIsChosen) {
  Group g({"a", "b", "c", "d", "e"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  g.mailbox().clear();
  ASSERT_TRUE(g.Propose("a", "", "plan-2").ok());
  g.Stabilize({"b", "c"});  // only d and e acknowledge the newest record
  ASSERT_EQ(g["a"].committed().payload(), "plan-2");
  g.Collect(*g["a"].TransferLeadership(""));
  EXPECT_EQ(g["a"].transfer_target(), "d") << "b and c hold an older record";
  g.Stabilize();
  EXPECT_EQ(g["d"].role(), Role::kLeader);
  EXPECT_EQ(g["d"].term(), 2u);
}

TEST(ElectionTransferTest, TransferRequestsWithNobodyToGoToAreRefused) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  // A pre-candidate leads nothing.
  EXPECT_EQ(ReasonOf(g["a"].TransferLeadership("b").status()), reason::kNotLeader);
  g.Stabilize();
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  for (const char* target : {"a", "l", "mallory"}) {
    absl::StatusOr<ElectionReady> r = g["a"].TransferLeadership(target);
    EXPECT_EQ(ReasonOf(r.status()), reason::kNoTransferTarget) << target;
    EXPECT_EQ(MetadataOf(r.status(), "target"), target);
    EXPECT_TRUE(g["a"].transfer_target().empty()) << target;
  }
  PinnedRandom random;
  ElectionMachine alone({.self = "a", .voters = {"a"}}, v1::HardState(), random);
  for (int i = 0; i < 20 && alone.role() != Role::kLeader; ++i) alone.Tick();
  ASSERT_EQ(alone.role(), Role::kLeader);
  EXPECT_EQ(ReasonOf(alone.TransferLeadership("").status()), reason::kNoTransferTarget);
}

TEST(ElectionTransferTest, TimeoutNowSkipsPreVoteAndFlagsTheVotes) {
  Group g = ElectedThree();
  g.mailbox().clear();
  ElectionReady r = *g["b"].Step(Msg(v1::TIMEOUT_NOW, "a", "b", 1));
  EXPECT_EQ(g["b"].role(), Role::kCandidate);
  EXPECT_EQ(g["b"].term(), 2u);
  ASSERT_EQ(r.messages.size(), 2u);
  for (const v1::PeerMessage& m : r.messages) {
    EXPECT_EQ(m.type(), v1::VOTE);
    EXPECT_TRUE(m.transfer());
    EXPECT_EQ(m.term(), 2u);
  }
  // An ordinary election (PreVote, then VOTE) never sets the flag.
  Group k({"a", "b", "c"});
  ElectionReady pre;
  for (int i = 0; i < 100 && pre.messages.empty(); ++i) pre = k["a"].Tick();
  for (const v1::PeerMessage& m : pre.messages) {
    EXPECT_EQ(m.type(), v1::PRE_VOTE);
    EXPECT_FALSE(m.transfer());
  }
  ElectionReady grant = *k["b"].Step(pre.messages.at(0).to() == "b" ? pre.messages.at(0)
                                                                       : pre.messages.at(1));
  ElectionReady votes = *k["a"].Step(grant.messages.at(0));
  ASSERT_FALSE(votes.messages.empty());
  for (const v1::PeerMessage& m : votes.messages) {
    EXPECT_EQ(m.type(), v1::VOTE);
    EXPECT_FALSE(m.transfer());
  }
}

TEST(ElectionTransferTest, OnlyAFlaggedVoteOvercomesTheLeaderLease) {
  Group g = ElectedThree();
  g.mailbox().clear();
  v1::PeerMessage plain = Msg(v1::VOTE, "c", "b", 2);
  plain.mutable_record()->CopyFrom(g["c"].record());
  EXPECT_TRUE(g["b"].Step(plain)->messages.empty()) << "b hears a live leader";
  EXPECT_EQ(g["b"].term(), 1u);
  v1::PeerMessage pre = Msg(v1::PRE_VOTE, "c", "b", 2);
  pre.mutable_record()->CopyFrom(g["c"].record());
  pre.set_transfer(true);
  EXPECT_TRUE(g["b"].Step(pre)->messages.empty()) << "the flag counts on VOTE only";
  v1::PeerMessage flagged = plain;
  flagged.set_transfer(true);
  ElectionReady r = *g["b"].Step(flagged);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_FALSE(r.messages[0].reject());
  EXPECT_EQ(g["b"].term(), 2u);
  EXPECT_EQ(g["b"].hard_state().voted_for(), "c");
  // The election restriction still holds for a flagged vote.
  v1::PeerMessage older = Msg(v1::VOTE, "c", "a", 2);
  older.set_transfer(true);  // record 0/0, older than a's
  r = *g["a"].Step(older);
  ASSERT_EQ(r.messages.size(), 1u);
  EXPECT_TRUE(r.messages[0].reject());
}

TEST(ElectionTransferTest, LearnersAndLeadersIgnoreTimeoutNow) {
  Group g({"a", "b", "c"}, {"l"});
  g.TickUntilCampaign("a");
  g.Stabilize();
  ASSERT_EQ(g["a"].role(), Role::kLeader);
  EXPECT_TRUE(g["l"].Step(Msg(v1::TIMEOUT_NOW, "a", "l", 1))->messages.empty());
  EXPECT_EQ(g["l"].term(), 1u);
  EXPECT_TRUE(g["a"].Step(Msg(v1::TIMEOUT_NOW, "b", "a", 1))->messages.empty());
  EXPECT_EQ(g["a"].role(), Role::kLeader);
  // A stale TIMEOUT_NOW (an old term) is dropped like any old message.
  g.Collect(*g["a"].TransferLeadership("b"));
  g.Stabilize();
  ASSERT_EQ(g["b"].role(), Role::kLeader);
  EXPECT_TRUE(g["c"].Step(Msg(v1::TIMEOUT_NOW, "a", "c", 1))->messages.empty());
  EXPECT_EQ(g["c"].role(), Role::kFollower);
  EXPECT_EQ(g["c"].term(), 2u);
}

}  // namespace
}  // namespace kmsfleet
