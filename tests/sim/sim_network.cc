// The simulated network and each agent's handling of what arrives.
#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"
#include "sim_world.h"

namespace kmsfleet::sim {

void World::Send(Envelope e, int64_t max_delay) {
  ++counters_.messages;
  if (blocked_.contains({e.from, e.to})) return;
  if (faults_ && Chance(loss_)) return;
  int copies = faults_ && Chance(dup_) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    // Independent delays reorder messages, duplicates included.
    e.deliver_at = now_ + 1 + Pick(0, max_delay);
    e.seq = seq_++;
    if (i + 1 < copies) {
      inflight_.push(std::make_unique<Envelope>(e));
    } else {
      inflight_.push(std::make_unique<Envelope>(std::move(e)));
    }
  }
}

void World::Deliver() {
  while (!inflight_.empty() && inflight_.top()->deliver_at <= now_ && failure_.empty()) {
    // Moving out of top() is safe: the element is popped right after.
    std::unique_ptr<Envelope> e =
        std::move(const_cast<std::unique_ptr<Envelope>&>(inflight_.top()));
    inflight_.pop();
    DeliverOne(*e);
  }
}

void World::DeliverOne(const Envelope& e) {
  Node& node = nodes_.at(e.to);
  if (!node.up) return;
  switch (e.kind) {
    case Kind::kPeer: {
      absl::StatusOr<ElectionReady> ready = node.machine->Step(e.peer);
      if (!ready.ok()) {
        Fail(node.name + " refused a message from a member: " +
             std::string(ready.status().message()));
        return;
      }
      Handle(node, *ready);
      return;
    }
    case Kind::kSwap: return HandleSwap(node, e);
    case Kind::kQuery: return HandleQuery(node, e);
    case Kind::kReleased: return HandleReleased(node, e);
  }
}

void World::Handle(Node& node, const ElectionReady& ready) {
  if (ready.hard_state && faults_ && Chance(lost_write_rate_)) {
    // The crash hits before fsync returns: the write is lost, and nothing
    // that depended on it was sent or applied.
    ++counters_.lost_writes;
    Trace("lost write and crash " + node.name);
    Crash(node);
    return;
  }
  if (ready.hard_state) node.durable = *ready.hard_state;
  for (const v1::PeerMessage& m : ready.messages) {
    Envelope e;
    e.kind = Kind::kPeer;
    e.from = node.name;
    e.to = m.to();
    e.peer = m;
    Send(std::move(e), max_delay_);
  }
  if (ready.committed) CheckApplied(node, *ready.committed);
}

void World::HandleSwap(Node& node, const Envelope& e) {
  absl::Status s = node.guard->AdmitSwap(e.fence);
  if (!s.ok()) {
    std::string reason = ReasonOf(s);
    if (reason == reason::kStaleTerm) ++counters_.swaps_stale_term;
    if (reason == reason::kStaleFence) ++counters_.swaps_stale_fence;
    Trace(node.name + " refused swap: " + std::string(s.message()));
    return;
  }
  node.fence_durable = node.guard->state();  // persisted before acting
  auto it = committed_index_.find(e.fence.index());
  if (it == committed_index_.end() || it->second.term() != e.fence.term() ||
      it->second.in_flight() != node.name) {
    Fail("invariant 3: " + node.name + " accepted a swap under fence " +
         std::to_string(e.fence.term()) + "/" + std::to_string(e.fence.index()) +
         " that no committed record naming it matches");
    return;
  }
  ++counters_.swaps_accepted;
  Trace(node.name + " swaps under " + std::to_string(e.fence.term()) + "/" +
        std::to_string(e.fence.index()));
  if (now_ >= node.op_end) node.op_end = now_ + Pick(5, 40);
}

void World::HandleQuery(Node& node, const Envelope& e) {
  bool running = now_ < node.op_end;
  if (!node.guard->AdmitRelease(e.fence, running).ok()) return;
  node.fence_durable = node.guard->state();  // persisted before answering
  Envelope reply;
  reply.kind = Kind::kReleased;
  reply.from = node.name;
  reply.to = e.from;
  reply.fence = e.fence;
  reply.running = running;
  Send(std::move(reply), max_delay_);
}

void World::HandleReleased(Node& leader, const Envelope& e) {
  if (leader.machine->role() != Role::kLeader || e.running) return;
  leader.machine->RecordRelease(e.from, e.fence.term(), e.fence.index());
  CoordinatorState& c = leader.coordinator;
  if (c.want_handoff) Propose(leader, c.target, "handoff-" + std::to_string(now_));
}

}  // namespace kmsfleet::sim
