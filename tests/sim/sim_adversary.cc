// The adversary (issue 8 §1): someone holding a member's certificate sends
// Agent commands of its own at random points. It knows what GetLeader
// tells anyone (the current term and committed index) and every fence it
// has seen on the wire, and it tries three things:
//   - forged: {current term, committed index + 1..3, the target's name},
//     a record the target has not seen committed;
//   - replayed: a real fence from any earlier point, to its node or another;
//   - duplicated: the newest real fence again, as a swap or a release query.
// None of them may disrupt a node the committed plan does not name.
//
// The peer forger holds a learner's certificate, or a voter's, and sends
// election messages: as a learner it may neither lead, campaign nor raise
// the term; as a voter it may not lead a term another voter leads. Each
// forged message must leave the node it reaches as it was.
#include <algorithm>
#include <limits>

#include "sim_world.h"

namespace kmsfleet::sim {

void World::Inject(Kind kind, const v1::Fence& fence, const std::string& to) {
  std::shared_ptr<const PlanAction> action;
  if (options_.plan && kind == Kind::kSwap) {
    action = AdversaryAction(fence, to);
    if (!action) return;  // no command to copy yet
  }
  const bool weaken = action && Chance(0.5);
  if (weaken) {
    // Sent ahead of the coordinator's, the step's own command may not
    // bring settings of its own: released after one probe, unvetted bytes.
    auto weakened = std::make_shared<PlanAction>(*action);
    weakened->stabilization_ms = 1;
    weakened->expected_staged_digest.clear();
    action = std::move(weakened);
    ++counters_.adversary_weakened;
  }
  ++counters_.adversary_sent;
  Envelope e;
  e.weakened = weaken;
  e.kind = kind;
  e.from = "adversary";
  e.to = to;
  e.fence = fence;
  e.adversary = true;
  // Every other command under a learner's key, when the group has one.
  // Taken from the count, not the random stream, so that each seed's
  // schedule stays what it was.
  e.certificate = to;
  for (const auto& [name, node] : nodes_) {
    const bool learner = std::find(voters_.begin(), voters_.end(), name) == voters_.end();
    if (learner && counters_.adversary_sent % 2 == 1) e.certificate = name;
  }
  // A weakened step under the key of its term's leader, when one is known:
  // any other member's is refused COMMAND_NOT_FROM_LEADER first, and the
  // plan check on the settings must hold on its own too.
  if (weaken) {
    if (auto leader = leader_of_term_.find(fence.term()); leader != leader_of_term_.end()) {
      e.certificate = leader->second;
    }
  }
  e.action = std::move(action);
  Trace(std::string("adversary sends ") + (kind == Kind::kSwap ? "swap" : "release query") +
        " to " + to + " under " + std::to_string(fence.term()) + "/" +
        std::to_string(fence.index()) + "/" + fence.in_flight());
  Send(std::move(e), Chance(0.3) ? Pick(10, 60) : max_delay_);
}

void World::Adversary() {
  ForgePeerMessage();
  // Only in the seeds with an adversary; drawn from its own stream.
  if (adversary_rate_ > 0) InjectHeldBack();
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
    return Inject(Kind::kSwap, replayed, Chance(0.5) ? NamedOr(old, target) : target);
  }
  const v1::Fence& newest = real_fences_.back();
  Inject(kind == 2 ? Kind::kSwap : Kind::kQuery, newest, NamedOr(newest, target));
}

// A member's key sends a node the step its coordinator last sent it
// follow-only, under that step's own fence and settings, to start it: seen
// on the wire, the command the coordinator would send once its gates pass
// (found in review: another node's provider down, the step held back, any
// member's certificate could start it). The key is any member's but the
// leader's of the fence's term (that leader's own key is out of scope:
// architecture.md §7).
void World::InjectHeldBack() {
  if (held_back_.empty() || held_back_rng_.Uniform(0, 99) >= 10) return;
  auto it = held_back_.begin();
  std::advance(it, held_back_rng_.Uniform(0, static_cast<int64_t>(held_back_.size()) - 1));
  const auto& [node, step] = *it;
  const auto leader = leader_of_term_.find(step.first.term());
  std::vector<std::string> keys;
  for (const auto& [name, member] : nodes_) {
    if (leader == leader_of_term_.end() || name != leader->second) keys.push_back(name);
  }
  if (keys.empty()) return;
  Envelope e;
  e.kind = Kind::kSwap;
  e.from = "adversary";
  e.to = node;
  e.fence = step.first;
  e.action = step.second;
  e.adversary = true;
  e.held_back = true;
  e.certificate =
      keys[static_cast<size_t>(held_back_rng_.Uniform(0, static_cast<int64_t>(keys.size()) - 1))];
  ++counters_.adversary_held_back;
  Trace("adversary sends the held-back " + step.second->operation_id + " to " + node +
        " under " + FenceKey(step.first) + " with " + e.certificate + "'s key");
  // Not through Send, whose loss and duplicates draw from the seed's main
  // stream: a seed's schedule stays what it was until the copy arrives.
  ++counters_.messages;
  e.deliver_at = now_ + 1 + held_back_rng_.Uniform(0, max_delay_);
  e.seq = seq_++;
  inflight_.push(std::make_unique<Envelope>(std::move(e)));
}

// The node `fence` names in flight, or `other` for a fence that names none
// (its record named no node in flight): a message
// needs a member to go to.
std::string World::NamedOr(const v1::Fence& fence, const std::string& other) {
  return fence.in_flight().empty() ? other : fence.in_flight();
}

// A message the forger may send to `target`, or nullopt when it holds no
// key that could speak to it now. `must_refuse`: only a voter may send it,
// or its term has another leader. The rest are a learner's answers, which
// may be taken but must change nothing that counts.
std::optional<v1::PeerMessage> World::ForgedMessage(const Node& target, bool& must_refuse) {
  auto pick = [&](int64_t lo, int64_t hi) { return forger_rng_.Uniform(lo, hi); };
  const ElectionMachine& m = *target.machine;
  v1::PeerMessage forged;
  forged.set_to(target.name);
  int64_t kind = pick(0, 4);
  must_refuse = kind != 3;
  if (kind == 4) {
    // A voter's key at the target's own term, where it follows another.
    const std::vector<std::string>& voters = target.config.voters;
    const std::string& from =
        voters[static_cast<size_t>(pick(0, static_cast<int64_t>(voters.size()) - 1))];
    if (m.leader().empty() || from == m.leader() || from == target.name) return std::nullopt;
    forged.set_from(from);
    forged.set_type(v1::APPEND);
    forged.set_term(m.term());
  } else {
    if (target.config.learners.empty() || target.config.learners[0] == target.name) {
      return std::nullopt;
    }
    forged.set_from(target.config.learners[0]);
    static constexpr v1::MessageType kRequests[] = {v1::APPEND, v1::TIMEOUT_NOW, v1::VOTE,
                                                    v1::PRE_VOTE};
    static constexpr v1::MessageType kAnswers[] = {v1::APPEND_RESP, v1::VOTE_RESP,
                                                   v1::PRE_VOTE_RESP};
    forged.set_type(kind == 3 ? kAnswers[pick(0, 2)] : kRequests[kind == 2 ? pick(2, 3) : kind]);
    forged.set_term(kind == 3 && pick(0, 3) == 0 ? std::numeric_limits<uint64_t>::max()
                                                 : m.term() + static_cast<uint64_t>(pick(0, 3)));
    forged.set_reject(pick(0, 1) == 1);
    forged.set_transfer(forged.type() == v1::VOTE && pick(0, 1) == 1);
  }
  v1::PlanRecord* record = forged.mutable_record();
  record->set_term(forged.term());
  record->set_index(m.committed().index() + static_cast<uint64_t>(pick(1, 3)));
  record->set_in_flight(target.name);
  record->set_payload("forged");
  *forged.mutable_committed() = *record;
  return forged;
}

void World::ForgePeerMessage() {
  if (forger_rng_.Uniform(0, 99) >= 5) return;
  std::vector<Node*> up;
  for (auto& [name, node] : nodes_) {
    if (node.up) up.push_back(&node);
  }
  if (up.empty()) return;
  Node& target = *up[static_cast<size_t>(
      forger_rng_.Uniform(0, static_cast<int64_t>(up.size()) - 1))];
  bool must_refuse = false;
  std::optional<v1::PeerMessage> forged = ForgedMessage(target, must_refuse);
  if (!forged) return;
  const ElectionMachine& m = *target.machine;
  const std::string hard_state = m.hard_state().SerializeAsString();
  const std::string committed = m.committed().SerializeAsString();
  const std::string leader = m.leader();
  const Role role = m.role();
  ++counters_.peer_forged;
  Trace("forger sends type " + std::to_string(forged->type()) + " as " + forged->from() +
        " to " + target.name + " at term " + std::to_string(forged->term()));
  absl::StatusOr<ElectionReady> ready = target.machine->Step(*forged);
  if (!ready.ok()) {
    ++counters_.peer_forged_refused;
  } else if (must_refuse) {
    return Fail(target.name + " accepted a forged message of type " +
                std::to_string(forged->type()) + " from " + forged->from());
  }
  if (m.hard_state().SerializeAsString() != hard_state ||
      m.committed().SerializeAsString() != committed || m.leader() != leader ||
      m.role() != role) {
    return Fail("a forged message of type " + std::to_string(forged->type()) + " from " +
                forged->from() + " at term " + std::to_string(forged->term()) +
                " changed " + target.name + "'s term, vote, leader, role or record");
  }
  // Anything it answered goes to the forger, who keeps it.
}

}  // namespace kmsfleet::sim
