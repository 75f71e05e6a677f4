// The adversary (issue 8 §1): someone holding a member's certificate sends
// Agent commands of its own at random points. It knows what GetLeader
// tells anyone (the current term and committed index) and every fence it
// has seen on the wire, and it tries three things:
//   - forged: {current term, committed index + 1..3, the target's name},
//     a record the target has not seen committed;
//   - replayed: a real fence from any earlier point, to its node or another;
//   - duplicated: the newest real fence again, as a swap or a release query.
// None of them may disrupt a node the committed plan does not name.
#include <algorithm>

#include "sim_world.h"

namespace kmsfleet::sim {

void World::Inject(Kind kind, const v1::Fence& fence, const std::string& to) {
  std::shared_ptr<const PlanAction> action;
  if (options_.plan && kind == Kind::kSwap) {
    action = AdversaryAction(fence, to);
    if (!action) return;  // no command to copy yet
  }
  ++counters_.adversary_sent;
  Envelope e;
  e.kind = kind;
  e.from = "adversary";
  e.to = to;
  e.fence = fence;
  e.adversary = true;
  e.action = std::move(action);
  Trace(std::string("adversary sends ") + (kind == Kind::kSwap ? "swap" : "release query") +
        " to " + to + " under " + std::to_string(fence.term()) + "/" +
        std::to_string(fence.index()) + "/" + fence.in_flight());
  Send(std::move(e), Chance(0.3) ? Pick(10, 60) : max_delay_);
}

void World::Adversary() {
  if (!Chance(adversary_rate_)) return;
  std::string target = RandomMember();
  int kind = static_cast<int>(Pick(0, 3));
  if (kind == 0 || real_fences_.empty()) {
    // GetLeader on any node: the newest term and committed index it knows.
    uint64_t term = 0;
    uint64_t index = 0;
    for (auto& [name, node] : nodes_) {
      if (!node.up) continue;
      term = std::max(term, node.machine->term());
      index = std::max(index, node.machine->committed().index());
    }
    v1::Fence forged;
    forged.set_term(term);
    forged.set_index(index + static_cast<uint64_t>(Pick(1, 3)));
    forged.set_in_flight(target);
    return Inject(Kind::kSwap, forged, target);
  }
  if (kind == 1) {
    const v1::Fence& old = real_fences_[static_cast<size_t>(
        Pick(0, static_cast<int64_t>(real_fences_.size()) - 1))];
    v1::Fence replayed = old;
    if (Chance(0.5)) replayed.set_in_flight(target);  // claimed for another node
    return Inject(Kind::kSwap, replayed, Chance(0.5) ? old.in_flight() : target);
  }
  const v1::Fence& newest = real_fences_.back();
  Inject(kind == 2 ? Kind::kSwap : Kind::kQuery, newest, newest.in_flight());
}

}  // namespace kmsfleet::sim
