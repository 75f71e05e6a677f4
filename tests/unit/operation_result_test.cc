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

}  // namespace
}  // namespace kmsfleet
