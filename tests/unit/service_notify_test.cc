// kmsfleetd's STATUS= text and its watchdog decision (docs/systemd.md).
#include "kmsfleet/core/service_notify.h"

#include <gtest/gtest.h>

#include <vector>

#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet {
namespace {

v1::LeaderView ViewOf(std::string role, uint64_t term, std::string leader = "") {
  v1::LeaderView view;
  view.set_role(std::move(role));
  view.set_term(term);
  view.set_leader(std::move(leader));
  return view;
}

void CommitPlan(v1::LeaderView& view, const std::string& id, v1::PlanPhase phase,
                std::vector<v1::PlanNodePhase> nodes) {
  v1::FleetPlan plan;
  plan.set_plan_id(id);
  plan.set_phase(phase);
  for (v1::PlanNodePhase p : nodes) plan.add_nodes()->set_phase(p);
  absl::StatusOr<std::string> payload = EncodePlan(plan);
  ASSERT_TRUE(payload.ok()) << payload.status();
  view.mutable_committed()->set_payload(*payload);
}

TEST(ServiceStatusTextTest, CoordinatorShowsTermAndPlanProgress) {
  v1::LeaderView view = ViewOf("Leader", 4, "cp-1");
  CommitPlan(view, "p-1", v1::PLAN_PHASE_ROLLING,
             {v1::PLAN_NODE_PHASE_DONE, v1::PLAN_NODE_PHASE_ROLLED_BACK,
              v1::PLAN_NODE_PHASE_IN_FLIGHT});
  EXPECT_EQ(ServiceStatusText("cluster member", view), "coordinator term 4; plan p-1 Rolling 2/3");
}

TEST(ServiceStatusTextTest, FollowerWithoutPlan) {
  EXPECT_EQ(ServiceStatusText("cluster member", ViewOf("Follower", 4, "cp-1")),
            "follower of cp-1 term 4; no plan");
  EXPECT_EQ(ServiceStatusText("cluster member", ViewOf("Follower", 4)),
            "follower term 4, no coordinator; no plan");
}

TEST(ServiceStatusTextTest, CandidateHasNoCoordinator) {
  v1::LeaderView view = ViewOf("PreCandidate", 5);
  CommitPlan(view, "p-1", v1::PLAN_PHASE_HALTED,
             {v1::PLAN_NODE_PHASE_DONE, v1::PLAN_NODE_PHASE_FAILED, v1::PLAN_NODE_PHASE_PENDING});
  EXPECT_EQ(ServiceStatusText("cluster member", view),
            "candidate term 5, no coordinator; plan p-1 Halted 1/3");
}

// A raw record is allowed (`plan commit --payload`): not called unreadable,
// whether it decodes as no plan or not at all.
TEST(ServiceStatusTextTest, ARawRecordIsSaidToHoldNoFleetPlan) {
  v1::LeaderView view = ViewOf("Leader", 2);
  view.mutable_committed()->set_payload("\xff\xff not a plan");
  EXPECT_EQ(ServiceStatusText("cluster member", view), "coordinator term 2; raw record, no fleet plan");
  view.mutable_committed()->set_payload("plan-A");
  EXPECT_EQ(ServiceStatusText("cluster member", view), "coordinator term 2; raw record, no fleet plan");
}

TEST(ServiceStatusTextTest, LongPlanIdIsCut) {
  v1::LeaderView view = ViewOf("Leader", 1);
  CommitPlan(view, std::string(200, 'p'), v1::PLAN_PHASE_DRAFT, {v1::PLAN_NODE_PHASE_PENDING});
  EXPECT_EQ(ServiceStatusText("cluster member", view),
            "coordinator term 1; plan " + std::string(64, 'p') + " Draft 0/1");
}

TEST(ServiceStatusTextTest, WithoutClusterOrAnswer) {
  EXPECT_EQ(ServiceStatusText("standalone", std::nullopt), "standalone; no cluster");
  EXPECT_EQ(ServiceStatusText("cluster member", ViewOf("Leader", 3), false),
            "election not answering");
}

TEST(DecideWatchdogPingTest, PingsWhenEveryLoopProgressedWithinHalfTheInterval) {
  std::vector<LoopProgress> loops{{"agent_api", 9000}, {"election", 8600}};
  WatchdogDecision d = DecideWatchdogPing(10000, 3000, loops);
  EXPECT_TRUE(d.ping);
  EXPECT_EQ(d.why, "");
  // Exactly half the interval is still in time.
  EXPECT_TRUE(DecideWatchdogPing(10000, 2800, loops).ping);
}

TEST(DecideWatchdogPingTest, SkipsAndNamesTheLoopBehind) {
  std::vector<LoopProgress> loops{{"agent_api", 9900}, {"election", 8000}};
  WatchdogDecision d = DecideWatchdogPing(10000, 3000, loops);
  EXPECT_FALSE(d.ping);
  EXPECT_EQ(d.why, "election: no progress for 2000 ms (limit 1500 ms)");
}

TEST(DecideWatchdogPingTest, NamesEveryLoopBehindAndOnesNeverSeen) {
  std::vector<LoopProgress> loops{{"agent_api", 0}, {"election", 1000}};
  WatchdogDecision d = DecideWatchdogPing(10000, 3000, loops);
  EXPECT_FALSE(d.ping);
  EXPECT_EQ(d.why,
            "agent_api: no progress yet; election: no progress for 9000 ms (limit 1500 ms)");
}

TEST(DecideWatchdogPingTest, NeverPingsWithTheWatchdogOff) {
  std::vector<LoopProgress> loops{{"agent_api", 10000}};
  EXPECT_FALSE(DecideWatchdogPing(10000, 0, loops).ping);
}

TEST(DecideWatchdogPingTest, NoLoopsMeansNothingToDoubt) {
  EXPECT_TRUE(DecideWatchdogPing(10000, 3000, {}).ping);
}

}  // namespace
}  // namespace kmsfleet
