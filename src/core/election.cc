// ElectionMachine: construction, roles, ticks, proposals and Ready.
// Message handling is in election_step.cc.
#include <algorithm>
#include <cassert>
#include <set>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

int64_t SeededRandom::Uniform(int64_t lo, int64_t hi) {
  assert(lo <= hi);
  uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(Next() % span);
}

uint64_t SeededRandom::Next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kFollower: return "Follower";
    case Role::kPreCandidate: return "PreCandidate";
    case Role::kCandidate: return "Candidate";
    case Role::kLeader: return "Leader";
  }
  return "Unknown";
}

bool Newer(const v1::PlanRecord& a, const v1::PlanRecord& b) {
  if (a.term() != b.term()) return a.term() > b.term();
  return a.index() > b.index();
}

bool SameKey(const v1::PlanRecord& a, const v1::PlanRecord& b) {
  return a.term() == b.term() && a.index() == b.index();
}

absl::Status ValidateElectionConfig(const ElectionConfig& config) {
  auto invalid = [](const std::string& problem) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "cluster: " + problem);
  };
  if (config.voters.empty() || config.voters.size() > 7) {
    return invalid("voters must number 1 to 7, got " +
                   std::to_string(config.voters.size()));
  }
  std::set<std::string> names;
  for (const auto* list : {&config.voters, &config.learners}) {
    for (const std::string& name : *list) {
      if (name.empty()) return invalid("a member name is empty");
      if (!names.insert(name).second) return invalid("member " + name + " is listed twice");
    }
  }
  if (!names.contains(config.self)) {
    return invalid("this node " + config.self + " is neither voter nor learner");
  }
  if (config.heartbeat_ticks < 1 || config.election_ticks <= config.heartbeat_ticks) {
    return invalid("need 1 <= heartbeat_ticks < election_ticks, got " +
                   std::to_string(config.heartbeat_ticks) + " and " +
                   std::to_string(config.election_ticks));
  }
  return absl::OkStatus();
}

ElectionMachine::ElectionMachine(ElectionConfig config,
                                 const v1::HardState& persisted,
                                 ElectionRandom& random)
    : config_(std::move(config)), random_(random) {
  assert(ValidateElectionConfig(config_).ok());
  term_ = persisted.term();
  voted_for_ = persisted.voted_for();
  record_ = persisted.record();
  committed_ = persisted.committed();
  last_hard_state_ = hard_state();
  ResetTimers();
}

v1::HardState ElectionMachine::hard_state() const {
  v1::HardState hs;
  hs.set_term(term_);
  hs.set_voted_for(voted_for_);
  *hs.mutable_record() = record_;
  *hs.mutable_committed() = committed_;
  return hs;
}

bool ElectionMachine::IsVoter(std::string_view name) const {
  return std::find(config_.voters.begin(), config_.voters.end(), name) !=
         config_.voters.end();
}

bool ElectionMachine::IsMember(std::string_view name) const {
  return IsVoter(name) || std::find(config_.learners.begin(),
                                    config_.learners.end(),
                                    name) != config_.learners.end();
}

void ElectionMachine::ResetTimers() {
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  pre_voted_for_.clear();
  pre_vote_hold_until_ = 0;
  // Randomized so that followers rarely time out together (Raft §5.2).
  randomized_timeout_ = static_cast<int>(
      random_.Uniform(config_.election_ticks, 2 * config_.election_ticks - 1));
}

void ElectionMachine::BecomeFollower(uint64_t term, std::string_view leader) {
  if (term != term_) {
    term_ = term;
    voted_for_.clear();
  }
  role_ = Role::kFollower;
  leader_ = std::string(leader);
  votes_.clear();
  match_.clear();
  released_.clear();
  transfer_target_.clear();
  ResetTimers();
}

void ElectionMachine::BecomePreCandidate() {
  // PreVote (Raft thesis §9.6): ask first whether we could win, without
  // raising our term, so a node that was partitioned away cannot force a
  // stable leader to step down when it comes back.
  role_ = Role::kPreCandidate;
  leader_.clear();
  votes_.clear();
  ResetTimers();
}

void ElectionMachine::BecomeCandidate() {
  term_ += 1;
  voted_for_ = config_.self;
  role_ = Role::kCandidate;
  leader_.clear();
  votes_.clear();
  ResetTimers();
}

void ElectionMachine::BecomeLeader() {
  role_ = Role::kLeader;
  leader_ = config_.self;
  votes_.clear();
  match_.clear();
  released_.clear();
  recent_active_.clear();
  transfer_target_.clear();
  ResetTimers();
  // The no-op of Raft §5.4.2: rewrite the record at our own term. Records
  // from earlier terms commit only through it, and once it commits its
  // (term, index) is this coordinator's fence.
  v1::PlanRecord next = record_;
  next.set_term(term_);
  next.set_index(record_.index() + 1);
  record_ = std::move(next);
  match_[config_.self] = record_;
  MaybeCommit();
  BroadcastAppend();
}

void ElectionMachine::Campaign(bool pre_vote, bool transfer) {
  if (pre_vote) {
    BecomePreCandidate();
  } else {
    BecomeCandidate();
  }
  votes_[config_.self] = true;
  if (static_cast<int>(votes_.size()) >= Quorum()) {
    // A single voter wins at once.
    if (pre_vote) return Campaign(false);
    return BecomeLeader();
  }
  for (const std::string& voter : config_.voters) {
    if (voter != config_.self) SendVoteRequest(voter, pre_vote, transfer);
  }
}

void ElectionMachine::SendVoteRequest(const std::string& voter, bool pre_vote,
                                      bool transfer) {
  v1::PeerMessage m;
  m.set_type(pre_vote ? v1::PRE_VOTE : v1::VOTE);
  m.set_to(voter);
  // A pre-vote asks about the term we would campaign at.
  m.set_term(pre_vote ? term_ + 1 : term_);
  m.mutable_record()->set_term(record_.term());
  m.mutable_record()->set_index(record_.index());
  if (transfer) m.set_transfer(true);
  Send(std::move(m));
}

ElectionReady ElectionMachine::Tick() {
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
  return TakeReady();
}

void ElectionMachine::TickElection() {
  ++election_elapsed_;
  // Learners never campaign: they hold no vote to win with.
  if (!IsVoter(config_.self) || election_elapsed_ < randomized_timeout_ ||
      election_elapsed_ < pre_vote_hold_until_) {
    return;
  }
  Campaign(config_.pre_vote);
}

void ElectionMachine::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (!transfer_target_.empty() && ++transfer_elapsed_ >= config_.election_ticks) {
    // The target did not take over within an election timeout (it is down,
    // cut off or lost the election): lead on and accept proposals again.
    transfer_target_.clear();
  }
  if (election_elapsed_ >= config_.election_ticks) {
    election_elapsed_ = 0;
    if (config_.check_quorum) {
      // CheckQuorum: a leader that has not heard from a majority within an
      // election timeout may already be deposed; stop commanding.
      recent_active_.insert(config_.self);
      int active = 0;
      for (const std::string& v : config_.voters) active += recent_active_.count(v);
      recent_active_.clear();
      if (active < Quorum()) {
        BecomeFollower(term_, "");
        return;
      }
    }
  }
  if (heartbeat_elapsed_ >= config_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    BroadcastAppend();
  }
}

absl::StatusOr<ElectionReady> ElectionMachine::Propose(std::string_view in_flight,
                                                       std::string_view payload) {
  if (role_ != Role::kLeader) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     "node " + config_.self + " is not the coordinator; leader is " +
                         (leader_.empty() ? std::string("unknown") : leader_),
                     {{"leader", leader_}, {"term", std::to_string(term_)}});
  }
  if (payload.size() > kMaxPlanPayloadBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedMessage,
                     "plan change refused: its record is " + std::to_string(payload.size()) +
                         " bytes, over the 1 MiB bound",
                     {{"payload_bytes", std::to_string(payload.size())}});
  }
  if (!in_flight.empty() && !IsMember(in_flight)) {
    // The plan's node in flight was edited out of cluster.voters: every
    // change of that plan (an abort too) names it, and a record naming a
    // node outside the group is never written. Only restoring the voters
    // lets the plan finish.
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kPlanMembersChanged,
                     "plan change refused: its node in flight '" + std::string(in_flight) +
                         "' is neither a voter nor a learner on " + config_.self +
                         "; put it back in cluster.voters on every agent so the plan can "
                         "finish its step",
                     {{"in_flight", std::string(in_flight)}});
  }
  if (!transfer_target_.empty()) {
    // A record written now could leave the target behind and stall the
    // transfer (Raft thesis §3.10); the next coordinator takes it.
    return MakeError(absl::StatusCode::kUnavailable, reason::kLeaderTransferInProgress,
                     "node " + config_.self + " is handing leadership to " +
                         transfer_target_ + "; retry on the new coordinator",
                     {{"target", transfer_target_}, {"term", std::to_string(term_)}});
  }
  if (!SameKey(record_, committed_)) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                     "plan record " + std::to_string(record_.index()) +
                         " is not committed yet; retry when it is",
                     {{"pending_index", std::to_string(record_.index())}});
  }
  const std::string& holder = committed_.in_flight();
  if (!holder.empty() && holder != in_flight && released_ != holder) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kHandoffPending,
                     "node " + holder + " is in flight and has not answered at term " +
                         std::to_string(term_) + " that its operation is finished",
                     {{"in_flight", holder}, {"term", std::to_string(term_)}});
  }
  v1::PlanRecord next;
  next.set_term(term_);
  next.set_index(record_.index() + 1);
  next.set_in_flight(std::string(in_flight));
  next.set_payload(std::string(payload));
  record_ = std::move(next);
  match_[config_.self] = record_;
  released_.clear();
  MaybeCommit();
  BroadcastAppend();
  return TakeReady();
}

bool ElectionMachine::RecordRelease(std::string_view node, uint64_t term,
                                    uint64_t index, v1::HandoffOutcome outcome) {
  // A node whose provider may be down keeps the slot, so that no second
  // node is disrupted while it is (the fleet plan turns that into
  // BreakGlass).
  if (!IsReleasable(outcome)) return false;
  // Nor while a newer record is pending (found in review): proposing it
  // cleared the release, and an answer at the record it replaces, taken
  // now, would outlive it, so the next node could go in flight although
  // the holder never answered at the record that still names it.
  if (role_ != Role::kLeader || term != term_ || index != committed_.index() ||
      node != committed_.in_flight() || !SameKey(record_, committed_)) {
    return false;
  }
  released_ = std::string(node);
  return true;
}

std::optional<v1::Fence> ElectionMachine::CurrentFence() const {
  if (role_ != Role::kLeader || committed_.term() != term_ ||
      !SameKey(record_, committed_)) {
    return std::nullopt;
  }
  v1::Fence fence;
  fence.set_term(committed_.term());
  fence.set_index(committed_.index());
  fence.set_in_flight(committed_.in_flight());
  return fence;
}

void ElectionMachine::Send(v1::PeerMessage m) {
  m.set_from(config_.self);
  outbox_.push_back(std::move(m));
}

ElectionReady ElectionMachine::TakeReady() {
  ElectionReady ready;
  // A record's (term, index) names its content (one leader per term writes
  // each index once), so comparing keys is enough and avoids copying
  // payloads on every tick.
  const v1::HardState& last = last_hard_state_;
  bool changed = term_ != last.term() || voted_for_ != last.voted_for() ||
                 !SameKey(record_, last.record()) || !SameKey(committed_, last.committed());
  if (changed) {
    last_hard_state_ = hard_state();
    ready.hard_state = last_hard_state_;
  }
  ready.messages = std::move(outbox_);
  outbox_.clear();
  if (newly_committed_) {
    ready.committed = committed_;
    newly_committed_ = false;
  }
  SoftState soft{role_, leader_};
  if (!(soft == last_soft_state_)) {
    last_soft_state_ = soft;
    ready.soft_state = soft;
  }
  return ready;
}

}  // namespace kmsfleet
