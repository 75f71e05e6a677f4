// How a finished node operation reads as a plan result. The coordinator
// (src/cluster/fleet_actions.cc) fills results with it from the agents'
// answers, and the simulator and explorer (tests/sim) from their simulated
// agents, so the plan machine is checked against what it is really given.
#ifndef KMSFLEET_CORE_OPERATION_RESULT_H_
#define KMSFLEET_CORE_OPERATION_RESULT_H_

#include <string>

#include "kmsfleet/core/plan_types.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

// How a journal's phase ends an operation for the plan (kNotFound while
// it runs).
OperationOutcome OutcomeOfPhase(const std::string& phase);

// Fills `r` from an operation that is done. One that ended before it
// stopped the provider (Staged, Preflighted: a doctor failure, a full disk,
// AGENT_RESTARTED after the agent died) failed with the provider untouched:
// a FailedPrecondition carrying the operation's reason, as a refused
// command is. (Read as kNotFound it was sent again under the same id and
// answered the same, forever: the plan hung in Rolling.)
void SetOperationResult(const v1::Operation& operation, ActionResult& r);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_OPERATION_RESULT_H_
