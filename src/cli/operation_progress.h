// What `kmsfleetctl node swap|rollback|operation` prints while it follows
// an operation: a line when the phase changes, and the refusal, if any,
// once, as `[REASON] message`, the way every other command reports one.
// Pure: the caller writes the lines.
#ifndef KMSFLEET_CLI_OPERATION_PROGRESS_H_
#define KMSFLEET_CLI_OPERATION_PROGRESS_H_

#include <optional>
#include <string>
#include <vector>

#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

class OperationProgress {
 public:
  // The line for `op` ("<id>: <Phase>"), or nullopt when its phase is the
  // one already printed: WatchOperation sends every journal update, and a
  // refusal closes the journal in the phase it was refused in.
  std::optional<std::string> Next(const v1::Operation& op);

 private:
  std::string printed_phase_;
  bool printed_any_ = false;
};

// "[REASON] message" for an operation that failed or was refused, or ""
// when it carries no reason.
std::string OperationRefusal(const v1::Operation& op);

// What kmsfleetctl adds to a swap refused STATE_CHECKPOINT_NOT_CURRENT
// although `acknowledgements` waived it: an agent that takes the waiver
// marks the operation checkpoint_acknowledged and lets the swap on, so
// this one predates SwapRequest.acknowledgements and ignored it; its own
// remedy ("swap with --acknowledge") would only be refused again. ""
// otherwise.
std::string IgnoredAcknowledgement(const v1::Operation& op,
                                   const std::vector<std::string>& acknowledgements);

// "[REASON] message" for a refused call: the agent's Agent service already
// starts its messages with the reason, other services do not, and the
// reason must show exactly once either way. `reason` "" leaves `message`.
std::string CallRefusal(const std::string& reason, const std::string& message);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_OPERATION_PROGRESS_H_
