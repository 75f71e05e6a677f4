#include "kmsfleet/core/operation_result.h"

#include "kmsfleet/core/caller_auth.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

OperationOutcome OutcomeOfPhase(const std::string& phase) {
  if (phase == "Stable") return OperationOutcome::kStable;
  if (phase == "RolledBack") return OperationOutcome::kRolledBack;
  if (phase == "RollbackFailed") return OperationOutcome::kRollbackFailed;
  return OperationOutcome::kNotFound;
}

void SetOperationResult(const v1::Operation& operation, ActionResult& r) {
  r.outcome = OutcomeOfPhase(operation.phase());
  r.outcome_reason = operation.reason();
  r.outcome_message = operation.message();
  if (r.outcome != OperationOutcome::kNotFound) return;
  const std::string& phase = operation.phase();
  if (phase != "Idle" && phase != "Staged" && phase != "Preflighted") {
    // Closed past the stop without an ending: no path of the executor's
    // does that, but if one did, the provider's state is unknown. Read as
    // untouched, it could be sent again (AGENT_RESTARTED); read as
    // RollbackFailed, it stops the plan for an operator.
    r.outcome = OperationOutcome::kRollbackFailed;
    r.outcome_message = "operation " + operation.operation_id() + " ended " + phase +
                        ", past the provider's stop without an ending, so its state is "
                        "unknown: " + operation.message();
    return;
  }
  r.status = MakeError(absl::StatusCode::kFailedPrecondition,
                       operation.reason().empty() ? std::string(reason::kSwapFailedRestored)
                                                  : operation.reason(),
                       "operation " + operation.operation_id() + " ended " + operation.phase() +
                           " before it stopped the provider: " + operation.message());
}

absl::Status CommandRefusalForPlan(absl::Status refusal) {
  const std::string why = ReasonOf(refusal);
  const bool says_nothing_of_the_command = why == reason::kOperationInProgress ||
                                           why == reason::kJournalCorrupt ||
                                           IsCallerRefusal(why);
  if (!says_nothing_of_the_command) return refusal;
  return MakeError(absl::StatusCode::kUnavailable, why, std::string(refusal.message()));
}

void SetHandOffResult(const absl::Status& asked, ActionResult& r) {
  r.kind = ResultKind::kHandOff;
  r.released = asked.ok();
  if (asked.ok() || ReasonOf(asked) == reason::kNotReleasable) return;
  const std::string why = ReasonOf(asked);
  r.status = MakeError(absl::StatusCode::kUnavailable,
                       why.empty() ? std::string(reason::kAgentUnreachable) : why,
                       std::string(asked.message()));
}

bool AsksAgainAtOnce(const ActionResult& r) {
  if (absl::IsUnavailable(r.status)) return true;
  return r.kind == ResultKind::kOperation && r.status.ok() &&
         r.outcome == OperationOutcome::kNotFound;
}

WatchEnd ReadWatchEnd(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound: return WatchEnd::kNotFound;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kDataLoss:
      return WatchEnd::kFailed;
    default:
      // OK (the server closed the stream), deadline, cancel, Unavailable,
      // Aborted, Internal, Unknown, ResourceExhausted: open it again.
      return WatchEnd::kOpenAgain;
  }
}

WatchEnd NextFollowStep(absl::StatusCode end, bool heard, int& silent_in_a_row) {
  const WatchEnd read = ReadWatchEnd(end);
  if (read != WatchEnd::kOpenAgain) return read;
  silent_in_a_row = heard ? 0 : silent_in_a_row + 1;
  return silent_in_a_row >= kSilentWatchesBeforeUnreachable ? WatchEnd::kFailed
                                                             : WatchEnd::kOpenAgain;
}

void SetFollowFailed(const absl::Status& why, const std::string& operation_id,
                     ActionResult& r) {
  const std::string reason = ReasonOf(why);
  r.status = MakeError(absl::StatusCode::kUnavailable,
                       reason.empty() ? std::string(reason::kAgentUnreachable) : reason,
                       "cannot follow " + operation_id + ", so its outcome is unknown: " +
                           std::string(why.message()));
}

}  // namespace kmsfleet
