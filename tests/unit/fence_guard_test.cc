// Fencing of disruptive commands (architecture.md §2 principle 4, §6).
#include "kmsfleet/core/fence_guard.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

v1::Fence F(uint64_t term, uint64_t index, std::string in_flight) {
  v1::Fence f;
  f.set_term(term);
  f.set_index(index);
  f.set_in_flight(std::move(in_flight));
  return f;
}

// The committed record a node holds, as its election machine reports it.
v1::PlanRecord R(uint64_t term, uint64_t index, std::string in_flight) {
  v1::PlanRecord r;
  r.set_term(term);
  r.set_index(index);
  r.set_in_flight(std::move(in_flight));
  r.set_payload("plan");
  return r;
}

const HandoffAnswer kNeverStarted{v1::HANDOFF_NEVER_STARTED, "none"};

TEST(FenceGuardTest, CommandFromOlderTermIsRefusedAsStaleTerm) {
  FenceGuard guard("b", v1::FenceState());
  guard.ObserveTerm(4);
  absl::Status s = guard.AdmitSwap(F(3, 9, "b"), R(3, 9, "b"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kStaleTerm);
  EXPECT_EQ(MetadataOf(s, "highest_term"), "4");
  EXPECT_EQ(guard.state().highest_term(), 4u);
}

TEST(FenceGuardTest, SwapIsRefusedUnlessTheCommittedRecordNamesThisNode) {
  FenceGuard guard("b", v1::FenceState());
  absl::Status s = guard.AdmitSwap(F(2, 3, "c"), R(2, 3, "c"));
  EXPECT_EQ(ReasonOf(s), reason::kNotInFlight);
  EXPECT_EQ(MetadataOf(s, "in_flight"), "c");
  EXPECT_EQ(guard.state().highest_term(), 0u) << "a refusal changes nothing";
  EXPECT_TRUE(guard.AdmitSwap(F(2, 3, "b"), R(2, 3, "b")).ok());
  EXPECT_EQ(guard.state().highest_term(), 2u);
}

// Issue 8 §1: the term is public (GetLeader), so {current term, committed
// index + 1, this node} must not be admitted while another node is in
// flight. The node has not seen that record committed: UNKNOWN_FENCE.
TEST(FenceGuardTest, ForgedFenceForARecordNotSeenCommittedIsUnknown) {
  FenceGuard guard("b", v1::FenceState());
  v1::PlanRecord committed = R(7, 12, "c");  // c is in flight
  absl::Status s = guard.AdmitSwap(F(7, 13, "b"), committed);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(s), reason::kUnknownFence);
  EXPECT_EQ(MetadataOf(s, "fence"), "7/13");
  EXPECT_EQ(MetadataOf(s, "committed"), "7/12");
  EXPECT_EQ(guard.state().highest_term(), 0u) << "a refusal changes nothing";
  EXPECT_EQ(ReasonOf(guard.AdmitSwap(F(8, 1, "b"), committed)), reason::kUnknownFence)
      << "a future term is a record not seen either";
}

TEST(FenceGuardTest, FenceMisstatingTheCommittedInFlightNodeIsRefused) {
  FenceGuard guard("b", v1::FenceState());
  absl::Status s = guard.AdmitSwap(F(7, 12, "b"), R(7, 12, "c"));
  EXPECT_EQ(ReasonOf(s), reason::kNotInFlight);
  EXPECT_EQ(MetadataOf(s, "in_flight"), "c");
}

TEST(FenceGuardTest, FenceOlderThanTheCommittedRecordIsStale) {
  FenceGuard guard("b", v1::FenceState());
  absl::Status s = guard.AdmitSwap(F(7, 11, "b"), R(7, 12, "b"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kStaleFence);
  EXPECT_EQ(MetadataOf(s, "fence"), "7/11");
  EXPECT_EQ(MetadataOf(s, "committed"), "7/12");
  EXPECT_TRUE(guard.AdmitSwap(F(7, 12, "b"), R(7, 12, "b")).ok());
}

TEST(FenceGuardTest, SwapDelayedPastAReleaseAtTheSameTermIsRefused) {
  FenceGuard guard("b", v1::FenceState());
  ASSERT_TRUE(guard.AdmitRelease(F(5, 7, "b"), R(5, 7, "b"), kNeverStarted).ok());
  EXPECT_EQ(ReasonOf(guard.AdmitSwap(F(5, 7, "b"), R(5, 7, "b"))), reason::kStaleFence);
  EXPECT_EQ(ReasonOf(guard.AdmitSwap(F(4, 8, "b"), R(5, 7, "b"))), reason::kStaleTerm);
  EXPECT_TRUE(guard.AdmitSwap(F(5, 9, "b"), R(5, 9, "b")).ok()) << "a newer plan may again";
}

TEST(FenceGuardTest, ReleaseWhileRunningRaisesTermButReleasesNothing) {
  FenceGuard guard("b", v1::FenceState());
  absl::StatusOr<v1::ReleaseReply> reply = guard.AdmitRelease(
      F(6, 2, "b"), R(6, 2, "b"), {v1::HANDOFF_RUNNING, "op-1 is running"});
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_TRUE(reply->running());
  EXPECT_FALSE(reply->released());
  EXPECT_EQ(reply->reason(), reason::kHandoffPending);
  EXPECT_EQ(guard.state().highest_term(), 6u);
  EXPECT_EQ(guard.state().released_index(), 0u);
  EXPECT_TRUE(guard.AdmitSwap(F(6, 2, "b"), R(6, 2, "b")).ok());
}

// Issue 8 §2: only an outcome that leaves the provider serving releases.
TEST(FenceGuardTest, OnlyReleasableOutcomesReleaseTheSlot) {
  for (v1::HandoffOutcome outcome :
       {v1::HANDOFF_ROLLBACK_FAILED, v1::HANDOFF_JOURNAL_OPEN, v1::HANDOFF_UNKNOWN,
        v1::HANDOFF_OUTCOME_UNSPECIFIED}) {
    FenceGuard guard("b", v1::FenceState());
    absl::StatusOr<v1::ReleaseReply> reply =
        guard.AdmitRelease(F(6, 2, "b"), R(6, 2, "b"), {outcome, "op-1 ended badly"});
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_FALSE(reply->released()) << v1::HandoffOutcome_Name(outcome);
    EXPECT_FALSE(reply->running());
    EXPECT_EQ(reply->outcome(), outcome);
    EXPECT_EQ(reply->reason(), reason::kNotReleasable);
    EXPECT_EQ(reply->detail(), "op-1 ended badly");
    EXPECT_EQ(guard.state().released_index(), 0u);
  }
  for (v1::HandoffOutcome outcome :
       {v1::HANDOFF_NEVER_STARTED, v1::HANDOFF_STABLE, v1::HANDOFF_ROLLED_BACK}) {
    FenceGuard guard("b", v1::FenceState());
    absl::StatusOr<v1::ReleaseReply> reply =
        guard.AdmitRelease(F(6, 2, "b"), R(6, 2, "b"), {outcome, ""});
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_TRUE(reply->released()) << v1::HandoffOutcome_Name(outcome);
    EXPECT_EQ(guard.state().released_index(), 2u);
  }
}

TEST(FenceGuardTest, ReleaseQueryNeedsTheCommittedRecordNamingThisNode) {
  FenceGuard guard("b", v1::FenceState());
  EXPECT_EQ(ReasonOf(guard.AdmitRelease(F(3, 5, "b"), R(3, 4, "b"), kNeverStarted).status()),
            reason::kUnknownFence);
  EXPECT_EQ(ReasonOf(guard.AdmitRelease(F(3, 5, "b"), R(3, 5, "c"), kNeverStarted).status()),
            reason::kNotInFlight);
  EXPECT_EQ(guard.state().released_index(), 0u) << "nothing was released";
}

// Found in review: with a change proposed and not yet committed there is
// no fence to ask the holder under, and the coordinator said the holder
// was not in flight, which the committed record still says it is. It says
// the change is pending: Unavailable, asked again like every "not yet".
TEST(FenceGuardTest, AHandOffWhileAChangeIsPendingWaitsForItsCommit) {
  absl::StatusOr<v1::Fence> pending = HandOffFence(std::nullopt, "a", "c");
  EXPECT_EQ(pending.status().code(), absl::StatusCode::kUnavailable) << pending.status();
  EXPECT_EQ(ReasonOf(pending.status()), reason::kPlanChangePending);
  EXPECT_EQ(MetadataOf(pending.status(), "node"), "a");

  absl::StatusOr<v1::Fence> other = HandOffFence(F(3, 7, "b"), "a", "c");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition) << other.status();
  EXPECT_EQ(ReasonOf(other.status()), reason::kNotInFlight);

  absl::StatusOr<v1::Fence> held = HandOffFence(F(3, 7, "a"), "a", "c");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->index(), 7u);
}

TEST(FenceGuardTest, PersistedStateSurvivesRestart) {
  v1::FenceState persisted;
  {
    FenceGuard guard("b", v1::FenceState());
    ASSERT_TRUE(guard.AdmitRelease(F(3, 4, "b"), R(3, 4, "b"), kNeverStarted).ok());
    persisted = guard.state();
  }
  FenceGuard restarted("b", persisted);
  EXPECT_EQ(ReasonOf(restarted.AdmitSwap(F(2, 9, "b"), R(3, 4, "b"))), reason::kStaleTerm);
  EXPECT_EQ(ReasonOf(restarted.AdmitSwap(F(3, 4, "b"), R(3, 4, "b"))), reason::kStaleFence);
}

// ---- DecideHandoff: the executor's answer from its journals. ----

SwapJournal J(std::string id, SwapPhase phase, uint64_t term, uint64_t index,
              int64_t started) {
  SwapJournal j;
  j.operation_id = std::move(id);
  j.phase = phase;
  j.open = false;
  j.fence_term = term;
  j.fence_index = index;
  j.started_unix_ms = started;
  return j;
}

TEST(DecideHandoffTest, OutcomeUnderTheAskedFence) {
  HandoffFacts facts;
  EXPECT_EQ(DecideHandoff(facts, F(2, 5, "b")).outcome, v1::HANDOFF_NEVER_STARTED);
  facts.journals = {J("op-1", SwapPhase::kStable, 2, 5, 100)};
  EXPECT_EQ(DecideHandoff(facts, F(2, 5, "b")).outcome, v1::HANDOFF_STABLE);
  EXPECT_EQ(DecideHandoff(facts, F(3, 6, "b")).outcome, v1::HANDOFF_NEVER_STARTED)
      << "nothing ran under the later fence and the provider serves";
  facts.journals.push_back(J("op-2", SwapPhase::kRolledBack, 3, 6, 200));
  EXPECT_EQ(DecideHandoff(facts, F(3, 6, "b")).outcome, v1::HANDOFF_ROLLED_BACK);
  facts.busy = true;
  EXPECT_EQ(DecideHandoff(facts, F(3, 6, "b")).outcome, v1::HANDOFF_RUNNING);
}

// A plan that gave the slot back untouched learns from the release
// whether its step ran after all: the answer names the last operation that
// touched the unit, whatever its fence, but only when it releases.
TEST(DecideHandoffTest, AReleaseNamesTheLastOperationWhateverItsFence) {
  HandoffFacts facts;
  facts.journals = {J("op-1", SwapPhase::kStable, 2, 5, 100),
                    J("op-2", SwapPhase::kRolledBack, 2, 6, 200)};
  HandoffAnswer later = DecideHandoff(facts, F(2, 9, "b"));
  EXPECT_EQ(later.outcome, v1::HANDOFF_NEVER_STARTED);
  EXPECT_EQ(later.last_operation_id, "op-2");
  EXPECT_EQ(later.last_operation_phase, "RolledBack");
  facts.journals.push_back(J("op-3", SwapPhase::kStable, 2, 9, 300));
  HandoffAnswer under = DecideHandoff(facts, F(2, 9, "b"));
  EXPECT_EQ(under.outcome, v1::HANDOFF_STABLE);
  EXPECT_EQ(under.last_operation_id, "op-3");
  EXPECT_EQ(under.last_operation_phase, "Stable");

  FenceGuard guard("b", v1::FenceState());
  absl::StatusOr<v1::ReleaseReply> released =
      guard.AdmitRelease(F(2, 9, "b"), R(2, 9, "b"), under);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->last_operation_id(), "op-3");
  EXPECT_EQ(released->last_operation_phase(), "Stable");
  HandoffAnswer kept = under;
  kept.outcome = v1::HANDOFF_ROLLBACK_FAILED;
  absl::StatusOr<v1::ReleaseReply> withheld =
      guard.AdmitRelease(F(2, 10, "b"), R(2, 10, "b"), kept);
  ASSERT_TRUE(withheld.ok()) << withheld.status();
  EXPECT_FALSE(withheld->released());
  EXPECT_EQ(withheld->last_operation_id(), "");
}

TEST(DecideHandoffTest, AnEndNotYetOnDiskKeepsTheSlotAndSaysWhy) {
  HandoffFacts facts;
  facts.busy = true;
  facts.journals = {J("op-1", SwapPhase::kVerifying, 2, 5, 100)};
  facts.journals[0].open = true;
  facts.pending_close = PendingClose{J("op-1", SwapPhase::kStable, 2, 5, 100),
                                     "No space left on device"};
  HandoffAnswer answer = DecideHandoff(facts, F(2, 5, "b"));
  EXPECT_EQ(answer.outcome, v1::HANDOFF_RUNNING);
  EXPECT_FALSE(IsReleasable(answer.outcome));
  EXPECT_NE(answer.detail.find("op-1"), std::string::npos) << answer.detail;
  EXPECT_NE(answer.detail.find("ended Stable"), std::string::npos) << answer.detail;
  EXPECT_NE(answer.detail.find("No space left on device"), std::string::npos)
      << answer.detail;
}

TEST(DecideHandoffTest, RollbackFailedIsNotReleasableUnderAnyLaterFence) {
  HandoffFacts facts;
  facts.journals = {J("op-1", SwapPhase::kStable, 2, 5, 100),
                    J("op-2", SwapPhase::kRollbackFailed, 2, 6, 200)};
  facts.journals[1].failure_reason = "UNIT_FAILED";
  HandoffAnswer answer = DecideHandoff(facts, F(4, 9, "b"));
  EXPECT_EQ(answer.outcome, v1::HANDOFF_ROLLBACK_FAILED);
  EXPECT_NE(answer.detail.find("op-2"), std::string::npos) << answer.detail;
  EXPECT_NE(answer.detail.find("UNIT_FAILED"), std::string::npos) << answer.detail;
  // A later swap refused before the stop changed nothing on the unit.
  facts.journals.push_back(J("op-3", SwapPhase::kPreflighted, 4, 9, 300));
  EXPECT_EQ(DecideHandoff(facts, F(4, 9, "b")).outcome, v1::HANDOFF_ROLLBACK_FAILED);
  // A later operation that restored the provider lifts it.
  facts.journals.push_back(J("op-4", SwapPhase::kStable, 4, 9, 400));
  EXPECT_EQ(DecideHandoff(facts, F(4, 9, "b")).outcome, v1::HANDOFF_STABLE);
}

// Journals carry wall-clock times; a clock stepped back between two
// operations (or an election state reset under older journals) must not
// let an earlier Stable hide a later RollbackFailed.
TEST(DecideHandoffTest, NeitherAClockStepNorAFenceResetHidesARollbackFailed) {
  HandoffFacts clock_stepped;
  clock_stepped.journals = {J("op-1", SwapPhase::kStable, 2, 5, 500),
                            J("op-2", SwapPhase::kRollbackFailed, 2, 6, 200)};
  HandoffAnswer answer = DecideHandoff(clock_stepped, F(4, 9, "b"));
  EXPECT_EQ(answer.outcome, v1::HANDOFF_ROLLBACK_FAILED);
  EXPECT_NE(answer.detail.find("op-2"), std::string::npos) << answer.detail;

  HandoffFacts fences_reset;
  fences_reset.journals = {J("op-1", SwapPhase::kStable, 7, 120, 100),
                           J("op-2", SwapPhase::kRollbackFailed, 1, 3, 200)};
  EXPECT_EQ(DecideHandoff(fences_reset, F(1, 4, "b")).outcome, v1::HANDOFF_ROLLBACK_FAILED);

  // Both left the provider up: the fence order says which one the asked
  // fence is about.
  HandoffFacts both_up;
  both_up.journals = {J("op-1", SwapPhase::kStable, 2, 5, 500),
                      J("op-2", SwapPhase::kRolledBack, 2, 6, 200)};
  EXPECT_EQ(DecideHandoff(both_up, F(2, 6, "b")).outcome, v1::HANDOFF_ROLLED_BACK);
}

SwapJournal Admitted(SwapJournal j, uint64_t sequence) {
  j.sequence = sequence;
  return j;
}

// Found in review: two operations under one fence (an operator's, say)
// were ordered by the wall clock alone, and a step back between them hid a
// RollbackFailed behind the earlier Stable: the node released its slot with
// its provider perhaps down. The node's own admission order decides.
TEST(DecideHandoffTest, AClockStepUnderOneFenceHidesNoRollbackFailed) {
  HandoffFacts stepped_back;
  stepped_back.journals = {Admitted(J("op-1", SwapPhase::kStable, 2, 5, 500), 1),
                           Admitted(J("op-2", SwapPhase::kRollbackFailed, 2, 5, 200), 2)};
  HandoffAnswer answer = DecideHandoff(stepped_back, F(2, 5, "b"));
  EXPECT_EQ(answer.outcome, v1::HANDOFF_ROLLBACK_FAILED);
  EXPECT_NE(answer.detail.find("op-2"), std::string::npos) << answer.detail;

  // Operator commands carry no fence at all: the same.
  HandoffFacts unfenced;
  unfenced.journals = {Admitted(J("op-1", SwapPhase::kStable, 0, 0, 500), 1),
                       Admitted(J("op-2", SwapPhase::kRollbackFailed, 0, 0, 200), 2)};
  EXPECT_EQ(DecideHandoff(unfenced, F(2, 5, "b")).outcome, v1::HANDOFF_ROLLBACK_FAILED);

  // An older kmsfleetd (no sequence) that ran after a newer one: the clock
  // still says which came last, and the answer that keeps the slot wins.
  HandoffFacts downgraded;
  downgraded.journals = {Admitted(J("op-1", SwapPhase::kStable, 2, 5, 200), 7),
                         J("op-2", SwapPhase::kRollbackFailed, 2, 5, 500)};
  EXPECT_EQ(DecideHandoff(downgraded, F(2, 5, "b")).outcome, v1::HANDOFF_ROLLBACK_FAILED);

  // A Stable admitted after the RollbackFailed, with the clock stepped
  // back: still kept, as without the sequence; the operator releases it.
  HandoffFacts mended;
  mended.journals = {Admitted(J("op-1", SwapPhase::kRollbackFailed, 2, 5, 500), 1),
                     Admitted(J("op-2", SwapPhase::kStable, 2, 5, 200), 2)};
  EXPECT_EQ(DecideHandoff(mended, F(2, 5, "b")).outcome, v1::HANDOFF_ROLLBACK_FAILED);

  // In order, both up: the later one is the answer.
  HandoffFacts in_order;
  in_order.journals = {Admitted(J("op-1", SwapPhase::kRolledBack, 2, 5, 200), 1),
                       Admitted(J("op-2", SwapPhase::kStable, 2, 5, 100), 2)};
  EXPECT_EQ(DecideHandoff(in_order, F(2, 5, "b")).outcome, v1::HANDOFF_STABLE);
}

TEST(DecideHandoffTest, OpenUnreadableOrUnfinishedJournalsAreNotReleasable) {
  HandoffFacts open;
  open.journals = {J("op-1", SwapPhase::kVerifying, 2, 5, 100)};
  open.journals[0].open = true;
  EXPECT_EQ(DecideHandoff(open, F(2, 5, "b")).outcome, v1::HANDOFF_JOURNAL_OPEN);

  HandoffFacts unreadable;
  unreadable.unreadable = {"/state/journal/op-9.json"};
  HandoffAnswer a = DecideHandoff(unreadable, F(2, 5, "b"));
  EXPECT_EQ(a.outcome, v1::HANDOFF_UNKNOWN);
  EXPECT_NE(a.detail.find("op-9.json"), std::string::npos);

  HandoffFacts unfinished;  // closed after the stop in no terminal phase
  unfinished.journals = {J("op-1", SwapPhase::kInstalled, 2, 5, 100)};
  EXPECT_EQ(DecideHandoff(unfinished, F(2, 5, "b")).outcome, v1::HANDOFF_UNKNOWN);
  for (v1::HandoffOutcome o : {v1::HANDOFF_JOURNAL_OPEN, v1::HANDOFF_UNKNOWN,
                               v1::HANDOFF_RUNNING, v1::HANDOFF_ROLLBACK_FAILED}) {
    EXPECT_FALSE(IsReleasable(o)) << v1::HandoffOutcome_Name(o);
  }
}

}  // namespace
}  // namespace kmsfleet
