// How a finished operation reads for the plan machine
// (SetOperationResult in kmsfleet/core/operation_result.h).
#include <string>

#include "gtest/gtest.h"
#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

v1::Operation Done(const std::string& phase, const std::string& reason) {
  v1::Operation op;
  op.set_operation_id("plan-1.cp-3.swap.9");
  op.set_kind("swap");
  op.set_phase(phase);
  op.set_done(true);
  op.set_reason(reason);
  op.set_message("the agent restarted during the operation");
  return op;
}

TEST(OperationResultTest, TheThreeEndsAreOutcomes) {
  for (const auto& [phase, outcome] :
       {std::pair{"Stable", OperationOutcome::kStable},
        std::pair{"RolledBack", OperationOutcome::kRolledBack},
        std::pair{"RollbackFailed", OperationOutcome::kRollbackFailed}}) {
    ActionResult r;
    SetOperationResult(Done(phase, ""), r);
    EXPECT_TRUE(r.status.ok()) << phase;
    EXPECT_EQ(r.outcome, outcome) << phase;
  }
}

// Found by the chaos runs (tests/chaos, seeds 58825 and 58826): the
// in-flight agent was killed while its swap was Preflighted; restarted, it
// closed the operation there with AGENT_RESTARTED. The coordinator read
// that as "no such operation", sent the same swap again, got the same
// closed operation back, and the plan stayed in Rolling for good.
TEST(OperationResultTest, AnOperationEndedBeforeTheStopIsAFailedCommand) {
  for (const char* phase : {"Staged", "Preflighted"}) {
    ActionResult r;
    SetOperationResult(Done(phase, reason::kAgentRestarted), r);
    EXPECT_EQ(r.status.code(), absl::StatusCode::kFailedPrecondition) << phase;
    EXPECT_EQ(ReasonOf(r.status), reason::kAgentRestarted) << phase;
    EXPECT_NE(std::string(r.status.message()).find("plan-1.cp-3.swap.9"), std::string::npos);
  }
  ActionResult r;
  SetOperationResult(Done("Preflighted", ""), r);
  EXPECT_EQ(ReasonOf(r.status), reason::kSwapFailedRestored);
}

// From review: a journal closed past the stop without an ending (no path
// of the executor's does it, but a step limit or a corrupt journal could)
// is not "untouched": carrying AGENT_RESTARTED it would be sent again.
// Its provider's state is unknown, so it reads as RollbackFailed.
TEST(OperationResultTest, AnOperationClosedPastTheStopWithoutAnEndingIsNotUntouched) {
  for (const char* phase : {"Stopped", "Installed", "Started", "Verifying", "RollingBack"}) {
    ActionResult r;
    SetOperationResult(Done(phase, reason::kAgentRestarted), r);
    EXPECT_TRUE(r.status.ok()) << phase;
    EXPECT_EQ(r.outcome, OperationOutcome::kRollbackFailed) << phase;
    EXPECT_NE(r.outcome_message.find("state is unknown"), std::string::npos) << r.outcome_message;
  }
}

// Found in review: a retried Swap whose first call timed out while the
// agent still admitted it was refused OPERATION_IN_PROGRESS, and the plan
// failed the node's step while its swap ran.
TEST(OperationResultTest, ABusyNodeIsAskedAgainAndOtherRefusalsStandAsTheyCame) {
  absl::Status busy = CommandRefusalForPlan(MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
      "another operation is running on this node"));
  EXPECT_EQ(busy.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(busy), reason::kOperationInProgress);
  EXPECT_NE(std::string(busy.message()).find("another operation"), std::string::npos);
  for (const char* why : {reason::kStaleFence, reason::kCommandNotInPlan, reason::kStaleTerm}) {
    absl::Status refusal = MakeError(absl::StatusCode::kFailedPrecondition, why, "no");
    EXPECT_EQ(CommandRefusalForPlan(refusal), refusal) << why;
  }
  EXPECT_TRUE(CommandRefusalForPlan(absl::OkStatus()).ok());
}

// Found in review: any hand-off error other than "still running" or
// "unreachable" read as the node keeping its slot, and the plan entered
// break-glass for a healthy node, e.g. when the fence's record had not
// committed yet (NOT_IN_FLIGHT) or the coordinator's term moved on
// (STALE_TERM from its own Release).
TEST(OperationResultTest, OnlyTheHoldersOwnRefusalKeepsTheSlot) {
  ActionResult released;
  SetHandOffResult(absl::OkStatus(), released);
  EXPECT_EQ(released.kind, ResultKind::kHandOff);
  EXPECT_TRUE(released.released);
  EXPECT_TRUE(released.status.ok());

  ActionResult kept;
  SetHandOffResult(MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotReleasable,
                             "in-flight node cp-2 keeps its slot"),
                   kept);
  EXPECT_FALSE(kept.released);
  EXPECT_TRUE(kept.status.ok()) << "a result: the machine enters break-glass";

  for (const auto& [code, why] :
       {std::pair{absl::StatusCode::kFailedPrecondition, reason::kNotInFlight},
        std::pair{absl::StatusCode::kFailedPrecondition, reason::kStaleTerm},
        std::pair{absl::StatusCode::kFailedPrecondition, reason::kStaleFence},
        std::pair{absl::StatusCode::kFailedPrecondition, reason::kHandoffPending},
        std::pair{absl::StatusCode::kUnavailable, reason::kNotLeader}}) {
    ActionResult r;
    SetHandOffResult(MakeError(code, why, "not now"), r);
    EXPECT_FALSE(r.released) << why;
    EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << why;
    EXPECT_EQ(ReasonOf(r.status), why);
  }
  ActionResult bare;
  SetHandOffResult(absl::UnavailableError("connection refused"), bare);
  EXPECT_EQ(ReasonOf(bare.status), reason::kAgentUnreachable);
}

// Found in review: a swap sent again under an id the node had admitted
// (after its watch was refused) met the same caller check, which runs
// before the id is looked up; read as "refused before anything ran", a
// swap that ended Stable failed its node.
TEST(OperationResultTest, ARefusalOfTheCallerSaysNothingOfTheCommand) {
  for (const char* why : {reason::kUnknownCaller, reason::kVoterOnly, reason::kMemberOnly,
                          reason::kAmbiguousCaller, reason::kOperatorOnly,
                          reason::kMethodNotAllowed, reason::kJournalCorrupt,
                          reason::kOperationInProgress}) {
    absl::Status s = CommandRefusalForPlan(
        MakeError(absl::StatusCode::kPermissionDenied, why, "not let in"));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << why;
    EXPECT_EQ(ReasonOf(s), why);
    EXPECT_EQ(std::string(s.message()), "not let in");
  }
  absl::Status refused = CommandRefusalForPlan(
      MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotStaged, "no release"));
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(refused), reason::kNotStaged);
}

// Found in review: a follow-only swap whose node did not know the
// operation (a peer down, so nothing may start) was sent again back to
// back, each time after an observation round of every voter.
TEST(OperationResultTest, AnUnknownOperationAndNotNowAreAskedAgainAtOnce) {
  ActionResult unknown;
  unknown.kind = ResultKind::kOperation;
  unknown.outcome = OperationOutcome::kNotFound;
  EXPECT_TRUE(AsksAgainAtOnce(unknown));
  ActionResult unreachable;
  unreachable.kind = ResultKind::kStaged;
  unreachable.status = absl::UnavailableError("down");
  EXPECT_TRUE(AsksAgainAtOnce(unreachable));
  // Answers the plan acts on: never held back.
  ActionResult stable = unknown;
  stable.outcome = OperationOutcome::kStable;
  EXPECT_FALSE(AsksAgainAtOnce(stable));
  ActionResult refused = unknown;
  refused.status = absl::FailedPreconditionError("refused");
  EXPECT_FALSE(AsksAgainAtOnce(refused));
  ActionResult staged;  // kStaged, OK: its outcome field means nothing
  EXPECT_FALSE(AsksAgainAtOnce(staged));
}

// Found in review: a watch refused after the node admitted the swap (its
// agent restarted with another member list, an unreadable journal) came
// back as the refusal itself, which the plan reads as "refused before
// anything ran": a swap that ended Stable failed the node.
TEST(OperationResultTest, AFailedWatchOfAnAdmittedOperationIsAskedAgain) {
  ActionResult r;
  SetFollowFailed(MakeError(absl::StatusCode::kPermissionDenied, reason::kVoterOnly,
                            "cp-9 is not a voter"),
                  "plan-1.cp-1.swap.3", r);
  EXPECT_EQ(r.status.code(), absl::StatusCode::kUnavailable) << r.status;
  EXPECT_EQ(ReasonOf(r.status), reason::kVoterOnly);
  EXPECT_EQ(std::string(r.status.message()),
            "cannot follow plan-1.cp-1.swap.3, so its outcome is unknown: cp-9 is not a voter");
  ActionResult bare;
  SetFollowFailed(absl::DataLossError("journal unreadable"), "op-1", bare);
  EXPECT_EQ(ReasonOf(bare.status), reason::kAgentUnreachable);
}

// Found in review: the coordinator followed an operation until its term
// ended whatever the watch stream answered, so an agent that did not know
// the operation, or refused the caller, held the plan with no reason.
TEST(OperationResultTest, AWatchThatEndsForGoodIsAResult) {
  EXPECT_EQ(ReadWatchEnd(absl::StatusCode::kNotFound), WatchEnd::kNotFound);
  for (absl::StatusCode code :
       {absl::StatusCode::kPermissionDenied, absl::StatusCode::kUnauthenticated,
        absl::StatusCode::kUnimplemented, absl::StatusCode::kInvalidArgument,
        absl::StatusCode::kFailedPrecondition, absl::StatusCode::kDataLoss}) {
    EXPECT_EQ(ReadWatchEnd(code), WatchEnd::kFailed) << absl::StatusCodeToString(code);
  }
  for (absl::StatusCode code :
       {absl::StatusCode::kOk, absl::StatusCode::kDeadlineExceeded,
        absl::StatusCode::kCancelled, absl::StatusCode::kUnavailable,
        absl::StatusCode::kAborted, absl::StatusCode::kInternal,
        absl::StatusCode::kResourceExhausted, absl::StatusCode::kUnknown}) {
    EXPECT_EQ(ReadWatchEnd(code), WatchEnd::kOpenAgain) << absl::StatusCodeToString(code);
  }
}

// The rule that three silent watches end a follow lives here, where the
// simulator can reach it; a watch that brings word starts the count again.
TEST(OperationResultTest, OnlyWatchesSilentInARowMakeTheNodeUnreachable) {
  int silent = 0;
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kUnavailable, false, silent), WatchEnd::kOpenAgain);
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kOk, false, silent), WatchEnd::kOpenAgain);
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kDeadlineExceeded, true, silent),
            WatchEnd::kOpenAgain);
  EXPECT_EQ(silent, 0);
  for (int i = 1; i < kSilentWatchesBeforeUnreachable; ++i) {
    EXPECT_EQ(NextFollowStep(absl::StatusCode::kUnavailable, false, silent),
              WatchEnd::kOpenAgain);
  }
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kUnavailable, false, silent), WatchEnd::kFailed);
}

TEST(OperationResultTest, AWatchThatEndsForGoodDoesNotWaitForSilence) {
  int silent = 0;
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kNotFound, true, silent), WatchEnd::kNotFound);
  EXPECT_EQ(NextFollowStep(absl::StatusCode::kPermissionDenied, false, silent),
            WatchEnd::kFailed);
  EXPECT_EQ(silent, 0);
}

}  // namespace
}  // namespace kmsfleet
