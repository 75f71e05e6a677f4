// Fencing of disruptive Agent commands (architecture.md §2 principle 4, §6).
//
// Every disruptive command carries the Fence of the coordinator that sent
// it: the committed plan record (term, index, in_flight) that authorises
// it. An agent keeps a FenceState, persisted before it acts on or answers a
// command, and admits a swap or rollback only when
//   - the fence's term is not below the highest term it has seen,
//   - the fence is newer than the last fence at which this node told a
//     coordinator that its provider was serving (the hand-off), and
//   - the fence names the committed record this node itself holds: the
//     same (term, index), the same in-flight node, and that node is this
//     one. Terms are public (GetLeader), so a fence for a record this node
//     has not seen proves nothing: it is UNKNOWN_FENCE until the record's
//     commit reaches the node with the coordinator's next heartbeat.
// The hand-off rule: once a node has released its slot at (T, I), a
// command delayed from before that answer, even from the same coordinator,
// can no longer start a second disruption. A node releases only when its
// last operation left the provider serving (DecideHandoff).
//
// Thread-compatible: callers serialise access.
#ifndef KMSFLEET_CORE_FENCE_GUARD_H_
#define KMSFLEET_CORE_FENCE_GUARD_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

// A node's answer to a hand-off query at one fence.
struct HandoffAnswer {
  v1::HandoffOutcome outcome = v1::HANDOFF_UNKNOWN;
  std::string detail;  // names the operation and phase behind the outcome
  // The last operation that touched the unit, whatever its fence, and the
  // phase it ended in ("" when none did, or the answer is not released).
  // A plan that gave the slot back untouched reads from it whether its
  // step ran after all (PlanStep::ApplyHandOff).
  std::string last_operation_id{};
  std::string last_operation_phase{};
};

// True for the outcomes that leave the provider serving and so release the
// in-flight slot: never started, Stable, RolledBack.
bool IsReleasable(v1::HandoffOutcome outcome);

// How the coordinator reads in-flight node `holder`'s answer to its
// hand-off query: OK when it released its slot with a releasable outcome;
// else FailedPrecondition, HANDOFF_PENDING while its operation runs, or
// NOT_RELEASABLE (metadata in_flight, outcome) when its provider may not
// be serving. An answer without an outcome (an agent from before the
// field) is not releasable, so a mixed-version group stays safe.
absl::Status ReadReleaseReply(const v1::ReleaseReply& reply, const std::string& holder);

// The fence a coordinator (`self`) asks in-flight node `holder` to hand
// off under: `current`, its committed record of this term while nothing
// newer is proposed (ElectionMachine::CurrentFence). Unavailable
// PLAN_CHANGE_PENDING when there is none (a change not yet committed: ask
// again once it is); FailedPrecondition NOT_IN_FLIGHT when the record
// names another node.
absl::StatusOr<v1::Fence> HandOffFence(const std::optional<v1::Fence>& current,
                                       const std::string& holder, const std::string& self);

// True when `fence` names a record newer than `committed`, the record this
// node holds: what FenceGuard refuses as UNKNOWN_FENCE.
bool FenceUnseen(const v1::Fence& fence, const v1::PlanRecord& committed);

// An operation that ended but whose closed journal is not yet durably on
// disk (a full state directory): the executor retries the write and keeps
// the node busy until it lands.
struct PendingClose {
  SwapJournal journal;  // as it will be written: the end phase, closed
  std::string error;    // why the last write failed
};

// What the executor knows when a coordinator asks.
struct HandoffFacts {
  bool busy = false;                     // an operation runs or is admitted
  std::vector<SwapJournal> journals;     // every operation's journal
  std::vector<std::string> unreadable;   // journals that could not be read
  std::optional<PendingClose> pending_close;  // an end still being written
};

// The answer at `fence`. Running (or a pending close: an end that is not
// yet durable may still be lost, and a restart would then finish or undo
// the operation from its open journal), an unreadable or open journal, and a
// last unit-touching operation that ended RollbackFailed or in no terminal
// phase are not releasable, whatever the fence: the provider may be down.
// Otherwise the last operation under `fence` gives Stable or RolledBack,
// and without one the answer is never started.
HandoffAnswer DecideHandoff(const HandoffFacts& facts, const v1::Fence& fence);

class FenceGuard {
 public:
  // `persisted` is the last durable FenceState (empty on first start).
  FenceGuard(std::string self, const v1::FenceState& persisted);

  // Admits a swap or rollback under `fence`; `committed` is the newest
  // record this node's election machine knows to be committed. On success
  // the caller persists state() (if changed) before starting the
  // operation. Errors, with state unchanged:
  //   FailedPrecondition STALE_TERM: fence term below the highest seen
  //     (metadata fence_term, highest_term);
  //   FailedPrecondition STALE_FENCE: at or below the released fence, or
  //     older than `committed` (metadata fence, committed or released);
  //   Unavailable UNKNOWN_FENCE: newer than `committed`, i.e. a record
  //     this node has not seen committed (metadata fence, committed);
  //   FailedPrecondition NOT_IN_FLIGHT: the fence misstates `committed`'s
  //     in-flight node, or that node is another (metadata in_flight).
  absl::Status AdmitSwap(const v1::Fence& fence, const v1::PlanRecord& committed);

  // A coordinator asks, under `fence`, whether this node's operation left
  // the provider serving; `answer` is the executor's (DecideHandoff).
  // Raises the highest term and, when the outcome is releasable, records
  // `fence` as released; the caller persists state() before answering.
  // Errors as AdmitSwap except the released-fence rule.
  absl::StatusOr<v1::ReleaseReply> AdmitRelease(const v1::Fence& fence,
                                                const v1::PlanRecord& committed,
                                                const HandoffAnswer& answer);

  // Raises the highest term seen (any newer coordinator's message).
  void ObserveTerm(uint64_t term);

  const v1::FenceState& state() const { return state_; }

 private:
  absl::Status CheckTerm(const v1::Fence& fence) const;
  absl::Status CheckReleased(const v1::Fence& fence) const;
  absl::Status CheckCommitted(const v1::Fence& fence,
                              const v1::PlanRecord& committed) const;

  std::string self_;
  v1::FenceState state_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_FENCE_GUARD_H_
