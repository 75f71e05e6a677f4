// ElectionMachine: leadership transfer (Raft thesis §3.10; the message
// shape of etcd-io/raft's MsgTransferLeader and MsgTimeoutNow). A
// coordinator about to stop hands leadership to an up-to-date voter, so
// the group waits a few round trips for the next coordinator rather than
// an election timeout. Safety still rests on the votes: a transfer only
// lets a candidate skip PreVote and the voters' leader lease.
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

absl::StatusOr<ElectionReady> ElectionMachine::TransferLeadership(
    std::string_view target) {
  if (role_ != Role::kLeader) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     "node " + config_.self + " is not the coordinator; nothing to transfer",
                     {{"leader", leader_}, {"term", std::to_string(term_)}});
  }
  std::string to = target.empty() ? MostUpToDateVoter() : std::string(target);
  if (to.empty() || to == config_.self || !IsVoter(to)) {
    std::string named = to.empty() ? std::string("no voter has answered this leader")
                                   : "'" + to.substr(0, 253) + "' is not another voter";
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNoTransferTarget,
                     "leadership transfer from " + config_.self + " refused: " + named,
                     {{"target", to.substr(0, 253)}});
  }
  transfer_target_ = to;
  transfer_elapsed_ = 0;
  // Bring the target up to date (an APPEND now rather than at the next
  // heartbeat); its answer triggers TIMEOUT_NOW. It may already hold our
  // record, and then TIMEOUT_NOW goes at once.
  v1::PeerMessage append;
  append.set_type(v1::APPEND);
  append.set_to(to);
  append.set_term(term_);
  *append.mutable_record() = record_;
  *append.mutable_committed() = committed_;
  Send(std::move(append));
  SendTimeoutNowIfCaughtUp();
  return TakeReady();
}

// The voter whose last acknowledged record is newest: it can win at once
// (Raft §5.4.1 lets every voter grant it). Ties go to the first in config
// order, which is deterministic.
std::string ElectionMachine::MostUpToDateVoter() const {
  std::string best;
  for (const std::string& voter : config_.voters) {
    if (voter == config_.self) continue;
    auto it = match_.find(voter);
    if (it == match_.end()) continue;
    if (best.empty() || Newer(it->second, match_.at(best))) best = voter;
  }
  return best;
}

// Only once the target holds our record: a candidate with an older one
// would be refused by the voters that hold ours, and the group would wait
// for a timeout after all. Sent again on every acknowledgement of the
// target until it campaigns (its next answer then carries a higher term),
// so a lost TIMEOUT_NOW costs one heartbeat. A duplicate that arrives
// after the campaign carries an old term and is dropped.
void ElectionMachine::SendTimeoutNowIfCaughtUp() {
  if (role_ != Role::kLeader || transfer_target_.empty()) return;
  auto it = match_.find(transfer_target_);
  if (it == match_.end() || !SameKey(it->second, record_)) return;
  v1::PeerMessage m;
  m.set_type(v1::TIMEOUT_NOW);
  m.set_to(transfer_target_);
  m.set_term(term_);
  Send(std::move(m));
}

// The leader of our term (or a newer one, whose term we just took) asks us
// to campaign now. Learners hold no vote to win with; a leader has
// nothing to gain. The election restriction still decides: if our record
// were older than a voter's, that voter refuses us.
void ElectionMachine::HandleTimeoutNow(const v1::PeerMessage& /*m*/) {
  if (!IsVoter(config_.self) || role_ == Role::kLeader) return;
  Campaign(/*pre_vote=*/false, /*transfer=*/true);
}

}  // namespace kmsfleet
