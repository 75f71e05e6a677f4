// The gates before each node's step (node_gates.h).
#include "kmsfleet/core/node_gates.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

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

std::vector<GuardOutcome> EvaluateFleetGates(const v1::FleetPlan& plan,
                                             const FleetGateInput& in) {
  return {
      {"fleet health", CheckFleetHealth(in.voters, in.views, in.now_unix_ms), ""},
      {"parity", CheckParityStable(in.parity, plan.settings().parity_observations()), ""},
      {"openbao", CheckOpenBaoGate(in.openbao), ""},
      {"rotation", CheckRotationMetric(in.views), ""},
  };
}

}  // namespace kmsfleet
