// Coordinator election and the replicated plan register (architecture.md §6)
// as a pure state machine in the style of etcd-io/raft: the shell feeds it
// peer messages (Step) and clock ticks (Tick) and carries out the returned
// ElectionReady. It reads no clock, opens no socket and draws no random
// number of its own: the randomized election timeout comes from an injected
// ElectionRandom.
//
// The register holds one PlanRecord (term, index, in_flight, payload). A new
// leader first rewrites the record at its own term (Raft's no-op entry), so
// the committed (term, index) is always the token of the current
// coordinator once anything has committed under it.
//
// Thread-compatible: callers serialise access.
#ifndef KMSFLEET_CORE_ELECTION_H_
#define KMSFLEET_CORE_ELECTION_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

// Largest plan payload the machine accepts from a proposal or a peer.
inline constexpr size_t kMaxPlanPayloadBytes = 1 << 20;
// Largest peer message the transport takes: an APPEND carries the record
// and the committed one, each up to the payload bound, and names and terms.
inline constexpr size_t kMaxPeerMessageBytes = 2 * kMaxPlanPayloadBytes + (64 << 10);

// The one random input. Implementations must be deterministic for a seed.
class ElectionRandom {
 public:
  virtual ~ElectionRandom() = default;
  // Returns a value in [lo, hi]. REQUIRES: lo <= hi.
  virtual int64_t Uniform(int64_t lo, int64_t hi) = 0;
};

// SplitMix64 over a seed: the same seed gives the same timeouts.
class SeededRandom final : public ElectionRandom {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  // kmsfleet::ElectionRandom
  int64_t Uniform(int64_t lo, int64_t hi) override;
  uint64_t Next();

 private:
  uint64_t state_;
};

struct ElectionConfig {
  std::string self;                   // this node's name
  std::vector<std::string> voters;    // 1, 3, 5 or 7 names, self included
  std::vector<std::string> learners = {};  // non-voting members
  int election_ticks = 10;            // randomized in [n, 2n-1]
  int heartbeat_ticks = 1;            // REQUIRES: < election_ticks
  bool pre_vote = true;
  bool check_quorum = true;
};

// Validates `config`: self is a member, names are unique and non-empty,
// voters are 1..7, heartbeat_ticks < election_ticks.
// Errors: InvalidArgument, reason INVALID_CONFIG, naming the problem.
absl::Status ValidateElectionConfig(const ElectionConfig& config);

enum class Role { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view RoleName(Role role);  // "Follower", "Leader", ...

// Volatile state, for logs, metrics and `kmsfleetctl leader` only.
struct SoftState {
  Role role = Role::kFollower;
  std::string leader;  // "" when unknown
  bool operator==(const SoftState&) const = default;
};

struct ElectionReady {
  // Term, vote and records: persist (fsync + rename) BEFORE sending
  // `messages` or applying `committed`. Unset when unchanged.
  std::optional<v1::HardState> hard_state;
  // Send once hard_state is durable. Order within the vector is irrelevant.
  std::vector<v1::PeerMessage> messages;
  // A newly committed plan record: apply once hard_state is durable.
  std::optional<v1::PlanRecord> committed;
  // Role or leader changed: for logs and metrics only.
  std::optional<SoftState> soft_state;
};

// Orders records by (term, index): true when `a` is newer than `b`.
bool Newer(const v1::PlanRecord& a, const v1::PlanRecord& b);
bool SameKey(const v1::PlanRecord& a, const v1::PlanRecord& b);

class ElectionMachine {
 public:
  // `persisted` is the last durable HardState (empty on first start).
  // REQUIRES: ValidateElectionConfig(config).ok(); `random` outlives this.
  ElectionMachine(ElectionConfig config, const v1::HardState& persisted,
                  ElectionRandom& random);

  // Handles one message from a peer. Errors, with nothing changed:
  // InvalidArgument with reason UNKNOWN_PEER (sender not a member, or the
  // message is not addressed to this node) or MALFORMED_MESSAGE (unknown
  // type, term 0, payload over kMaxPlanPayloadBytes).
  absl::StatusOr<ElectionReady> Step(const v1::PeerMessage& message);

  // Advances logical time by one tick.
  ElectionReady Tick();

  // Leader only: replicates a new record naming `in_flight` and `payload`.
  // Errors, with nothing changed: Unavailable/NOT_LEADER (metadata leader),
  // Unavailable/PLAN_CHANGE_PENDING while the previous change or the
  // leader's first record is uncommitted, FailedPrecondition/HANDOFF_PENDING
  // when `in_flight` differs from the committed in-flight node and that node
  // has not answered at this term that its provider is serving
  // (RecordRelease), InvalidArgument/
  // MALFORMED_MESSAGE for an oversized payload or a non-member in_flight.
  absl::StatusOr<ElectionReady> Propose(std::string_view in_flight,
                                        std::string_view payload);

  // Leadership transfer (Raft thesis §3.10), for a coordinator about to
  // stop: hands leadership to `target`, or with "" to the voter whose
  // acknowledged record is newest. From now on Propose is refused
  // (Unavailable/LEADER_TRANSFER_IN_PROGRESS); the leader appends until the
  // target holds its record, then sends it TIMEOUT_NOW, and the target
  // campaigns at once with a vote request voters grant despite this live
  // leader. Abandoned, and proposals accepted again, if this node still
  // leads an election timeout later. A second call replaces the target.
  // Errors, with nothing changed: Unavailable/NOT_LEADER;
  // FailedPrecondition/NO_TRANSFER_TARGET (metadata target) when the target
  // is this node or not a voter, or when "" finds no voter that answered.
  absl::StatusOr<ElectionReady> TransferLeadership(std::string_view target);
  // The voter a transfer goes to while one is under way, else "".
  const std::string& transfer_target() const { return transfer_target_; }

  // Hand-off (architecture.md §6): `node` answered at `term`, under the
  // committed record `index`, that its last operation ended `outcome`.
  // Ignored unless the outcome left the provider serving (IsReleasable:
  // never started, Stable, RolledBack), this node leads at `term`, `node`
  // is the committed in-flight node, `index` is the committed index and no
  // newer record is pending. Returns whether the release was recorded: a
  // releasable answer that was not is no release, and is asked again.
  bool RecordRelease(std::string_view node, uint64_t term, uint64_t index,
                     v1::HandoffOutcome outcome);

  // The fence a command from this coordinator must carry: set only while
  // leading with a record committed at the current term and no change
  // pending.
  std::optional<v1::Fence> CurrentFence() const;

  uint64_t term() const { return term_; }
  Role role() const { return role_; }
  const std::string& leader() const { return leader_; }
  const v1::PlanRecord& committed() const { return committed_; }
  const v1::PlanRecord& record() const { return record_; }
  const ElectionConfig& config() const { return config_; }
  v1::HardState hard_state() const;

 private:
  bool IsVoter(std::string_view name) const;
  bool IsMember(std::string_view name) const;
  int Quorum() const { return static_cast<int>(config_.voters.size()) / 2 + 1; }

  void BecomeFollower(uint64_t term, std::string_view leader);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  // `transfer`: the leader sent TIMEOUT_NOW (skip PreVote, flag the VOTEs).
  void Campaign(bool pre_vote, bool transfer = false);
  void SendVoteRequest(const std::string& voter, bool pre_vote, bool transfer = false);
  void ResetTimers();

  void TickElection();
  void TickHeartbeat();
  void StepTermCheck(const v1::PeerMessage& m, bool& drop);
  void HandleVoteRequest(const v1::PeerMessage& m);
  bool GrantsPreVote(const v1::PeerMessage& m);
  void HandleVoteResponse(const v1::PeerMessage& m);
  void HandleAppend(const v1::PeerMessage& m);
  void HandleAppendResponse(const v1::PeerMessage& m);
  void HandleTimeoutNow(const v1::PeerMessage& m);
  std::string MostUpToDateVoter() const;
  void SendTimeoutNowIfCaughtUp();
  void BroadcastAppend();
  bool MaybeCommit();  // true when committed_ advanced
  void AdoptCommitted(const v1::PlanRecord& record);
  void Send(v1::PeerMessage m);
  ElectionReady TakeReady();

  ElectionConfig config_;
  ElectionRandom& random_;

  // Persisted (HardState).
  uint64_t term_ = 0;
  std::string voted_for_;
  v1::PlanRecord record_;
  v1::PlanRecord committed_;

  // Volatile.
  Role role_ = Role::kFollower;
  std::string leader_;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_timeout_ = 0;
  std::map<std::string, bool> votes_;             // candidate: voter -> granted
  std::map<std::string, v1::PlanRecord> match_;   // leader: peer -> acked record key
  std::set<std::string> recent_active_;           // leader: heard this round
  std::string released_;                          // leader: hand-off answered
  std::string transfer_target_;                   // leader: transferring to
  int transfer_elapsed_ = 0;                      // leader: ticks since it began
  // Pre-vote stickiness, for liveness only (see GrantsPreVote): whom this
  // node last granted a pre-vote, for which term, and until which
  // election_elapsed_ it keeps to that choice and does not campaign.
  std::string pre_voted_for_;
  uint64_t pre_vote_term_ = 0;
  int pre_vote_hold_until_ = 0;

  // Ready bookkeeping.
  v1::HardState last_hard_state_;
  SoftState last_soft_state_;
  std::vector<v1::PeerMessage> outbox_;
  bool newly_committed_ = false;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_ELECTION_H_
