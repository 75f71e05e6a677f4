// Fencing of disruptive Agent commands (architecture.md §2 principle 4, §6).
//
// Every disruptive command carries the Fence of the coordinator that sent
// it: the committed plan record (term, index, in_flight) that authorises
// it. An agent keeps a FenceState, persisted before it acts on or answers a
// command, and admits a swap only when
//   - the fence's term is not below the highest term it has seen,
//   - the fence names this node as the one in flight, and
//   - the fence is newer than the last fence at which this node told a
//     coordinator that its operation was finished or never started.
// The last rule is the hand-off: once a node has released its slot at
// (T, I), a command delayed from before that answer, even from the same
// coordinator, can no longer start a second disruption.
//
// Thread-compatible: callers serialise access.
#ifndef KMSFLEET_FENCE_GUARD_H_
#define KMSFLEET_FENCE_GUARD_H_

#include <string>

#include "absl/status/status.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

class FenceGuard {
 public:
  // `persisted` is the last durable FenceState (empty on first start).
  FenceGuard(std::string self, const v1::FenceState& persisted);

  // Admits a swap under `fence`. On success the caller persists state()
  // (if changed) before starting the swap. Errors, with state unchanged:
  // FailedPrecondition with reason STALE_TERM (fence term below the highest
  // seen; metadata fence_term, highest_term), NOT_IN_FLIGHT (the fence
  // names another node), STALE_FENCE (at or below the released fence).
  absl::Status AdmitSwap(const v1::Fence& fence);

  // A coordinator asks, under `fence`, whether this node's operation is
  // finished. `running` is the executor's answer. Raises the highest term
  // and, when not running, records `fence` as released; the caller
  // persists state() before answering. Errors: STALE_TERM as above.
  absl::Status AdmitRelease(const v1::Fence& fence, bool running);

  // Raises the highest term seen (any newer coordinator's message).
  void ObserveTerm(uint64_t term);

  const v1::FenceState& state() const { return state_; }

 private:
  absl::Status CheckTerm(const v1::Fence& fence) const;

  std::string self_;
  v1::FenceState state_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_FENCE_GUARD_H_
