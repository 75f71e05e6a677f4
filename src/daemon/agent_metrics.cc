#include "daemon/agent_metrics.h"

#include "kmsfleet/core/plan_machine.h"

#include <utility>

namespace kmsfleet {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Gauge(std::string name, std::string help, double value,
                   std::vector<ClientMetric::Label> labels) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  return MetricFamily{std::move(name), std::move(help), MetricType::Gauge, {metric}};
}

// Info-style gauges carry a fact as a label with the value 1; a fact not
// observed (empty) exports no series rather than an empty label.
void AddInfo(std::vector<MetricFamily>& out, std::string name, std::string help,
             const std::string& node, const std::string& label, const std::string& value) {
  if (value.empty()) return;
  out.push_back(Gauge(std::move(name), std::move(help), 1, {{"node", node}, {label, value}}));
}

// The committed plan as every member holds it: so any agent's scrape shows
// the fleet's progress, and the series survive a change of coordinator.
void AddPlan(std::vector<MetricFamily>& out, const std::string& node,
             const v1::PlanRecord& committed) {
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan) return;
  out.push_back(Gauge("kmsfleet_plan_phase",
                      "1 for the phase of the newest committed fleet plan, as a label", 1,
                      {{"node", node}, {"phase", std::string(PlanPhaseName(plan->phase()))}}));
  double done = 0;
  for (const v1::PlanNode& n : plan->nodes()) {
    done += n.phase() == v1::PLAN_NODE_PHASE_DONE || n.phase() == v1::PLAN_NODE_PHASE_ROLLED_BACK;
  }
  out.push_back(Gauge("kmsfleet_plan_nodes_completed",
                      "Nodes of the newest committed plan whose step is finished (Done or "
                      "RolledBack)",
                      done, {{"node", node}}));
  out.push_back(Gauge("kmsfleet_plan_nodes", "Nodes the newest committed plan covers",
                      plan->nodes_size(), {{"node", node}}));
  out.push_back(Gauge("kmsfleet_break_glass",
                      "1 while the newest committed plan is in BreakGlass (automation stopped "
                      "until its nonce is acknowledged)",
                      plan->phase() == v1::PLAN_PHASE_BREAK_GLASS ? 1 : 0, {{"node", node}}));
}

}  // namespace

std::vector<MetricFamily> AgentMetricFamilies(const v1::NodeState& state,
                                              const std::optional<v1::LeaderView>& election,
                                              std::optional<bool> fleet_parity) {
  const std::string& node = state.node();
  std::vector<MetricFamily> out;
  out.push_back(Gauge("kmsfleet_node_ready",
                      "1 when the local provider is live and /ready answers 200",
                      state.live() && state.ready() ? 1 : 0, {{"node", node}}));
  AddInfo(out, "kmsfleet_provider_version_info",
          "The release the local provider runs, as a label", node, "version",
          state.provider_version());
  AddInfo(out, "kmsfleet_provider_key_id_hash_info",
          "The key_id hash the local provider reports in openbao_kms_status_key_id_hash",
          node, "hash", state.key_id_hash_metric());
  if (election) {
    out.push_back(Gauge("kmsfleet_is_coordinator",
                        "1 when this agent is the elected coordinator",
                        election->role() == "Leader" ? 1 : 0, {{"node", node}}));
    out.push_back(Gauge("kmsfleet_election_term", "The newest election term this agent has seen",
                        static_cast<double>(election->term()), {{"node", node}}));
    AddPlan(out, node, election->committed());
  }
  // Only the coordinator observes every node; others export no series
  // rather than a guess.
  if (fleet_parity) {
    out.push_back(Gauge("kmsfleet_fleet_key_id_parity",
                        "1 when every voter, at the coordinator's last observation, was "
                        "reachable and reported the same single key_id hash",
                        *fleet_parity ? 1 : 0, {{"node", node}}));
  }
  return out;
}

}  // namespace kmsfleet
