// The election shell (architecture.md §6): drives one ElectionMachine with
// an Asio steady timer on a thread of its own, persists its HardState and
// the node's FenceState (fsync + atomic rename) before anything that
// depends on them is sent or answered, and sends its messages to peers
// over kmsfleet.v1.Peer.
//
// Driver loop, as etcd-io/raft's doc.go: Tick or Step, then persist
// hard_state, then send messages, then apply the committed record.
// Thread-safe: every public method may be called from gRPC handler threads.
#ifndef KMSFLEET_CLUSTER_PEER_NODE_H_
#define KMSFLEET_CLUSTER_PEER_NODE_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/repeat_limiter.h"
#include "kmsfleet/v1/fleet.pb.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

class PeerSender;

struct PeerNodeOptions {
  ElectionConfig election;
  std::chrono::milliseconds tick{50};
  std::string state_dir;  // holds election.pb and fence.pb
  // Every member's cluster address (host:port), this node's included.
  std::map<std::string, std::string> addresses;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  uint64_t seed = 0;  // for the randomized election timeout
  // The executor's hand-off answer at a fence: its last operation's
  // outcome (DecideHandoff). Called under the node's lock, so that a
  // command being admitted meanwhile is seen as running. The default (no
  // executor) is never started.
  std::function<HandoffAnswer(const v1::Fence&)> handoff_outcome =
      [](const v1::Fence&) {
        return HandoffAnswer{v1::HANDOFF_NEVER_STARTED, "this node runs no executor"};
      };
};

class PeerNode {
 public:
  // Creates options.state_dir (mode 0700) if absent and loads persisted
  // state from it. Errors: DataLoss with reason CORRUPT_STATE naming the
  // file when it cannot be parsed; FailedPrecondition/STATE_WRITE_FAILED
  // naming the directory when it cannot be created; InvalidArgument for an
  // invalid election config.
  static absl::StatusOr<std::unique_ptr<PeerNode>> Open(PeerNodeOptions options);
  ~PeerNode();

  void Start();  // the timer and one sender thread per peer
  void Stop();   // idempotent

  // Steps one message that arrived from a peer. Errors as
  // ElectionMachine::Step; nothing changes on error.
  absl::Status Receive(const v1::PeerMessage& message);

  // Leader only: commits a plan record naming `in_flight`, first asking the
  // current in-flight node to hand off when that changes, and waits up to
  // `timeout` for the commit. Returns the committed record's fence, only
  // once that record is durable here and committed. Errors as
  // ElectionMachine::Propose; Unavailable/STATE_WRITE_FAILED when the
  // record could not be persisted; Unavailable/PLAN_CHANGE_PENDING when it
  // did not commit in time; FailedPrecondition/NOT_RELEASABLE (metadata
  // in_flight, outcome) or HANDOFF_PENDING when the in-flight node's
  // answer keeps its slot.
  // `allowed`, when set, is asked under the node's lock with the committed
  // record before anything is proposed; its refusal is returned as it is.
  absl::StatusOr<v1::Fence> ProposePlan(
      const std::string& in_flight, const std::string& payload,
      std::chrono::milliseconds timeout,
      const std::function<absl::Status(const v1::PlanRecord& committed)>& allowed = {});

  // Leader only: asks `holder`, the in-flight node of the committed record,
  // whether its operation is finished (Peer.Release at the current fence),
  // and records a release in the election so that the next proposal may
  // name another node (the plan machine's hand-off action). Errors as
  // ProposePlan's hand-off: NOT_RELEASABLE, HANDOFF_PENDING (still
  // running, ask again); FailedPrecondition NOT_IN_FLIGHT when `holder` is
  // not the committed in-flight node; Unavailable NOT_LEADER, or
  // PLAN_CHANGE_PENDING while a proposed record is not committed. On a
  // release, `released` (if set) gets the holder's answer, which names its
  // last operation.
  absl::Status HandOff(const std::string& holder, v1::ReleaseReply* released = nullptr);

  // Where a leadership transfer ended: asked of `target`, `leader` leads
  // at `term` (the target, unless its election failed and another won).
  struct Transferred {
    std::string target;
    std::string leader;
    uint64_t term = 0;
  };
  // Leader only, before stopping: hands leadership to `target` ("" for the
  // most up-to-date voter; ElectionMachine::TransferLeadership) and waits
  // up to `timeout` until this node follows the target at a newer term.
  // Proposals are refused meanwhile (LEADER_TRANSFER_IN_PROGRESS). Errors:
  // Unavailable/NOT_LEADER; FailedPrecondition/NO_TRANSFER_TARGET;
  // Unavailable/STATE_WRITE_FAILED; DeadlineExceeded/
  // LEADER_TRANSFER_IN_PROGRESS (metadata target) when no new leader was
  // heard within `timeout` (the machine abandons it an election timeout
  // after it began).
  absl::StatusOr<Transferred> TransferLeadership(const std::string& target,
                                                 std::chrono::milliseconds timeout);

  v1::LeaderView View();
  // The fence of the record this node committed as leader in its own
  // term, or nullopt (not leading, or its term's first record, or a newer
  // one, not yet committed): what disruptive commands are sent under.
  std::optional<v1::Fence> CurrentFence();
  // Election ticks run so far: a watchdog reads that the tick loop moves.
  uint64_t ticks() const { return ticks_.load(std::memory_order_relaxed); }
  // Admits a disruptive command (swap or rollback) under `fence` only if
  // it names the committed record this node holds and that record names
  // this node (FenceGuard::AdmitSwap: STALE_TERM, STALE_FENCE,
  // UNKNOWN_FENCE, NOT_IN_FLIGHT), and persists what it learned before
  // returning OK. It decides on what the node holds now, without waiting:
  // call AwaitFence first, before the executor is marked busy. Refusals
  // are logged, at most once each 10 s per reason (RefusalLogDue).
  absl::Status AdmitSwap(const v1::Fence& fence);
  // Waits up to a tick, deciding nothing, until this node holds `fence`'s
  // record as committed: the leader sends a command right after its record
  // commits, and the append that tells this node so at the same time.
  void AwaitFence(const v1::Fence& fence);
  // A member's command must be the step the committed record's plan asks
  // of this node, sent by the leader it follows (BindCommandToPlan);
  // refusals are logged as AdmitSwap's.
  absl::StatusOr<PlanBinding> CheckCommand(const NodeCommand& command);
  // A member's Stage or Preflight must be of the committed plan's release
  // (CheckReleaseAgainstPlan), judged once `fence`, if sent, is waited for
  // as in AwaitFence. Not logged here: the Agent service logs refusals,
  // at most once each 10 s per sender and reason.
  absl::Status CheckRelease(const std::optional<v1::Fence>& fence,
                            const ReleaseCommand& command);
  // Answers a hand-off query under `fence` with the executor's outcome
  // (FenceGuard::AdmitRelease), persisting a release before answering; an
  // unseen fence is waited for as in AwaitFence.
  absl::StatusOr<v1::ReleaseReply> Release(const v1::Fence& fence);

  const std::string& self() const { return options_.election.self; }
  const std::string& state_dir() const { return options_.state_dir; }
  bool IsMember(const std::string& name) const;
  const std::vector<std::string>& voters() const { return options_.election.voters; }

 private:
  explicit PeerNode(PeerNodeOptions options, v1::HardState hard_state,
                    v1::FenceState fence_state);
  // Persists, sends and applies `ready`. Errors: the persist failure
  // (STATE_WRITE_FAILED), after going back to the durable state.
  absl::Status Process(const ElectionReady& ready) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PersistFence() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether the refusal line `message` with `reason` is written now:
  // nullopt to hold it back, else how many were held back since the last.
  // The Agent service logs who sent each refused command (throttled per
  // sender); these lines say why in the fence's and plan's terms, and a
  // caller sending refused commands every tick must not flood the journal
  // through them either.
  std::optional<int64_t> RefusalLogDue(std::string_view message, std::string_view reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits up to a tick, releasing `lock` (on mu_), until this node holds
  // `fence`'s record as committed or stops.
  void AwaitCommitOf(const v1::Fence& fence, std::unique_lock<std::mutex>& lock);
  absl::StatusOr<v1::ReleaseReply> QueryRelease(const std::string& holder,
                                                const v1::Fence& fence);
  absl::Status AskRelease(const std::string& holder, const v1::Fence& fence,
                          v1::ReleaseReply* released = nullptr);
  struct Ticker;
  void ScheduleTick();

  PeerNodeOptions options_;
  std::string election_path_;
  std::string fence_path_;
  SeededRandom random_;
  std::map<std::string, std::unique_ptr<PeerSender>> senders_;

  std::mutex mu_;
  std::condition_variable changed_;  // commits, role changes, Stop
  std::unique_ptr<ElectionMachine> machine_ ABSL_GUARDED_BY(mu_);
  v1::HardState durable_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<FenceGuard> guard_ ABSL_GUARDED_BY(mu_);
  v1::FenceState fence_durable_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> ticks_{0};
  uint64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  static constexpr int64_t kRefusalLogIntervalMs = 10'000;
  static constexpr size_t kRefusalLogKeys = 64;
  RepeatLimiter refusal_log_ ABSL_GUARDED_BY(mu_){kRefusalLogIntervalMs, kRefusalLogKeys};
  std::unique_ptr<Ticker> ticker_;  // set by Start
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_PEER_NODE_H_
