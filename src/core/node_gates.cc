// The gates before each node's step (node_gates.h).
#include "kmsfleet/core/node_gates.h"

#include <algorithm>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

// The gates observe the voters only: a plan node that is no longer one
// could be down unseen while another is swapped, and a voter the plan
// lacks would never be upgraded.
absl::Status CheckPlanMembers(const v1::FleetPlan& plan, const std::string& self,
                              const std::vector<std::string>& voter_list) {
  std::set<std::string> planned, voters(voter_list.begin(), voter_list.end());
  for (const v1::PlanNode& n : plan.nodes()) planned.insert(n.node());
  if (planned == voters) return absl::OkStatus();
  std::vector<std::string> left, added;
  std::set_difference(planned.begin(), planned.end(), voters.begin(), voters.end(),
                      std::back_inserter(left));
  std::set_difference(voters.begin(), voters.end(), planned.begin(), planned.end(),
                      std::back_inserter(added));
  std::vector<std::string> nodes = left;
  nodes.insert(nodes.end(), added.begin(), added.end());
  std::string differ;
  if (!left.empty()) absl::StrAppend(&differ, " not voters now: ", absl::StrJoin(left, ", "), ";");
  if (!added.empty()) {
    absl::StrAppend(&differ, " voters not in the plan: ", absl::StrJoin(added, ", "), ";");
  }
  return internal::Refuse(
      reason::kPlanMembersChanged,
      absl::StrCat("Plan ", plan.plan_id(), " covers ", absl::StrJoin(planned, ", "),
                   ", but coordinator ", self, "'s voters are ", absl::StrJoin(voters, ", "),
                   " (", differ.substr(1), " no node is given a slot while they differ)."),
      "Restore cluster.voters on every agent to the plan's nodes (the plan goes on by "
      "itself), or abort the plan.",
      nodes);
}

absl::Status CheckSoak(const v1::FleetPlan& plan, int64_t now_unix_ms) {
  int64_t last_done = 0;
  for (const v1::PlanNode& n : plan.nodes()) last_done = std::max(last_done, n.done_unix_ms());
  const int64_t soak_until = last_done + plan.settings().soak_ms();
  if (last_done == 0 || now_unix_ms >= soak_until) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kSoakInProgress,
                   absl::StrCat("Soaking until unix_ms ", soak_until, " (",
                                (soak_until - now_unix_ms) / 1000, " s left)."));
}

absl::Status CheckOpenBaoGate(const std::optional<OpenBaoProbe>& probe) {
  if (probe) return CheckOpenBaoHealth(*probe);
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOpenBaoUnreachable,
                   "OpenBao has not been probed yet.");
}

namespace {

// The rotation metric of the nodes that answered this round (the
// coordinator keeps the last state of one that no longer does). One that
// did not is fleet health's to name, not a rotation of unknown state; with
// the others active, the gate is NOT_EVALUATED on it, never a pass.
absl::Status RotationOfAnswered(const std::vector<NodeView>& views) {
  std::vector<NodeView> answered;
  std::vector<std::string> silent;
  for (const NodeView& v : views) {
    if (v.state && v.unreachable_since_unix_ms == 0) {
      answered.push_back(v);
    } else {
      silent.push_back(v.node);
    }
  }
  if (absl::Status s = CheckRotationMetric(answered); !s.ok() || silent.empty()) return s;
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated,
                   absl::StrCat("Not evaluated on ", absl::StrJoin(silent, ", "),
                                ": no state this round (fleet health names why)."));
}

}  // namespace

std::vector<GuardOutcome> EvaluateFleetGates(const v1::FleetPlan& plan,
                                             const FleetGateInput& in) {
  return {
      {"fleet health", CheckFleetHealth(in.voters, in.views, in.now_unix_ms), ""},
      {"parity", CheckParityStable(in.parity, plan.settings().parity_observations()), ""},
      {"openbao", CheckOpenBaoGate(in.openbao), ""},
      {"rotation", RotationOfAnswered(in.views), ""},
  };
}

absl::Status CheckCompletion(const v1::FleetPlan& plan, const std::string& version,
                             const FleetGateInput& in) {
  absl::Status s = CheckFleetHealth(in.voters, in.views, in.now_unix_ms);
  if (s.ok()) s = CheckParityStable(in.parity, plan.settings().parity_observations());
  if (!s.ok()) return s;
  std::vector<std::string> off;
  for (const NodeView& v : in.views) {
    if (v.state && v.state->provider_version() != version) {
      off.push_back(absl::StrCat(v.node, " (", v.state->provider_version(), ")"));
    }
  }
  if (off.empty()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kFleetNotConverged,
                   absl::StrCat("Every node should run ", version, " but ",
                                absl::StrJoin(off, ", "), " do not."));
}

}  // namespace kmsfleet
