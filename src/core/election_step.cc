// ElectionMachine::Step and the per-message handlers (architecture.md §6;
// Raft §5.1-5.4, PreVote and CheckQuorum from the Raft thesis §9.6 and
// etcd-io/raft's raft.go).
#include <cassert>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxNameBytes = 253;  // a DNS name

bool IsVoteRequest(v1::MessageType t) { return t == v1::PRE_VOTE || t == v1::VOTE; }

}  // namespace

absl::StatusOr<ElectionReady> ElectionMachine::Step(const v1::PeerMessage& m) {
  auto refuse = [&](std::string_view reason, const std::string& problem) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason,
                     "peer message refused by " + config_.self + ": " + problem,
                     {{"from", m.from().substr(0, kMaxNameBytes)},
                      {"term", std::to_string(m.term())},
                      {"type", std::to_string(m.type())}});
  };
  if (m.from() == config_.self || !IsMember(m.from())) {
    return refuse(reason::kUnknownPeer, "sender '" + m.from().substr(0, kMaxNameBytes) +
                                            "' is not a member of the group");
  }
  if (m.to() != config_.self) {
    return refuse(reason::kUnknownPeer, "addressed to '" +
                                            m.to().substr(0, kMaxNameBytes) + "'");
  }
  if (m.type() < v1::PRE_VOTE || m.type() > v1::TIMEOUT_NOW || m.term() == 0) {
    return refuse(reason::kMalformedMessage, "unknown type or term 0");
  }
  // A learner can neither lead nor campaign: its certificate must not make
  // a node follow it, raise the term, or start an election.
  if (!IsVoter(m.from()) && (m.type() == v1::APPEND || m.type() == v1::TIMEOUT_NOW ||
                             IsVoteRequest(m.type()))) {
    return refuse(reason::kUnknownPeer, "learner '" + m.from() +
                                            "' sent a message only a voter may send");
  }
  // Nor may its answers raise the term: a forged one from a far-future term
  // would depose the leader, or use up the terms. A real learner answers
  // from a later term only to a deposed leader, whose voters depose it too.
  if (!IsVoter(m.from()) && m.term() > term_) return TakeReady();
  // Two leaders in one term cannot both have won a majority: an append at
  // our term from another node than the leader we follow is forged.
  if (m.type() == v1::APPEND && m.term() == term_ && !leader_.empty() && leader_ != m.from()) {
    return refuse(reason::kMalformedMessage, "append from '" + m.from() + "' at term " +
                                                 std::to_string(term_) + ", whose leader is '" +
                                                 leader_ + "'");
  }
  if (m.record().payload().size() > kMaxPlanPayloadBytes ||
      m.committed().payload().size() > kMaxPlanPayloadBytes ||
      m.record().in_flight().size() > kMaxNameBytes ||
      m.committed().in_flight().size() > kMaxNameBytes) {
    return refuse(reason::kMalformedMessage, "plan record over its size bounds");
  }
  bool drop = false;
  StepTermCheck(m, drop);
  if (drop) return TakeReady();
  switch (m.type()) {
    case v1::PRE_VOTE:
    case v1::VOTE: HandleVoteRequest(m); break;
    case v1::PRE_VOTE_RESP:
    case v1::VOTE_RESP: HandleVoteResponse(m); break;
    case v1::APPEND: HandleAppend(m); break;
    case v1::APPEND_RESP: HandleAppendResponse(m); break;
    case v1::TIMEOUT_NOW: HandleTimeoutNow(m); break;
    default: break;  // excluded by the validation above
  }
  return TakeReady();
}

void ElectionMachine::StepTermCheck(const v1::PeerMessage& m, bool& drop) {
  if (m.term() > term_) {
    if (IsVoteRequest(m.type())) {
      // Leader stickiness: while we hear from a live leader, a vote request
      // at a higher term comes from a node that was cut off; ignoring it
      // (without raising our term) keeps the stable leader in place.
      bool in_lease = config_.check_quorum && !leader_.empty() &&
                      election_elapsed_ < config_.election_ticks;
      // Except a real vote for a candidate the leader itself told to
      // campaign (leadership transfer, etcd raft's campaignTransfer).
      bool transfer = m.type() == v1::VOTE && m.transfer();
      if (in_lease && !transfer) {
        drop = true;
        return;
      }
    }
    // A pre-vote and a granted pre-vote answer carry a term nobody holds
    // yet; they must not raise ours.
    if (m.type() == v1::PRE_VOTE) return;
    if (m.type() == v1::PRE_VOTE_RESP && !m.reject()) return;
    BecomeFollower(m.term(), m.type() == v1::APPEND ? m.from() : "");
    return;
  }
  if (m.term() < term_) {
    // Answer a stale leader or pre-candidate with our term so that it
    // learns it is deposed; otherwise a node partitioned during PreVote
    // could never rejoin (etcd-io/raft, "ignored a %s message with lower
    // term"). Everything else from an old term is dropped.
    if (m.type() == v1::APPEND || m.type() == v1::PRE_VOTE) {
      v1::PeerMessage reply;
      reply.set_type(m.type() == v1::APPEND ? v1::APPEND_RESP : v1::PRE_VOTE_RESP);
      reply.set_to(m.from());
      reply.set_term(term_);
      reply.set_reject(true);
      Send(std::move(reply));
    }
    drop = true;
  }
}

void ElectionMachine::HandleVoteRequest(const v1::PeerMessage& m) {
  bool pre = m.type() == v1::PRE_VOTE;
  // We may vote again for the same candidate (a retransmission), or for
  // anyone when we have neither voted nor know a leader in this term; a
  // pre-vote for a future term binds nothing.
  bool can_vote = voted_for_ == m.from() ||
                  (voted_for_.empty() && leader_.empty()) ||
                  (pre && m.term() > term_);
  // Election restriction (Raft §5.4.1): never help a candidate whose record
  // is older than ours, so every leader holds every committed record.
  bool up_to_date = !Newer(record_, m.record());
  bool grant = can_vote && up_to_date && IsVoter(config_.self) && IsVoter(m.from());
  // Declined only to avoid a split vote: answer nothing, as if the request
  // were lost (a refusal could carry term 0 before the first election).
  if (grant && pre && !GrantsPreVote(m)) return;
  // A pre-vote request means its sender has lost the leader too (we are
  // out of lease, or the request would have been dropped). If we refuse
  // it only because our record is newer, the next leader must be one like
  // us: campaign now rather than after our own timeout.
  bool campaign_now = pre && can_vote && !up_to_date && m.term() > term_ &&
                      role_ == Role::kFollower && IsVoter(config_.self);
  v1::PeerMessage reply;
  reply.set_type(pre ? v1::PRE_VOTE_RESP : v1::VOTE_RESP);
  reply.set_to(m.from());
  if (grant) {
    reply.set_term(m.term());
    if (!pre) {
      election_elapsed_ = 0;
      voted_for_ = m.from();
    }
  } else {
    reply.set_term(term_);
    reply.set_reject(true);
  }
  Send(std::move(reply));
  if (campaign_now) Campaign(config_.pre_vote);
}

// Split votes: two followers that time out within one message delay both
// win their pre-votes (which bind nobody), both campaign, each votes for
// itself, and nobody wins until another randomized timeout has passed. On
// loopback that doubled a failover about once in thirty. So, for liveness
// only (safety rests on real votes), a pre-vote binds a little:
// - a node that grants one keeps to it, and does not campaign itself, for
//   two heartbeat intervals, time enough for that candidate's real vote;
// - two pre-candidates that started within those two intervals of each
//   other break the tie by name: the greater grants the lesser and stands
//   down. The lesser sends its own request again with its silence: the
//   first copy may have been dropped while the rival still heard the old
//   leader (its lease), and would otherwise leave both waiting a timeout.
//   A pre-candidate that has waited longer already lacks answers, so it
//   grants and stands down whatever the names.
// Nothing here is persisted; a restart forgets it, costing at most a split.
bool ElectionMachine::GrantsPreVote(const v1::PeerMessage& m) {
  int hold = 2 * config_.heartbeat_ticks;
  bool holding = !pre_voted_for_.empty() && pre_vote_term_ == m.term() &&
                 pre_voted_for_ != m.from() &&
                 election_elapsed_ < pre_vote_hold_until_;
  if (holding) return false;
  if (role_ == Role::kPreCandidate && m.term() == term_ + 1) {
    bool simultaneous = election_elapsed_ < hold;
    if (simultaneous && !(m.from() < config_.self)) {
      SendVoteRequest(m.from(), /*pre_vote=*/true);
      return false;
    }
    BecomeFollower(term_, "");
  }
  pre_voted_for_ = m.from();
  pre_vote_term_ = m.term();
  pre_vote_hold_until_ = election_elapsed_ + hold;
  return true;
}

void ElectionMachine::HandleVoteResponse(const v1::PeerMessage& m) {
  bool pre = m.type() == v1::PRE_VOTE_RESP;
  if (pre ? role_ != Role::kPreCandidate : role_ != Role::kCandidate) return;
  // A granted pre-vote names the term we would campaign at; anything else
  // is an answer to an older round.
  uint64_t expected = pre && !m.reject() ? term_ + 1 : term_;
  if (m.term() != expected || !IsVoter(m.from())) return;
  votes_.emplace(m.from(), !m.reject());  // the first answer counts
  int granted = 0;
  int rejected = 0;
  for (const auto& [voter, yes] : votes_) (yes ? granted : rejected)++;
  int voters = static_cast<int>(config_.voters.size());
  if (granted >= Quorum()) {
    if (pre) {
      Campaign(false);
    } else {
      BecomeLeader();
    }
  } else if (rejected > voters - Quorum()) {
    BecomeFollower(term_, "");
  }
}

void ElectionMachine::HandleAppend(const v1::PeerMessage& m) {
  // Same term from here on. Two leaders in one term cannot exist (each
  // needs a majority of single votes), so a leader ignores the message.
  if (role_ == Role::kLeader) return;
  if (role_ != Role::kFollower) BecomeFollower(term_, m.from());
  leader_ = m.from();
  election_elapsed_ = 0;
  // Only move forward: a delayed or duplicated APPEND from earlier in this
  // term must not take back a record we already acknowledged.
  if (Newer(m.record(), record_)) record_ = m.record();
  AdoptCommitted(m.committed());
  v1::PeerMessage reply;
  reply.set_type(v1::APPEND_RESP);
  reply.set_to(m.from());
  reply.set_term(term_);
  reply.mutable_record()->set_term(record_.term());
  reply.mutable_record()->set_index(record_.index());
  Send(std::move(reply));
}

void ElectionMachine::AdoptCommitted(const v1::PlanRecord& record) {
  if (!Newer(record, committed_)) return;
  committed_ = record;
  newly_committed_ = true;
  // The leader sends a record at least as new as its commit, so this only
  // guards against a peer that does not.
  if (Newer(committed_, record_)) record_ = committed_;
}

void ElectionMachine::HandleAppendResponse(const v1::PeerMessage& m) {
  if (role_ != Role::kLeader) return;
  recent_active_.insert(m.from());
  if (m.reject()) return;
  match_[m.from()] = m.record();
  if (MaybeCommit()) BroadcastAppend();
  if (m.from() == transfer_target_) SendTimeoutNowIfCaughtUp();
}

bool ElectionMachine::MaybeCommit() {
  if (role_ != Role::kLeader || !Newer(record_, committed_)) return false;
  // Learners' acknowledgements do not count towards the majority.
  int acks = 0;
  for (const std::string& voter : config_.voters) {
    auto it = match_.find(voter);
    if (it != match_.end() && SameKey(it->second, record_)) ++acks;
  }
  if (acks < Quorum()) return false;
  // record_.term() == term_ always holds for a leader (BecomeLeader writes
  // the record at its term), so this is Raft's current-term commit rule.
  assert(record_.term() == term_);
  committed_ = record_;
  newly_committed_ = true;
  return true;
}

void ElectionMachine::BroadcastAppend() {
  auto send_to = [&](const std::string& peer) {
    if (peer == config_.self) return;
    v1::PeerMessage m;
    m.set_type(v1::APPEND);
    m.set_to(peer);
    m.set_term(term_);
    *m.mutable_record() = record_;
    *m.mutable_committed() = committed_;
    Send(std::move(m));
  };
  for (const std::string& v : config_.voters) send_to(v);
  for (const std::string& l : config_.learners) send_to(l);
}

}  // namespace kmsfleet
