// Tests of the finished-plan history (plan_history.h): one entry per plan,
// the newest end wins, newest first, bounded.
#include <string>

#include "gtest/gtest.h"
#include "kmsfleet/core/plan_history.h"

namespace kmsfleet {
namespace {

v1::FleetPlan Plan(const std::string& id, uint64_t revision, v1::PlanPhase phase) {
  v1::FleetPlan plan;
  plan.set_plan_id(id);
  plan.set_revision(revision);
  plan.set_phase(phase);
  return plan;
}

std::string Ids(const v1::PlanHistory& history) {
  std::string out;
  for (const v1::FleetPlan& p : history.plans()) {
    out += (out.empty() ? "" : " ") + p.plan_id() + "@" + std::to_string(p.revision());
  }
  return out;
}

TEST(PlanHistoryTest, UnfinishedPlansAreNotRecorded) {
  EXPECT_FALSE(RecordFinishedPlan({}, Plan("p1", 3, v1::PLAN_PHASE_ROLLING), 20));
  EXPECT_FALSE(RecordFinishedPlan({}, Plan("p1", 3, v1::PLAN_PHASE_HALTED), 20));
}

// Found by the chaos runs (tests/chaos, seed 3): a Completed upgrade that
// the operator then rolled back stayed "Completed" in every agent's
// history; the rollback's end was lost.
TEST(PlanHistoryTest, ARollbackReplacesTheUpgradesEndUnderTheSameId) {
  std::optional<v1::PlanHistory> h =
      RecordFinishedPlan({}, Plan("p1", 16, v1::PLAN_PHASE_COMPLETED), 20);
  ASSERT_TRUE(h);
  h = RecordFinishedPlan(*h, Plan("p0", 5, v1::PLAN_PHASE_ABORTED), 20);
  ASSERT_TRUE(h);
  h = RecordFinishedPlan(*h, Plan("p1", 27, v1::PLAN_PHASE_ROLLED_BACK), 20);
  ASSERT_TRUE(h);
  EXPECT_EQ(Ids(*h), "p1@27 p0@5");
  EXPECT_EQ(h->plans(0).phase(), v1::PLAN_PHASE_ROLLED_BACK);
}

TEST(PlanHistoryTest, TheSameOrAnOlderRevisionChangesNothing) {
  std::optional<v1::PlanHistory> h =
      RecordFinishedPlan({}, Plan("p1", 27, v1::PLAN_PHASE_ROLLED_BACK), 20);
  ASSERT_TRUE(h);
  EXPECT_FALSE(RecordFinishedPlan(*h, Plan("p1", 27, v1::PLAN_PHASE_ROLLED_BACK), 20));
  EXPECT_FALSE(RecordFinishedPlan(*h, Plan("p1", 16, v1::PLAN_PHASE_COMPLETED), 20));
}

TEST(PlanHistoryTest, KeepsTheNewestPlans) {
  v1::PlanHistory h;
  for (int i = 1; i <= 4; ++i) {
    h = *RecordFinishedPlan(h, Plan("p" + std::to_string(i), i, v1::PLAN_PHASE_COMPLETED), 3);
  }
  EXPECT_EQ(Ids(h), "p4@4 p3@3 p2@2");
}

}  // namespace
}  // namespace kmsfleet
