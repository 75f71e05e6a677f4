#include "cli/operation_progress.h"

#include <algorithm>

#include "kmsfleet/core/reasons.h"

namespace kmsfleet {

std::optional<std::string> OperationProgress::Next(const v1::Operation& op) {
  if (printed_any_ && op.phase() == printed_phase_) return std::nullopt;
  printed_any_ = true;
  printed_phase_ = op.phase();
  return op.operation_id() + ": " + op.phase();
}

std::string OperationRefusal(const v1::Operation& op) {
  if (op.reason().empty()) return "";
  return "[" + op.reason() + "] " + op.message();
}

std::string IgnoredAcknowledgement(const v1::Operation& op,
                                   const std::vector<std::string>& acknowledgements) {
  const std::string code = reason::kAckStateCheckpointNotCurrent;
  if (op.reason() != reason::kStateCheckpointNotCurrent || op.checkpoint_acknowledged() ||
      std::find(acknowledgements.begin(), acknowledgements.end(), code) == acknowledgements.end()) {
    return "";
  }
  return "the agent did not take --acknowledge " + code +
         ": its kmsfleetd predates the flag and refuses the checkpoint whatever it says. "
         "Upgrade kmsfleetd on this node first; `bao-kms-provider verify-key` there says "
         "why its checkpoint is not current (docs/runbooks/upgrade.md, section 1)";
}

std::string CallRefusal(const std::string& reason, const std::string& message) {
  if (reason.empty()) return message;
  std::string prefix = "[" + reason + "]";
  if (message.rfind(prefix, 0) == 0) return message;
  return prefix + " " + message;
}

}  // namespace kmsfleet
