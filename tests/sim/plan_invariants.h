// What the random simulator (sim_plan.cc, sim_executor.cc) and the
// exhaustive explorer (explore_plan.cc) both check of the real plan
// machine, and how both worlds' agents report an ended operation, in one
// place so the two harnesses cannot drift apart.
#ifndef KMSFLEET_TESTS_SIM_PLAN_INVARIANTS_H_
#define KMSFLEET_TESTS_SIM_PLAN_INVARIANTS_H_

#include <optional>
#include <string>
#include <vector>

#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/swap_machine.h"

namespace kmsfleet::sim {

// Fills in `r` (kOperation, for r.operation_id) for an operation that
// ended in `ended` with `reason`, as an agent's WatchOperation reports it
// and the coordinator reads it (SetOperationResult, the shell's own code):
// Stable, RolledBack and RollbackFailed are outcomes; an end before the
// stop (Staged, Preflighted: doctor failed at the swap, the agent
// restarted) is a failed command carrying the reason, the provider
// untouched.
void SetEndedOutcome(ActionResult& r, SwapPhase ended, const std::string& reason = "");

// A plan proposed by a coordinator, before it goes to the election:
//   invariant 3: at most one node InFlight, the one the plan names
//     (`in_flight` is set to how many are);
//   a break-glass entered anew has a new nonce;
//   no auto-rollback starts after a node's manifest refused its swap;
//   invariant 5: a plan that finishes (Completed, RolledBack) does so on
//     what its coordinator saw: every node on the plan's version, with
//     `hash`.
// `committed` is the coordinator's last committed plan. Returns one line
// per violation; empty when none.
std::vector<std::string> ProposalViolations(const std::optional<v1::FleetPlan>& committed,
                                            const v1::FleetPlan& plan,
                                            const std::vector<NodeView>& views,
                                            const std::string& hash, int& in_flight);

// A Step taken on the last round again (PlanInput::views_fresh false) read
// no view: it may record results and issue what they call for, but it
// puts no node in flight and sends no swap or rollback. `committed` is the
// coordinator's last committed plan. One line per violation.
std::vector<std::string> LastRoundViolations(const std::optional<v1::FleetPlan>& committed,
                                             const PlanReady& ready);

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_PLAN_INVARIANTS_H_
