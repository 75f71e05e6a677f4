#include "kmsfleet/core/fence_guard.h"

#include <algorithm>
#include <tuple>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

std::string Key(const v1::Fence& f) { return Key(f.term(), f.index()); }
std::string Key(const v1::PlanRecord& r) { return Key(r.term(), r.index()); }

// (term, index) order, as election.h's Newer for records.
bool FenceAfter(const v1::Fence& f, uint64_t term, uint64_t index) {
  return f.term() != term ? f.term() > term : f.index() > index;
}

// The unit was stopped (or a rollback began): the provider was disrupted.
bool TouchedUnit(const SwapJournal& j) { return j.phase >= SwapPhase::kStopped; }

bool UnderFence(const SwapJournal& j, const v1::Fence& f) {
  return j.fence_term == f.term() && j.fence_index == f.index();
}

std::string Describe(const SwapJournal& j) {
  std::string out = "operation " + j.operation_id + " (" + j.kind + ", fence " +
                    Key(j.fence_term, j.fence_index) + ") " +
                    (j.open ? "is open at " : "ended ") + std::string(PhaseName(j.phase));
  if (!j.failure_reason.empty()) out += " [" + j.failure_reason + "]";
  return out;
}

// The operation that ran last by `order`; the id breaks ties so the answer
// does not depend on directory order.
template <typename Order>
const SwapJournal* Latest(const std::vector<SwapJournal>& journals, Order order) {
  const SwapJournal* latest = nullptr;
  for (const SwapJournal& j : journals) {
    if (!TouchedUnit(j)) continue;
    if (latest == nullptr || order(*latest) < order(j)) latest = &j;
  }
  return latest;
}

// The node's own admission order first: it orders every operation,
// fenced or not, whatever the clock did (found in review: two operations
// under one fence, an operator's say, were ordered by the wall clock, and
// a step back between them hid a RollbackFailed behind an earlier
// Stable). Journals from before the sequence (0) then by fence: fences
// only grow on a node (the guard admits none older than it saw).
auto ByAdmission(const SwapJournal& j) { return AdmissionOrder(j); }

auto ByTime(const SwapJournal& j) {
  return std::tie(j.started_unix_ms, j.updated_unix_ms, j.operation_id);
}

bool LeftProviderUp(const SwapJournal& j) {
  return j.phase == SwapPhase::kStable || j.phase == SwapPhase::kRolledBack;
}

// The operation whose end says how the unit stands. The two orders agree
// unless the clock stepped back between operations, the election's state
// was reset under older journals, or an older kmsfleetd (no sequence)
// wrote journals after a newer one; then the answer that keeps the slot
// wins, so a RollbackFailed is never hidden by either.
const SwapJournal* LastTouchingTheUnit(const std::vector<SwapJournal>& journals) {
  const SwapJournal* by_admission = Latest(journals, ByAdmission);
  const SwapJournal* by_time = Latest(journals, ByTime);
  if (by_time != by_admission && !LeftProviderUp(*by_time)) return by_time;
  return by_admission;
}

}  // namespace

bool IsReleasable(v1::HandoffOutcome outcome) {
  return outcome == v1::HANDOFF_NEVER_STARTED || outcome == v1::HANDOFF_STABLE ||
         outcome == v1::HANDOFF_ROLLED_BACK;
}

absl::StatusOr<v1::Fence> HandOffFence(const std::optional<v1::Fence>& current,
                                       const std::string& holder, const std::string& self) {
  if (!current) {
    // Found in review: this was NOT_IN_FLIGHT, which the committed record
    // contradicts, in the plan's view of an unanswered node.
    return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                     "a plan change is not yet committed on " + self + "; " + holder +
                         " is asked to hand off once it is",
                     {{"node", holder}});
  }
  if (current->in_flight() != holder) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                     holder + " is not in flight in the committed plan record",
                     {{"node", holder}});
  }
  return *current;
}

absl::Status ReadReleaseReply(const v1::ReleaseReply& reply, const std::string& holder) {
  if (reply.released() && IsReleasable(reply.outcome())) return absl::OkStatus();
  const bool running = reply.running() || reply.outcome() == v1::HANDOFF_RUNNING;
  const std::string outcome = v1::HandoffOutcome_Name(reply.outcome());
  return MakeError(
      absl::StatusCode::kFailedPrecondition,
      running ? reason::kHandoffPending : reason::kNotReleasable,
      "in-flight node " + holder + " keeps its slot: " +
          (running ? std::string("its operation is still running")
                   : "its last operation ended " + outcome + " (" + reply.detail() +
                         ") and its provider may not be serving"),
      {{"in_flight", holder}, {"outcome", outcome}});
}

HandoffAnswer DecideHandoff(const HandoffFacts& facts, const v1::Fence& fence) {
  if (facts.pending_close) {
    return {v1::HANDOFF_RUNNING,
            Describe(facts.pending_close->journal) +
                ", but its closed journal is not yet on disk (" +
                facts.pending_close->error +
                "); the node keeps its slot until the write succeeds"};
  }
  if (facts.busy) {
    return {v1::HANDOFF_RUNNING, "an operation is running, being admitted or recovered"};
  }
  if (!facts.unreadable.empty()) {
    return {v1::HANDOFF_UNKNOWN, "journal " + facts.unreadable.front() + " cannot be read"};
  }
  for (const SwapJournal& j : facts.journals) {
    if (j.open) return {v1::HANDOFF_JOURNAL_OPEN, Describe(j)};
  }
  // Operations refused before the stop changed nothing; they neither hide
  // an earlier RollbackFailed nor count as the outcome at their fence.
  const SwapJournal* last = LastTouchingTheUnit(facts.journals);
  if (last == nullptr) return {v1::HANDOFF_NEVER_STARTED, "no operation touched the unit"};
  switch (last->phase) {
    case SwapPhase::kRollbackFailed:
      return {v1::HANDOFF_ROLLBACK_FAILED,
              Describe(*last) + "; the unit was left as it is and the provider may be "
                                "down until an operator restores it"};
    case SwapPhase::kStable:
    case SwapPhase::kRolledBack: {
      const std::string phase(PhaseName(last->phase));
      if (!UnderFence(*last, fence)) {
        return {v1::HANDOFF_NEVER_STARTED,
                "nothing ran under fence " + Key(fence) + "; last " + Describe(*last),
                last->operation_id, phase};
      }
      return {last->phase == SwapPhase::kStable ? v1::HANDOFF_STABLE
                                                : v1::HANDOFF_ROLLED_BACK,
              Describe(*last), last->operation_id, phase};
    }
    default:
      return {v1::HANDOFF_UNKNOWN, Describe(*last) + ", a phase that ends nothing"};
  }
}

bool FenceUnseen(const v1::Fence& fence, const v1::PlanRecord& committed) {
  return FenceAfter(fence, committed.term(), committed.index());
}

FenceGuard::FenceGuard(std::string self, const v1::FenceState& persisted)
    : self_(std::move(self)), state_(persisted) {}

absl::Status FenceGuard::CheckTerm(const v1::Fence& fence) const {
  if (fence.term() >= state_.highest_term()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStaleTerm,
                   "node " + self_ + " refused a command at term " +
                       std::to_string(fence.term()) + ": it has seen term " +
                       std::to_string(state_.highest_term()) +
                       "; the sender is a deposed coordinator",
                   {{"fence_term", std::to_string(fence.term())},
                    {"highest_term", std::to_string(state_.highest_term())}});
}

absl::Status FenceGuard::CheckReleased(const v1::Fence& fence) const {
  if (FenceAfter(fence, state_.released_term(), state_.released_index())) {
    return absl::OkStatus();
  }
  std::string released = Key(state_.released_term(), state_.released_index());
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStaleFence,
                   "node " + self_ + " refused a swap under plan record " + Key(fence) +
                       ": it already handed off at " + released,
                   {{"fence", Key(fence)}, {"released", released}});
}

// Only a record this node holds and knows to be committed authorises it:
// anyone can learn the current term, nobody can make a majority commit.
absl::Status FenceGuard::CheckCommitted(const v1::Fence& fence,
                                        const v1::PlanRecord& committed) const {
  if (FenceUnseen(fence, committed)) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kUnknownFence,
                     "node " + self_ + " has not seen plan record " + Key(fence) +
                         " committed (it holds " + Key(committed) +
                         "); retry after the coordinator's next heartbeat",
                     {{"fence", Key(fence)}, {"committed", Key(committed)}});
  }
  if (fence.term() != committed.term() || fence.index() != committed.index()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStaleFence,
                     "node " + self_ + " refused plan record " + Key(fence) +
                         ": it is older than the committed record " + Key(committed),
                     {{"fence", Key(fence)}, {"committed", Key(committed)}});
  }
  if (fence.in_flight() != committed.in_flight()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                     "node " + self_ + " refused a fence for plan record " + Key(fence) +
                         // A caller's name, up to the message bound: at most a DNS name.
                         " naming '" + fence.in_flight().substr(0, 253) + "': that record names '" +
                         committed.in_flight() + "'",
                     {{"in_flight", committed.in_flight()}});
  }
  if (committed.in_flight() != self_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                     "node " + self_ + " refused a command: plan record " + Key(fence) +
                         " names '" + committed.in_flight() + "' as in flight",
                     {{"in_flight", committed.in_flight()}});
  }
  return absl::OkStatus();
}

absl::Status FenceGuard::AdmitSwap(const v1::Fence& fence, const v1::PlanRecord& committed) {
  if (absl::Status s = CheckTerm(fence); !s.ok()) return s;
  if (absl::Status s = CheckReleased(fence); !s.ok()) return s;
  if (absl::Status s = CheckCommitted(fence, committed); !s.ok()) return s;
  ObserveTerm(fence.term());
  return absl::OkStatus();
}

absl::StatusOr<v1::ReleaseReply> FenceGuard::AdmitRelease(const v1::Fence& fence,
                                                          const v1::PlanRecord& committed,
                                                          const HandoffAnswer& answer) {
  if (absl::Status s = CheckTerm(fence); !s.ok()) return s;
  if (absl::Status s = CheckCommitted(fence, committed); !s.ok()) return s;
  ObserveTerm(fence.term());
  v1::ReleaseReply reply;
  reply.set_node(self_);
  reply.set_running(answer.outcome == v1::HANDOFF_RUNNING);
  reply.set_outcome(answer.outcome);
  reply.set_detail(answer.detail);
  if (IsReleasable(answer.outcome)) {
    reply.set_last_operation_id(answer.last_operation_id);
    reply.set_last_operation_phase(answer.last_operation_phase);
    if (FenceAfter(fence, state_.released_term(), state_.released_index())) {
      state_.set_released_term(fence.term());
      state_.set_released_index(fence.index());
    }
    reply.set_released(true);
  } else {
    reply.set_reason(answer.outcome == v1::HANDOFF_RUNNING ? reason::kHandoffPending
                                                           : reason::kNotReleasable);
  }
  reply.set_highest_term(state_.highest_term());
  return reply;
}

void FenceGuard::ObserveTerm(uint64_t term) {
  if (term > state_.highest_term()) state_.set_highest_term(term);
}

}  // namespace kmsfleet
