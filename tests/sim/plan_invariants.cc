#include "plan_invariants.h"

#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/reasons.h"

namespace kmsfleet::sim {

void SetEndedOutcome(ActionResult& r, SwapPhase ended, const std::string& reason) {
  v1::Operation operation;
  operation.set_operation_id(r.operation_id);
  operation.set_phase(std::string(PhaseName(ended)));
  operation.set_done(true);
  operation.set_reason(reason);
  switch (ended) {
    case SwapPhase::kStable:
      break;
    case SwapPhase::kRolledBack:
      operation.set_message("the new provider never became ready; restored");
      break;
    case SwapPhase::kRollbackFailed:
      operation.set_message("the previous version did not start either");
      break;
    default:
      operation.set_message("it failed before the stop; nothing was touched");
      break;
  }
  SetOperationResult(operation, r);
}

std::vector<std::string> LastRoundViolations(const std::optional<v1::FleetPlan>& committed,
                                             const PlanReady& ready) {
  std::vector<std::string> out;
  if (ready.plan && !ready.plan->in_flight().empty() &&
      (!committed || committed->in_flight() != ready.plan->in_flight())) {
    out.push_back("a Step on the last round put " + ready.plan->in_flight() + " in flight");
  }
  for (const PlanAction& a : ready.actions) {
    if (a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode) {
      out.push_back("a Step on the last round sent " + std::string(ActionKindName(a.kind)) +
                    " to " + a.node);
    }
  }
  return out;
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
  // A node's own manifest, edited under its swap, or its disk refusing a
  // write, is nothing failed against the release: walking the other nodes
  // back would restart their providers for nothing (plan_results.cc,
  // WhyNoAutoRollback).
  for (const v1::AuditEntry& a : plan.audit()) {
    for (const char* own : {reason::kManifestChanged, reason::kArtifactIo}) {
      // "Rolling -> RollingBack: auto-rollback after ...", or the same
      // held for a paused plan's resume.
      if (a.what().find("auto-rollback after") != std::string::npos &&
          a.what().find(std::string("(") + own + ")") != std::string::npos) {
        out.push_back("an auto-rollback started for the node's own " + std::string(own) + ": " +
                      a.what());
      }
    }
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
