// The dry run (plan_dry_run.h) and the plan's node order.
#include "kmsfleet/core/plan_dry_run.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {

absl::StatusOr<std::vector<std::string>> PlanNodeOrder(
    const PlanMachineConfig& config, const std::vector<std::string>& requested) {
  std::vector<std::string> voters = config.voters;
  std::sort(voters.begin(), voters.end());
  if (requested.empty()) {
    // The coordinator's own node goes last: it keeps coordinating while
    // the others are swapped, and hands over only at the end.
    std::stable_partition(voters.begin(), voters.end(), [&](const auto& n) {
      return n != config.self;
    });
    return voters;
  }
  std::vector<std::string> sorted = requested;
  std::sort(sorted.begin(), sorted.end());
  if (sorted != voters) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kUnknownNode,
                     absl::StrCat("The node order [",
                                  absl::StrJoin(requested, ", "),
                                  "] must name every member exactly once: [",
                                  absl::StrJoin(voters, ", "), "]."));
  }
  return requested;
}

namespace {

absl::Status NotEvaluated(std::string_view what) {
  return MakeError(absl::StatusCode::kFailedPrecondition,
                   reason::kNotEvaluated,
                   absl::StrCat("Not evaluated: ", std::string(what),
                                " were not gathered."));
}

absl::Status VersionGuard(const DryRunInput& in) {
  VersionPolicyInput policy;
  policy.target = in.request.target_version;
  for (const NodeView& v : in.views) {
    policy.running.push_back(
        {v.node, v.state ? v.state->provider_version() : std::string()});
  }
  return CheckVersionPolicy(policy);
}

absl::Status CompatGuard(const PlanMachineConfig& config, const DryRunInput& in) {
  const PlanRequest& r = in.request;
  return CheckCompatibility({r.facts, r.changelog, r.acknowledgements,
                             ApiServerRestartUnconfigured(config.voters, in.views)});
}

// A node a guard could not be evaluated on, and why.
struct Unevaluated {
  std::string node;
  std::string why;
};

// "cp-1, cp-2 (why), cp-3 (other why)": nodes with the same reason are
// named together, in the order seen, so that a fleet of static-pod nodes
// reads as one sentence, not the same one three times.
absl::Status NotEvaluatedOn(std::string_view what, const std::vector<Unevaluated>& nodes) {
  std::vector<std::pair<std::string, std::vector<std::string>>> by_why;  // in order seen
  for (const Unevaluated& n : nodes) {
    auto same = std::find_if(by_why.begin(), by_why.end(),
                             [&](const auto& group) { return group.first == n.why; });
    if (same == by_why.end()) same = by_why.insert(by_why.end(), {n.why, {}});
    same->second.push_back(n.node);
  }
  std::vector<std::string> groups;
  for (const auto& [why, named] : by_why) {
    groups.push_back(absl::StrCat(absl::StrJoin(named, ", "), " (", why, ")"));
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated,
                   absl::StrCat("Not evaluated on ", absl::StrJoin(groups, ", "), ": ",
                                std::string(what),
                                " runs there in the real run's Preflight, before any swap."));
}

Unevaluated NodeAndWhy(const std::string& node, const absl::Status& why) {
  return {node, std::string(why.message())};
}

// What `node` reported in the round, or nothing.
const v1::NodeState* StateOf(const std::vector<NodeView>& views, const std::string& node) {
  const NodeView* view = FindView(views, node);
  return view && view->state ? &*view->state : nullptr;
}

// The upgrade asked acknowledges a registry checkpoint that is not current.
bool CheckpointAcknowledged(const DryRunInput& in) {
  return Acknowledged(in.request.acknowledgements, reason::kAckStateCheckpointNotCurrent);
}

// rotation-plan of the installed release, where it stands for the real
// run's; a refusal from any node shows, else a node not evaluated does.
absl::Status RotationOfReadOnly(const std::vector<NodeReadOnlyChecks>& nodes,
                                const std::vector<NodeView>& views,
                                bool checkpoint_acknowledged) {
  std::vector<NodeRotation> evaluated;
  std::vector<Unevaluated> missing;
  for (const NodeReadOnlyChecks& n : nodes) {
    const absl::Status& report = n.rotation.report.status();
    if (!n.unavailable.ok()) {
      missing.push_back(NodeAndWhy(n.node, n.unavailable));
    } else if (ReasonOf(report) == reason::kNotEvaluated) {
      missing.push_back(NodeAndWhy(n.node, report));
    } else {
      evaluated.push_back(n.rotation);
      const v1::NodeState* state = StateOf(views, n.node);
      evaluated.back().metric_state = state ? state->rotation_state() : "";
    }
  }
  KMSFLEET_RETURN_IF_ERROR(CheckRotation(evaluated, checkpoint_acknowledged));
  if (missing.empty()) return absl::OkStatus();
  KMSFLEET_RETURN_IF_ERROR(CheckRotationMetric(views));
  return NotEvaluatedOn("rotation-plan", missing);
}

absl::Status RotationGuard(const DryRunInput& in) {
  if (in.rotation) return CheckRotation(*in.rotation, CheckpointAcknowledged(in));
  if (in.read_only) {
    return RotationOfReadOnly(*in.read_only, in.views, CheckpointAcknowledged(in));
  }
  // The metric can refuse, never pass alone: only rotation-plan sees a key
  // rotated in Transit that the provider still reports active.
  KMSFLEET_RETURN_IF_ERROR(CheckRotationMetric(in.views));
  return NotEvaluated("rotation-plan results");
}

// Whether each node keeps the release it runs now for a rollback, from
// the read-only checks.
absl::Status ReadinessOfReadOnly(const std::vector<NodeReadOnlyChecks>& nodes,
                                 const std::vector<NodeView>& views) {
  std::vector<NodeArtifact> evaluated;
  std::vector<Unevaluated> missing;
  for (const NodeReadOnlyChecks& n : nodes) {
    if (!n.unavailable.ok()) {
      missing.push_back(NodeAndWhy(n.node, n.unavailable));
      continue;
    }
    const v1::NodeState* state = StateOf(views, n.node);
    evaluated.push_back({n.node, state ? state->provider_version() : "", n.previous_kept});
  }
  KMSFLEET_RETURN_IF_ERROR(CheckRollbackReadiness(evaluated));
  if (missing.empty()) return absl::OkStatus();
  return NotEvaluatedOn("the check of the kept release", missing);
}

absl::Status ReadinessGuard(const DryRunInput& in) {
  if (in.artifacts) return CheckRollbackReadiness(*in.artifacts);
  if (in.read_only) return ReadinessOfReadOnly(*in.read_only, in.views);
  return NotEvaluated("previous artifacts");
}

}  // namespace

bool RefusesTheStart(std::string_view guard) {
  // What a start checks (PlanStep::HandleStart, plan_commands_core.cc).
  for (std::string_view g : {"active plan", "settings", "node order", "fleet health",
                             "version policy", "compatibility", "openbao"}) {
    if (guard == g) return true;
  }
  return false;
}

// The streak with this round counted too (a copy: the dry run changes
// nothing), as the machine counts it when it steps on the round. Found in
// review: the streak alone passed a round whose hashes split.
absl::Status ParityWithThisRound(ParityStreak streak, const std::vector<NodeView>& views,
                                 int32_t observations) {
  streak.Observe(views);
  return CheckParityStable(streak, observations);
}

NodeReadOnlyChecks ReadOnlyChecksOf(const std::string& node,
                                    const absl::StatusOr<v1::PreflightResponse>& answer) {
  NodeReadOnlyChecks n;
  n.node = node;
  // It ignored installed_only and ran a preflight of no version (refused),
  // or of one.
  const bool predates = answer.ok() ? !answer->version().empty()
                                    : ReasonOf(answer.status()) == reason::kInvalidSemver;
  if (predates) {
    n.unavailable = MakeError(absl::StatusCode::kUnimplemented, reason::kNotEvaluated,
                              "its kmsfleetd predates the dry run's read-only preflight");
  } else if (!answer.ok()) {
    n.unavailable = answer.status();
  } else {
    n.rotation = RotationOfPreflight(node, "", *answer);
    n.previous_kept = answer->previous_artifact_verified();
  }
  return n;
}

DryRunReport EvaluateDryRun(const PlanMachineConfig& config,
                            const DryRunInput& in) {
  DryRunReport report;
  absl::StatusOr<std::vector<std::string>> order =
      PlanNodeOrder(config, in.request.order);
  if (order.ok()) report.order = *order;
  auto add = [&](std::string guard, absl::Status result) {
    report.guards.push_back({std::move(guard), std::move(result), ""});
  };
  add("active plan", CheckNoActivePlan(in.current));
  add("settings", CheckPlanSettings(in.request.settings));
  add("node order", order.status());
  add("fleet health", CheckFleetHealth(config.voters, in.views, in.now_unix_ms));
  add("version policy", VersionGuard(in));
  add("compatibility", CompatGuard(config, in));
  if (report.guards.back().result.ok() && in.request.facts.notes_size() > 0) {
    report.guards.back().note =
        "release notes: " + absl::StrJoin(in.request.facts.notes(), "; ");
  }
  add("openbao", in.openbao ? CheckOpenBaoHealth(*in.openbao)
                            : NotEvaluated("OpenBao health"));
  const int32_t observations = in.request.settings.parity_observations() > 0
                                   ? in.request.settings.parity_observations()
                                   : kDefaultParityObservations;
  add("parity", in.parity ? ParityWithThisRound(*in.parity, in.views, observations)
                          : CheckParityOnce(in.views));
  add("rotation", RotationGuard(in));
  add("doctor", in.doctor ? CheckDoctor(*in.doctor)
                          : NotEvaluated("doctor results"));
  add("rollback readiness", ReadinessGuard(in));
  report.would_start = std::all_of(
      report.guards.begin(), report.guards.end(),
      [](const GuardOutcome& g) { return g.result.ok(); });
  return report;
}

namespace {

// The nodes a rollback walks back, in its order: those the plan upgraded
// (Done, or in flight once the first was given its slot), the last first
// (PlanStep::DecideNextNode).
std::vector<std::string> WalkBackOrder(const v1::FleetPlan& plan) {
  std::vector<std::string> order;
  for (auto n = plan.nodes().rbegin(); n != plan.nodes().rend(); ++n) {
    if (n->phase() == v1::PLAN_NODE_PHASE_DONE || n->phase() == v1::PLAN_NODE_PHASE_IN_FLIGHT) {
      order.push_back(n->node());
    }
  }
  return order;
}

}  // namespace

DryRunReport EvaluateRollbackDryRun(const PlanMachineConfig& config, const PlanMachine& machine,
                                    const PlanInput& round, const std::string& who) {
  PlanMachine copy = machine;
  PlanInput in = round;
  in.results.clear();
  in.command = OperatorCommand{};
  in.command->kind = CommandKind::kRollback;
  in.command->who = who;
  const PlanReady ready = copy.Step(in);
  DryRunReport report;
  report.guards.push_back({"rollback", ready.refusal, ""});
  const bool accepted = ready.refusal.ok() && ready.plan.has_value();
  // The gates read the plan as the command leaves it; a refused command
  // leaves it as committed.
  const std::optional<v1::FleetPlan>& plan = accepted ? ready.plan : machine.committed();
  if (!plan) return report;
  report.guards.push_back({"members", CheckPlanMembers(*plan, config.self, config.voters), ""});
  if (accepted) report.order = WalkBackOrder(*plan);
  const FleetGateInput gates = {.voters = config.voters, .views = in.views,
                                .parity = copy.parity(), .openbao = in.openbao,
                                .now_unix_ms = in.now_unix_ms};
  if (accepted && report.order.empty()) {
    // Nothing to walk back: the rollback ends the plan RolledBack, in
    // this same Step, once the fleet is healthy, in parity and on the
    // version before (PlanStep::DecideCompletion).
    report.guards.push_back(
        {"completion", CheckCompletion(*plan, plan->version_before(), gates), ""});
  } else {
    report.guards.push_back({"soak", CheckSoak(*plan, in.now_unix_ms), ""});
    for (GuardOutcome& gate : EvaluateFleetGates(*plan, gates)) {
      report.guards.push_back(std::move(gate));
    }
  }
  // What the copy did: the first node given its slot, or the plan ended.
  report.would_start = accepted && (!ready.plan->in_flight().empty() ||
                                    ready.plan->phase() == v1::PLAN_PHASE_ROLLED_BACK);
  return report;
}

}  // namespace kmsfleet
