// `kmsfleetctl upgrade --dry-run` as a pure function (issue 9): the node
// order a plan would take and every guard's result, evaluated exactly as a
// real run evaluates them, without stopping at the first refusal and
// without changing anything. The shell gathers the same observations a
// plan uses, plus the non-disruptive preflight results (doctor with the
// new binary, rotation-plan, the previous artifact) when it has them.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PLAN_DRY_RUN_H_
#define KMSFLEET_CORE_PLAN_DRY_RUN_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/node_gates.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/plan_types.h"

namespace kmsfleet {

// One node's answer to the dry run's read-only preflight
// (PreflightRequest.installed_only), or why there is none.
struct NodeReadOnlyChecks {
  std::string node;
  absl::Status unavailable;  // not OK: nothing was learned (the call failed)
  // rotation-plan of the installed release (metric_state is filled from
  // the round); a report whose status is NOT_EVALUATED cannot stand for
  // the real run's check on this node.
  NodeRotation rotation;
  bool previous_kept = false;  // PreflightResponse.previous_artifact_verified
};

// The read-only checks of `node` from its agent's answer to
// PreflightRequest{installed_only: true}: an agent older than the field
// runs a full preflight of no version instead, refused INVALID_SEMVER (an
// answer naming a version would be one too).
NodeReadOnlyChecks ReadOnlyChecksOf(const std::string& node,
                                    const absl::StatusOr<v1::PreflightResponse>& answer);

struct DryRunInput {
  PlanRequest request;
  // The plan the coordinator holds (committed), if any: one that has not
  // finished refuses a start (PLAN_ACTIVE), as a real run does first.
  std::optional<v1::FleetPlan> current;
  int64_t now_unix_ms = 0;
  std::vector<NodeView> views;
  std::optional<OpenBaoProbe> openbao;
  // The coordinator's parity streak over its rounds (PlanMachine::parity),
  // before `views`: the parity guard counts `views` on a copy of it and
  // asks for as many consecutive rounds as a real run does. Without it,
  // the views alone are checked once.
  std::optional<ParityStreak> parity;
  // Per node, when preflight ran; a guard without its inputs reports
  // that it was not evaluated (never a pass).
  std::optional<std::vector<NodeDoctor>> doctor;
  std::optional<std::vector<NodeRotation>> rotation;
  std::optional<std::vector<NodeArtifact>> artifacts;
  // Without `rotation` and `artifacts`: what the nodes could say with
  // nothing staged. A node without an answer leaves its guard
  // NOT_EVALUATED, unless another node's answer already refuses.
  std::optional<std::vector<NodeReadOnlyChecks>> read_only;
};

struct DryRunReport {
  std::vector<std::string> order;  // empty when the order is refused
  std::vector<GuardOutcome> guards;  // in the order a real run checks them
  // True when every guard passed: a real run would start.
  bool would_start = false;
};

// Evaluates, in order: node order, fleet health, version policy,
// compatibility (with acknowledgements and the restart method), parity
// (one observation), OpenBao, rotation (rotation-plan when given, else
// the read-only checks' rotation-plan, else the metric, which may refuse
// but is not evaluated alone), doctor, rollback readiness (the artifacts,
// else the read-only checks). A guard lacking its inputs is
// FailedPrecondition with reason NOT_EVALUATED.
DryRunReport EvaluateDryRun(const PlanMachineConfig& config,
                            const DryRunInput& input);

// Whether a refusal of `guard` (a DryRunReport guard name) refuses a plan's
// start. The others hold a started plan in Preflight until they pass.
bool RefusesTheStart(std::string_view guard);

// `kmsfleetctl rollback --dry-run`: the rollback command's own answer
// ("rollback"), decided by a copy of `machine` stepped on `round` with the
// command (its proposal thrown away); then, on the same round and the
// copy's parity streak, each whatever the others said: "members"
// (CheckPlanMembers), and the gates the walk back's first node waits on
// ("soak", then EvaluateFleetGates'), or, with no node to walk back,
// "completion": what ending the plan RolledBack waits on (CheckCompletion).
// The order is the walk back's: the nodes the plan upgraded, the last
// first (empty when the command is refused or there are none). With no
// plan at all, only the command's refusal. would_start: the copy gave the
// first node its slot, or ended the plan RolledBack.
DryRunReport EvaluateRollbackDryRun(const PlanMachineConfig& config, const PlanMachine& machine,
                                    const PlanInput& round, const std::string& who);

// Whether a refusal of `guard` in a rollback's dry run refuses the
// rollback itself; the gates hold a started rollback before its first
// node instead.
inline bool RefusesTheRollback(std::string_view guard) { return guard == "rollback"; }

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PLAN_DRY_RUN_H_
