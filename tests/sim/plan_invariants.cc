#include "plan_invariants.h"

namespace kmsfleet::sim {

void SetEndedOutcome(ActionResult& r, SwapPhase ended) {
  switch (ended) {
    case SwapPhase::kStable:
      r.outcome = OperationOutcome::kStable;
      break;
    case SwapPhase::kRolledBack:
      r.outcome = OperationOutcome::kRolledBack;
      r.outcome_message = "the new provider never became ready; restored";
      break;
    default:
      r.outcome = OperationOutcome::kRollbackFailed;
      r.outcome_message = "the previous version did not start either";
      break;
  }
}

std::vector<std::string> ProposalViolations(const std::optional<v1::FleetPlan>& committed,
                                            const v1::FleetPlan& plan,
                                            const std::vector<NodeView>& views,
                                            const std::string& hash, int& in_flight) {
  std::vector<std::string> out;
  in_flight = 0;
  for (const v1::PlanNode& n : plan.nodes()) {
    if (n.phase() != v1::PLAN_NODE_PHASE_IN_FLIGHT) continue;
    ++in_flight;
    if (n.node() != plan.in_flight()) {
      out.push_back("invariant 3: " + n.node() + " is InFlight but the plan names '" +
                    plan.in_flight() + "'");
    }
  }
  if (in_flight > 1) out.push_back("invariant 3: " + std::to_string(in_flight) + " nodes InFlight");
  if (plan.phase() == v1::PLAN_PHASE_BREAK_GLASS && committed &&
      committed->phase() != v1::PLAN_PHASE_BREAK_GLASS &&
      plan.break_glass().nonce() == committed->break_glass().nonce()) {
    out.push_back("break-glass entered again with the old nonce " + plan.break_glass().nonce());
  }
  const bool finishing =
      (plan.phase() == v1::PLAN_PHASE_COMPLETED || plan.phase() == v1::PLAN_PHASE_ROLLED_BACK) &&
      (!committed || committed->phase() != plan.phase());
  if (!finishing) return out;
  const std::string& want = plan.phase() == v1::PLAN_PHASE_COMPLETED ? plan.target_version()
                                                                     : plan.version_before();
  for (const NodeView& v : views) {
    if (!v.state || v.state->provider_version() != want ||
        v.state->key_id_hash_metric() != hash) {
      out.push_back("invariant 5: the plan finishes " + std::string(PlanPhaseName(plan.phase())) +
                    " but the coordinator saw " + v.node + " " +
                    (v.state ? v.state->provider_version() + " " + v.state->key_id_hash_metric()
                             : std::string("unreachable")));
    }
  }
  return out;
}

}  // namespace kmsfleet::sim
