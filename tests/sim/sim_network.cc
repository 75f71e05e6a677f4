// The simulated network and each agent's handling of what arrives.
#include <algorithm>

#include "kmsfleet/core/caller_auth.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
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

// As PeerNode::AwaitCommitOf: a swap or hand-off query under a fence whose
// record the node holds but has not seen committed waits, up to a tick,
// for the commit; it is then judged on whatever the node holds by then
// (here: later in this step, after the messages due with it, or in the
// next one).
bool World::HeldForCommit(const Node& node, const Envelope& e) {
  if ((e.kind != Kind::kSwap && e.kind != Kind::kQuery) || e.waited ||
      !FenceUnseen(e.fence, node.machine->committed())) {
    return false;
  }
  auto again = std::make_unique<Envelope>(e);
  again->waited = true;
  again->deliver_at = now_ + Pick(0, 1);
  again->seq = seq_++;
  inflight_.push(std::move(again));
  ++counters_.commit_waits;
  return true;
}

void World::DeliverOne(const Envelope& e) {
  Node& node = nodes_.at(e.to);
  if (!node.up || HeldForCommit(node, e)) return;
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
    case Kind::kAction:
    case Kind::kPoll: return HandleAction(node, e);
    case Kind::kResult: return HandleResult(node, e);
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
  if (ready.committed) {
    CheckApplied(node, *ready.committed);
    if (node.machine->role() == Role::kLeader) CheckHandOff(node, *ready.committed);
  }
}

void World::HandleSwap(Node& node, const Envelope& e) {
  if (options_.plan) return HandlePlanSwap(node, e);
  // As PeerNode::AdmitSwap: a term seen in the election is a term seen.
  node.guard->ObserveTerm(node.machine->term());
  absl::Status s = node.guard->AdmitSwap(e.fence, node.machine->committed());
  if (!s.ok()) {
    std::string reason = ReasonOf(s);
    if (reason == reason::kStaleTerm) ++counters_.swaps_stale_term;
    if (reason == reason::kStaleFence) ++counters_.swaps_stale_fence;
    if (e.adversary) ++counters_.adversary_refused;
    if (e.adversary && reason == reason::kUnknownFence) ++counters_.adversary_unknown;
    Trace(node.name + " refused " + (e.adversary ? "injected " : "") +
          "swap: " + std::string(s.message()));
    return;
  }
  node.fence_durable = node.guard->state();  // persisted before acting
  if (!CheckAdmitted(node, e) || !CheckAlone(node, e.fence)) return;
  ++counters_.swaps_accepted;
  Trace(node.name + " swaps under " + std::to_string(e.fence.term()) + "/" +
        std::to_string(e.fence.index()) + (e.adversary ? " (injected, but real)" : ""));
  if (now_ >= node.op_end) StartOperation(node, e.fence);
}

// Invariant 3 for an admitted swap: a committed record names the node at
// exactly the fence's (term, index).
bool World::CheckAdmitted(const Node& node, const Envelope& e) {
  auto it = committed_index_.find(e.fence.index());
  if (it != committed_index_.end() && it->second.term() == e.fence.term() &&
      it->second.in_flight() == node.name) {
    return true;
  }
  Fail("invariant 3: " + node.name + " accepted a swap under fence " +
       std::to_string(e.fence.term()) + "/" + std::to_string(e.fence.index()) +
       " that no committed record naming it matches" +
       (e.adversary ? " (injected by the adversary)" : ""));
  return false;
}

// The toy executor starts an operation; how it ends is drawn now and
// takes effect at op_end.
void World::StartOperation(Node& node, const v1::Fence& fence) {
  node.op_start = now_;
  node.op_end = now_ + Pick(5, 40);
  node.op_fence = fence;
  double roll = Unit();
  node.op_outcome = roll < rollback_failed_rate_ ? SwapPhase::kRollbackFailed
                    : roll < 0.4                 ? SwapPhase::kRolledBack
                                                 : SwapPhase::kStable;
  if (node.op_outcome == SwapPhase::kRollbackFailed) ++counters_.rollback_failed;
}

// What the node's executor would read from its journals: the one
// operation the toy executor remembers, closed once it ended.
HandoffFacts World::Facts(const Node& node) const {
  HandoffFacts facts;
  facts.busy = now_ < node.op_end || node.admitting.has_value();
  if (node.op_start < 0) return facts;
  SwapJournal j;
  j.operation_id =
      node.op_id.empty() ? node.name + "-" + std::to_string(node.op_start) : node.op_id;
  j.phase = node.op_outcome;
  j.open = false;
  j.fence_term = node.op_fence.term();
  j.fence_index = node.op_fence.index();
  j.started_unix_ms = node.op_start;
  facts.journals.push_back(std::move(j));
  return facts;
}

// Invariant 3 at the moment a swap is admitted: nobody else is disrupted.
bool World::CheckAlone(const Node& node, const v1::Fence& fence) {
  for (auto& [name, other] : nodes_) {
    if (name == node.name || !Disrupted(other)) continue;
    Fail("invariant 3: " + node.name + " accepted a swap under " +
         std::to_string(fence.term()) + "/" + std::to_string(fence.index()) + " while " +
         name + " is disrupted (" +
         (now_ < other.op_end ? "running" : "ended RollbackFailed") + ")");
    return false;
  }
  return true;
}

bool World::Disrupted(const Node& node) const {
  return now_ < node.op_end || node.op_interrupted ||
         (node.op_start >= 0 && node.op_outcome == SwapPhase::kRollbackFailed);
}

int64_t World::DownSince(const Node& node) const {
  if (Disrupted(node)) return node.op_start;
  const SimProvider& p = node.provider;
  return now_ < p.outage_until ? p.outage_since : -1;
}

void World::HandleQuery(Node& node, const Envelope& e) {
  const std::string& caller = e.Key();
  const bool from_voter = std::find(voters_.begin(), voters_.end(), caller) != voters_.end();
  // As Peer.Release: only a voter's certificate may ask.
  if (!AuthorizeHandoffQuery(Caller{.kind = CallerKind::kMember, .name = caller}, voters_)
           .ok()) {
    ++counters_.queries_voter_only;
    return;
  }
  const v1::FenceState before = node.guard->state();
  node.guard->ObserveTerm(node.machine->term());
  absl::StatusOr<v1::ReleaseReply> reply = node.guard->AdmitRelease(
      e.fence, node.machine->committed(), DecideHandoff(Facts(node), e.fence));
  if (!reply.ok()) return;
  // A released answer binds the node: it refuses swaps at or below it. Only
  // the coordinator, a voter, may get one, or a learner's key could keep
  // the coordinator's own step refused STALE_FENCE.
  if (!from_voter && (node.guard->state().released_term() != before.released_term() ||
                      node.guard->state().released_index() != before.released_index())) {
    Fail(node.name + " released its slot at " + std::to_string(e.fence.term()) + "/" +
         std::to_string(e.fence.index()) + " to a query under the learner key of " + caller);
    return;
  }
  node.fence_durable = node.guard->state();  // persisted before answering
  if (!nodes_.contains(e.from)) return;  // the adversary's own query
  Envelope answer;
  answer.kind = Kind::kReleased;
  answer.from = node.name;
  answer.to = e.from;
  answer.fence = e.fence;
  answer.reply = *reply;
  answer.term = e.term;
  answer.action = e.action;
  Send(std::move(answer), max_delay_);
}

void World::HandleReleased(Node& leader, const Envelope& e) {
  if (options_.plan) return PlanReleased(leader, e);
  if (leader.machine->role() != Role::kLeader) return;
  // The machine itself must ignore an answer that keeps the slot.
  leader.machine->RecordRelease(e.from, e.fence.term(), e.fence.index(),
                                e.reply.outcome());
  CoordinatorState& c = leader.coordinator;
  if (!e.reply.released() && !e.reply.running()) {
    // The operator repairs the node: a new plan record gives a new fence,
    // and the coordinator sends the stuck node a swap under it.
    ++counters_.handoffs_withheld;
    Trace(e.from + " keeps its slot: " + e.reply.detail());
    if (Chance(0.5)) {
      Propose(leader, e.fence.in_flight(), "repair-" + std::to_string(now_));
    }
    return;
  }
  if (c.want_handoff) Propose(leader, c.target, "handoff-" + std::to_string(now_));
}

}  // namespace kmsfleet::sim
