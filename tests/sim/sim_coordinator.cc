// The leader's toy coordinator and the invariant checks.
#include <algorithm>
#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "sim_world.h"

namespace kmsfleet::sim {
namespace {

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

}  // namespace

void World::Coordinate(Node& leader) {
  std::optional<v1::Fence> fence = leader.machine->CurrentFence();
  if (!fence) return;
  CoordinatorState& c = leader.coordinator;
  std::string key = Key(fence->term(), fence->index());
  if (!fence->in_flight().empty() && c.commanded != key) {
    c.commanded = key;
    Envelope swap;
    swap.kind = Kind::kSwap;
    swap.from = leader.name;
    swap.to = fence->in_flight();
    swap.fence = *fence;
    real_fences_.push_back(*fence);
    // Some commands are held long enough to cross a leader change (issue
    // 3: "a swap command delayed across a leader change").
    Send(std::move(swap), Chance(0.2) ? Pick(10, 60) : max_delay_);
  }
  if (!c.want_handoff && Chance(0.05)) {
    c.want_handoff = true;
    c.target = Chance(0.2) ? std::string() : RandomMember();
  }
  if (!c.want_handoff) {
    if (Chance(0.02)) Propose(leader, fence->in_flight(), "change-" + std::to_string(now_));
    return;
  }
  if (c.target == fence->in_flight()) {
    c.want_handoff = false;
  } else if (fence->in_flight().empty()) {
    Propose(leader, c.target, "handoff-" + std::to_string(now_));
  } else if (now_ - c.last_query > 15) {
    c.last_query = now_;
    Envelope query;
    query.kind = Kind::kQuery;
    query.from = leader.name;
    query.to = fence->in_flight();
    query.fence = *fence;
    Send(std::move(query), max_delay_);
  }
}

void World::Propose(Node& leader, const std::string& in_flight,
                    const std::string& payload) {
  std::string before = leader.machine->committed().in_flight();
  bool transferring = !leader.machine->transfer_target().empty();
  absl::StatusOr<ElectionReady> ready = leader.machine->Propose(in_flight, payload);
  if (transferring) {
    // Raft thesis §3.10: no new record while the target catches up.
    if (ready.ok() || ReasonOf(ready.status()) != reason::kLeaderTransferInProgress) {
      Fail("transfer: " + leader.name + " accepted or misreported a proposal while "
           "handing leadership to " + leader.machine->transfer_target());
    }
    ++counters_.proposals_refused_in_transfer;
  }
  if (!ready.ok()) return;
  if (in_flight != before) ++counters_.handoffs;
  if (in_flight == leader.coordinator.target) leader.coordinator.want_handoff = false;
  Trace(leader.name + " proposes in_flight=" + in_flight + " " + payload);
  Handle(leader, *ready);
}

bool World::ProposeAndCheck(const std::string& payload) {
  for (auto& [name, node] : nodes_) {
    if (node.up && node.machine->committed().payload() == payload) return true;
  }
  for (auto& [name, node] : nodes_) {
    if (!node.up || !node.machine->CurrentFence()) continue;
    if (node.machine->record().payload() == payload) continue;  // pending
    Propose(node, node.machine->committed().in_flight(), payload);
  }
  return false;
}

void World::CheckApplied(Node& node, const v1::PlanRecord& record) {
  if (Newer(node.applied, record)) {
    Fail("invariant 2: " + node.name + " applied " + Key(record.term(), record.index()) +
         " after " + Key(node.applied.term(), node.applied.index()));
    return;
  }
  node.applied = record;
  auto [it, inserted] = committed_index_.emplace(record.index(), record);
  if (inserted && options_.plan) CheckPlanCommitted(record);
  if (!inserted) {
    if (it->second.SerializeAsString() != record.SerializeAsString()) {
      Fail("invariant 2: index " + std::to_string(record.index()) +
           " committed as term " + std::to_string(it->second.term()) + " and as term " +
           std::to_string(record.term()) + " (on " + node.name + ")");
    }
    return;
  }
  // Committed records form one chain: terms never go down as index grows.
  if (it != committed_index_.begin() && std::prev(it)->second.term() > record.term()) {
    Fail("invariant 2: committed " + Key(record.term(), record.index()) +
         " follows a record of a later term");
  }
  if (std::next(it) != committed_index_.end() &&
      std::next(it)->second.term() < record.term()) {
    Fail("invariant 2: committed " + Key(record.term(), record.index()) +
         " precedes a record of an earlier term");
  }
}

// The hand-off property (issue 8 §2): when the leader commits a record
// putting a node in flight, no other node may still be disrupted, neither
// running nor left by a RollbackFailed.
void World::CheckHandOff(const Node& leader, const v1::PlanRecord& record) {
  CheckHolderReleased(leader, record);
  for (const auto& [name, node] : nodes_) {
    if (name == record.in_flight() || !Disrupted(node)) continue;
    Fail("invariant 3 (hand-off): " + leader.name + " committed " +
         Key(record.term(), record.index()) + " putting '" + record.in_flight() +
         "' in flight while " + name + " is disrupted (" +
         (now_ < node.op_end ? "running" : "its last operation ended RollbackFailed") + ")");
  }
}

// A record that moves the slot from a holder to another node commits only
// after the holder answered, durably, at the record it replaces: a release
// at an older record (the coordinator proposed again meanwhile) leaves the
// holder admitting a swap under the newer one.
void World::CheckHolderReleased(const Node& leader, const v1::PlanRecord& record) {
  auto it = committed_index_.find(record.index());
  if (it == committed_index_.end() || it == committed_index_.begin()) return;
  const v1::PlanRecord& before = std::prev(it)->second;
  if (before.index() + 1 != record.index()) return;  // not seen: nothing to say
  const std::string& holder = before.in_flight();
  if (holder.empty() || holder == record.in_flight()) return;
  const v1::FenceState& f = nodes_.at(holder).fence_durable;
  if (std::make_pair(f.released_term(), f.released_index()) >=
      std::make_pair(before.term(), before.index())) {
    return;
  }
  Fail("invariant 3 (hand-off): " + leader.name + " committed " +
       Key(record.term(), record.index()) + " moving the slot from " + holder + " to '" +
       record.in_flight() + "', but " + holder + " released only at " +
       Key(f.released_term(), f.released_index()) + ", not at " +
       Key(before.term(), before.index()));
}

void World::CheckInvariants() {
  std::string disrupted;
  int count = 0;
  for (auto& [name, node] : nodes_) {
    if (Disrupted(node)) {
      ++count;
      disrupted += " " + name;
    }
  }
  counters_.max_disrupted = std::max<int64_t>(counters_.max_disrupted, count);
  if (count > 1) Fail("invariant 3: " + std::to_string(count) + " nodes disrupted:" + disrupted);
  for (auto& [name, node] : nodes_) {
    if (!node.up || node.machine->role() != Role::kLeader) continue;
    auto [it, inserted] = leader_of_term_.emplace(node.machine->term(), name);
    if (inserted) ++counters_.elections;
    if (it->second != name) {
      Fail("invariant 1: " + it->second + " and " + name + " both led term " +
           std::to_string(it->first));
    }
    // Leader completeness (Raft §5.4): the leader of term T holds every
    // record committed before T. A deposed leader that has not heard of
    // later terms yet is exempt; its term is older.
    const v1::PlanRecord& held = node.machine->record();
    for (auto c = committed_index_.rbegin(); c != committed_index_.rend(); ++c) {
      if (c->second.term() >= node.machine->term()) continue;
      if (held.index() <= c->first) {
        Fail("invariant 2: leader " + name + " of term " +
             std::to_string(node.machine->term()) + " holds " +
             Key(held.term(), held.index()) + " but " +
             Key(c->second.term(), c->first) + " was committed before");
      }
      break;
    }
  }
}

}  // namespace kmsfleet::sim
