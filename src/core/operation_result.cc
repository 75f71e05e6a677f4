#include "kmsfleet/core/operation_result.h"

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
  r.status = MakeError(absl::StatusCode::kFailedPrecondition,
                       operation.reason().empty() ? std::string(reason::kSwapFailedRestored)
                                                  : operation.reason(),
                       "operation " + operation.operation_id() + " ended " + operation.phase() +
                           " before it stopped the provider: " + operation.message());
}

}  // namespace kmsfleet
