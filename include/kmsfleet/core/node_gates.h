// The gates a plan checks before each node's step (fleet-plan.md §2), as
// one list: the plan machine stops at the first that does not pass, and
// `rollback --dry-run` reports every one (plan_dry_run.h).
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_NODE_GATES_H_
#define KMSFLEET_CORE_NODE_GATES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

struct GuardOutcome {
  std::string guard;    // "node order", "fleet health", "version policy", ...
  absl::Status result;  // OK = pass
  // With a pass, what the operator should still read: the compatibility
  // guard's release notes of the versions crossed.
  std::string note;
};

// The plan's nodes are the coordinator's voters (`self` names it);
// PLAN_MEMBERS_CHANGED naming those that left and those added otherwise.
// Checked before anything else: no node gets a slot while they differ.
absl::Status CheckPlanMembers(const v1::FleetPlan& plan, const std::string& self,
                              const std::vector<std::string>& voters);

// Waits (SOAK_IN_PROGRESS) until the plan's soak after its last finished
// node has run; OK when there is none or it has.
absl::Status CheckSoak(const v1::FleetPlan& plan, int64_t now_unix_ms);

// OpenBao as the gates judge it: a round without a probe waits
// (OPENBAO_UNREACHABLE), as for one that failed.
absl::Status CheckOpenBaoGate(const std::optional<OpenBaoProbe>& probe);

// What the gates read besides the plan.
struct FleetGateInput {
  const std::vector<std::string>& voters;
  const std::vector<NodeView>& views;
  const ParityStreak& parity;  // with this round counted
  const std::optional<OpenBaoProbe>& openbao;
  int64_t now_unix_ms = 0;
};

// After the soak, in the order a plan checks them: "fleet health",
// "parity" (the streak stable over the plan's parity_observations),
// "openbao", "rotation" (the metric of the nodes that answered this round;
// NOT_EVALUATED on the others when these pass). Each is evaluated,
// whatever the one before it said.
std::vector<GuardOutcome> EvaluateFleetGates(const v1::FleetPlan& plan,
                                             const FleetGateInput& in);

// What a plan's end waits on, once no node is left to swap (or to walk
// back): fleet health, then parity stable, then every node on `version`
// (FLEET_NOT_CONVERGED naming those that are not). `in.openbao` is not
// read.
absl::Status CheckCompletion(const v1::FleetPlan& plan, const std::string& version,
                             const FleetGateInput& in);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_NODE_GATES_H_
