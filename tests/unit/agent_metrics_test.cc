// kmsfleetd's metric families from one observation (daemon/agent_metrics.h).
#include "daemon/agent_metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace kmsfleet {
namespace {

std::map<std::string, const prometheus::MetricFamily*> ByName(
    const std::vector<prometheus::MetricFamily>& families) {
  std::map<std::string, const prometheus::MetricFamily*> out;
  for (const auto& f : families) out[f.name] = &f;
  return out;
}

v1::NodeState Ready(const std::string& version, const std::string& hash) {
  v1::NodeState s;
  s.set_node("cp-2");
  s.set_live(true);
  s.set_ready(true);
  s.set_provider_version(version);
  s.set_key_id_hash_metric(hash);
  return s;
}

TEST(AgentMetricsTest, TheCoordinatorSaysSoAndItsTerm) {
  v1::LeaderView view;
  view.set_role("Leader");
  view.set_term(7);
  auto families = AgentMetricFamilies(Ready("0.2.0", "h"), view);
  auto by = ByName(families);
  ASSERT_TRUE(by.count("kmsfleet_is_coordinator"));
  EXPECT_EQ(by["kmsfleet_is_coordinator"]->metric[0].gauge.value, 1);
  EXPECT_EQ(by["kmsfleet_election_term"]->metric[0].gauge.value, 7);
  view.set_role("Follower");
  by = ByName(families = AgentMetricFamilies(Ready("0.2.0", "h"), view));
  EXPECT_EQ(by["kmsfleet_is_coordinator"]->metric[0].gauge.value, 0);
}

TEST(AgentMetricsTest, TheCommittedPlanShowsItsPhaseAndProgress) {
  v1::LeaderView view;
  view.set_role("Follower");
  auto by = ByName(AgentMetricFamilies(Ready("0.2.0", "h"), view));
  EXPECT_FALSE(by.count("kmsfleet_plan_phase")) << "no plan, no plan series";
  v1::FleetPlan plan;
  plan.set_plan_id("plan-1");  // a payload without one is no plan (FleetPlanIn)
  plan.set_phase(v1::PLAN_PHASE_BREAK_GLASS);
  for (auto phase : {v1::PLAN_NODE_PHASE_DONE, v1::PLAN_NODE_PHASE_FAILED,
                     v1::PLAN_NODE_PHASE_PREFLIGHTED}) {
    plan.add_nodes()->set_phase(phase);
  }
  view.mutable_committed()->set_payload(plan.SerializeAsString());
  auto families = AgentMetricFamilies(Ready("0.2.0", "h"), view);
  by = ByName(families);
  ASSERT_TRUE(by.count("kmsfleet_plan_phase"));
  EXPECT_EQ(by["kmsfleet_plan_phase"]->metric[0].label[1].value, "BreakGlass");
  EXPECT_EQ(by["kmsfleet_plan_nodes_completed"]->metric[0].gauge.value, 1);
  EXPECT_EQ(by["kmsfleet_plan_nodes"]->metric[0].gauge.value, 3);
  EXPECT_EQ(by["kmsfleet_break_glass"]->metric[0].gauge.value, 1);
}

TEST(AgentMetricsTest, FleetParityIsExportedOnlyWhereItIsKnown) {
  v1::LeaderView view;
  view.set_role("Follower");
  EXPECT_FALSE(ByName(AgentMetricFamilies(Ready("0.2.0", "h"), view))
                   .count("kmsfleet_fleet_key_id_parity"))
      << "a follower does not observe the fleet: no series, not a guess";
  view.set_role("Leader");
  auto families = AgentMetricFamilies(Ready("0.2.0", "h"), view, true);
  auto by = ByName(families);
  ASSERT_TRUE(by.count("kmsfleet_fleet_key_id_parity"));
  EXPECT_EQ(by["kmsfleet_fleet_key_id_parity"]->metric[0].gauge.value, 1);
  families = AgentMetricFamilies(Ready("0.2.0", "h"), view, false);
  by = ByName(families);
  EXPECT_EQ(by["kmsfleet_fleet_key_id_parity"]->metric[0].gauge.value, 0);
}

TEST(AgentMetricsTest, AFactNotObservedExportsNoSeries) {
  v1::NodeState unready = Ready("", "");
  unready.set_ready(false);
  auto families = AgentMetricFamilies(unready, std::nullopt);
  auto by = ByName(families);
  EXPECT_EQ(by["kmsfleet_node_ready"]->metric[0].gauge.value, 0);
  EXPECT_FALSE(by.count("kmsfleet_provider_version_info"));
  EXPECT_FALSE(by.count("kmsfleet_provider_key_id_hash_info"));
  EXPECT_FALSE(by.count("kmsfleet_election_term")) << "no election, no election series";
}

TEST(AgentMetricsTest, InfoSeriesCarryTheFactAsALabel) {
  auto families = AgentMetricFamilies(Ready("0.1.0-preview.3", "VPIZk"), std::nullopt);
  auto by = ByName(families);
  const auto& version = by["kmsfleet_provider_version_info"]->metric[0];
  EXPECT_EQ(version.gauge.value, 1);
  ASSERT_EQ(version.label.size(), 2u);
  EXPECT_EQ(version.label[1].name, "version");
  EXPECT_EQ(version.label[1].value, "0.1.0-preview.3");
  EXPECT_EQ(by["kmsfleet_provider_key_id_hash_info"]->metric[0].label[1].value, "VPIZk");
}

}  // namespace
}  // namespace kmsfleet
