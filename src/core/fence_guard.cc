#include "kmsfleet/fence_guard.h"

#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"

namespace kmsfleet {
namespace {

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

}  // namespace

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

absl::Status FenceGuard::AdmitSwap(const v1::Fence& fence) {
  if (absl::Status s = CheckTerm(fence); !s.ok()) return s;
  if (fence.in_flight() != self_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                     "node " + self_ + " refused a swap: plan record " +
                         Key(fence.term(), fence.index()) + " names '" +
                         fence.in_flight() + "' as in flight",
                     {{"in_flight", fence.in_flight()}});
  }
  bool released = fence.term() < state_.released_term() ||
                  (fence.term() == state_.released_term() &&
                   fence.index() <= state_.released_index());
  if (released) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStaleFence,
                     "node " + self_ + " refused a swap under plan record " +
                         Key(fence.term(), fence.index()) +
                         ": it already handed off at " +
                         Key(state_.released_term(), state_.released_index()),
                     {{"fence", Key(fence.term(), fence.index())},
                      {"released", Key(state_.released_term(),
                                       state_.released_index())}});
  }
  ObserveTerm(fence.term());
  return absl::OkStatus();
}

absl::Status FenceGuard::AdmitRelease(const v1::Fence& fence, bool running) {
  if (absl::Status s = CheckTerm(fence); !s.ok()) return s;
  ObserveTerm(fence.term());
  bool newer = fence.term() > state_.released_term() ||
               (fence.term() == state_.released_term() &&
                fence.index() > state_.released_index());
  if (!running && newer) {
    state_.set_released_term(fence.term());
    state_.set_released_index(fence.index());
  }
  return absl::OkStatus();
}

void FenceGuard::ObserveTerm(uint64_t term) {
  if (term > state_.highest_term()) state_.set_highest_term(term);
}

}  // namespace kmsfleet
