// Leadership transfers in the simulation (issue 11). At random ticks of
// the fault window a leader hands leadership to a named voter, to "the
// most up-to-date voter" or to a node that cannot take it (now and then
// replacing a transfer under way, so that two voters may be told to
// campaign in one term), and half the time stops once the transfer is over
// or abandoned, as kmsfleetd does on SIGTERM. Messages are lost, duplicated and reordered and nodes crash as
// everywhere else. Invariants 1 and 2 (one leader per term; committed
// records never lost, and every leader holds them) are checked after each
// step as always; here, besides:
//   - a leader that is transferring writes no record (proposals refused
//     LEADER_TRANSFER_IN_PROGRESS, sim_coordinator.cc);
//   - it gives up only after a full election timeout;
//   - a refused request names NO_TRANSFER_TARGET.
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "sim_world.h"

namespace kmsfleet::sim {
namespace {

std::string Key(const v1::PlanRecord& r) {
  return std::to_string(r.term()) + "/" + std::to_string(r.index());
}

}  // namespace

void World::Transfers() {
  if (!faults_ || !failure_.empty()) return;
  for (size_t i = 0; i < transfers_.size();) {
    if (FollowTransfer(transfers_[i])) {
      transfers_.erase(transfers_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  for (auto& [name, node] : nodes_) {
    if (!node.up || node.machine->role() != Role::kLeader) continue;
    bool busy = false;
    for (const Transfer& t : transfers_) busy |= t.from == name;
    double roll = static_cast<double>(transfer_rng_.Next() >> 11) / (1ULL << 53);
    // Now and then a second request replaces the first one's target, so
    // that two voters may be told to campaign in the same term.
    if (roll < (busy ? transfer_rate_ / 4 : transfer_rate_)) StartTransfer(node);
  }
}

void World::StartTransfer(Node& leader) {
  // Mostly what kmsfleetd asks ("" = the most up-to-date voter); sometimes
  // a named voter, lagging or not; rarely any member, self and learners
  // included, which must be refused.
  int64_t kind = transfer_rng_.Uniform(0, 19);
  std::string target;
  if (kind >= 14 && kind < 19) {
    const auto& voters = leader.config.voters;
    target = voters[static_cast<size_t>(
        transfer_rng_.Uniform(0, static_cast<int64_t>(voters.size()) - 1))];
  } else if (kind == 19) {
    auto it = nodes_.begin();
    std::advance(it, transfer_rng_.Uniform(0, static_cast<int64_t>(nodes_.size()) - 1));
    target = it->first;
  }
  absl::StatusOr<ElectionReady> ready = leader.machine->TransferLeadership(target);
  if (!ready.ok()) {
    ++counters_.transfers_refused;
    if (ReasonOf(ready.status()) != reason::kNoTransferTarget) {
      Fail("transfer: " + leader.name + " refused a transfer to '" + target +
           "' with " + std::string(ready.status().message()));
    }
    return;
  }
  ++counters_.transfers_started;
  Transfer t{.from = leader.name,
             .target = leader.machine->transfer_target(),
             .term = leader.machine->term(),
             .record = leader.machine->record(),
             .start = now_,
             .stop = transfer_rng_.Uniform(0, 1) == 1};
  Trace(leader.name + " transfers leadership to " + t.target + (t.stop ? " and stops" : ""));
  std::erase_if(transfers_, [&](const Transfer& old) {
    if (old.from != leader.name) return false;
    ++counters_.transfers_retargeted;
    return true;
  });
  transfers_.push_back(std::move(t));
  Handle(leader, *ready);
}

// Returns true once the transfer is over: a node leads a newer term, or
// the old leader gave up or is gone.
bool World::FollowTransfer(Transfer& t) {
  Node& from = nodes_.at(t.from);
  int timeout = from.config.election_ticks;
  std::string winner;
  uint64_t winner_term = t.term;
  for (auto& [name, node] : nodes_) {
    if (node.up && node.machine->role() == Role::kLeader && node.machine->term() > winner_term) {
      winner = name;
      winner_term = node.machine->term();
    }
  }
  bool leading = from.up && from.machine->role() == Role::kLeader &&
                 from.machine->term() == t.term;
  bool transferring = leading && !from.machine->transfer_target().empty();
  if (transferring && !SameKey(from.machine->record(), t.record)) {
    Fail("transfer: " + t.from + " wrote " + Key(from.machine->record()) +
         " while handing leadership to " + t.target);
    return true;
  }
  if (leading && !transferring && now_ - t.start < timeout) {
    Fail("transfer: " + t.from + " gave up its transfer to " + t.target + " after " +
         std::to_string(now_ - t.start) + " ticks, before an election timeout");
    return true;
  }
  // kmsfleetd stops once it no longer leads, or has given up.
  if (t.stop && !t.stopped && from.up && (!leading || !transferring)) {
    Trace(t.from + " stops after its transfer");
    Crash(from);
    t.stopped = true;
    ++counters_.transfers_stopped;
  }
  if (!winner.empty()) {
    if (winner == t.target) {
      ++counters_.transfers_completed;
      counters_.transfer_ticks += now_ - t.start;
    } else {
      ++counters_.transfers_other;
    }
    return true;
  }
  if (leading && !transferring) {
    ++counters_.transfers_abandoned;
    return true;
  }
  if (now_ - t.start > 4 * timeout) {
    ++counters_.transfers_other;  // no leader yet: an ordinary election follows
    return true;
  }
  return false;
}

}  // namespace kmsfleet::sim
