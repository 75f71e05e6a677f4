// PeerNode: plan proposals, the hand-off and fenced commands
// (architecture.md §6).
#include <algorithm>
#include <chrono>
#include <thread>

#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/cluster/state_file.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/log.h"
#include "peer_sender.h"

namespace kmsfleet {
namespace {

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

// Ticks a hand-off query waits for the holder to learn the commit.
constexpr int kUnknownFenceTicks = 10;

}  // namespace

// The leader sends a command right after its record commits, and the
// append that tells this node so at the same time: the command can come
// first. Waiting for that append (at most a tick) spares the sender a
// refusal and a retry. Nothing is decided here: the guard then judges the
// fence against what this node holds, as it would have without the wait.
void PeerNode::AwaitCommitOf(const v1::Fence& fence, std::unique_lock<std::mutex>& lock) {
  changed_.wait_for(lock, options_.tick,
                    [&] { return stopping_ || !FenceUnseen(fence, machine_->committed()); });
}

absl::Status PeerNode::PersistFence() {
  if (guard_->state().SerializeAsString() == fence_durable_.SerializeAsString()) {
    return absl::OkStatus();
  }
  absl::Status s = WriteStateFile(fence_path_, guard_->state().SerializeAsString());
  if (!s.ok()) {
    // Not durable, so not true: forget it rather than act on it.
    guard_ = std::make_unique<FenceGuard>(self(), fence_durable_);
    return s;
  }
  fence_durable_ = guard_->state();
  return absl::OkStatus();
}

void PeerNode::AwaitFence(const v1::Fence& fence) {
  std::unique_lock lock(mu_);
  AwaitCommitOf(fence, lock);
}

absl::Status PeerNode::AdmitSwap(const v1::Fence& fence) {
  std::lock_guard lock(mu_);
  // A term this node saw in the election is a term it has seen: a command
  // from any older coordinator is stale, whether or not it reached us.
  guard_->ObserveTerm(machine_->term());
  absl::Status s = guard_->AdmitSwap(fence, machine_->committed());
  if (s.ok()) s = PersistFence();
  if (!s.ok()) {
    if (std::optional<int64_t> held_back = RefusalLogDue("swap command refused", ReasonOf(s))) {
      Log(LogLevel::kWarn, "swap command refused",
          {{"node", self()}, {"fence", Key(fence.term(), fence.index())},
           {"fence_in_flight", fence.in_flight()}, {"reason", ReasonOf(s)},
           {"error", std::string(s.message())},
           {"repeats_not_logged", std::to_string(*held_back)}});
    }
    return s;
  }
  Log(LogLevel::kInfo, "swap command admitted",
      {{"node", self()}, {"fence", Key(fence.term(), fence.index())}});
  return absl::OkStatus();
}

absl::StatusOr<PlanBinding> PeerNode::CheckCommand(const NodeCommand& command) {
  std::lock_guard lock(mu_);
  absl::StatusOr<PlanBinding> bound =
      BindCommandToPlan(machine_->committed(), self(), command,
                        LeaderOfTerm{.leader = machine_->leader(), .term = machine_->term()});
  if (!bound.ok()) {
    const std::string reason = ReasonOf(bound.status());
    if (std::optional<int64_t> held_back = RefusalLogDue("member command refused", reason)) {
      Log(LogLevel::kWarn, "member command refused",
          {{"node", self()}, {"operation", command.operation_id}, {"reason", reason},
           {"error", std::string(bound.status().message())},
           {"repeats_not_logged", std::to_string(*held_back)}});
    }
  }
  return bound;
}

std::optional<int64_t> PeerNode::RefusalLogDue(std::string_view message,
                                               std::string_view reason) {
  return refusal_log_.Admit(std::string(message) + "\n" + std::string(reason),
                            SteadyClock().NowSteadyMillis());
}

absl::Status PeerNode::CheckRelease(const std::optional<v1::Fence>& fence,
                                    const ReleaseCommand& command) {
  v1::PlanRecord committed;
  LeaderOfTerm following;
  {
    std::unique_lock lock(mu_);
    if (fence) AwaitCommitOf(*fence, lock);
    committed = machine_->committed();
    following = {.leader = machine_->leader(), .term = machine_->term()};
  }
  // Judged outside the election's lock (a record's plan is parsed); a
  // refusal is logged by the Agent service, at most once each 10 s.
  return BindReleaseToPlan(committed, self(), command, fence, following);
}

absl::StatusOr<v1::ReleaseReply> PeerNode::Release(const v1::Fence& fence) {
  std::unique_lock lock(mu_);
  AwaitCommitOf(fence, lock);
  guard_->ObserveTerm(machine_->term());
  // Asked under the lock: a command being admitted holds the executor busy
  // before it takes this lock, so it is never missed here.
  HandoffAnswer answer = options_.handoff_outcome(fence);
  absl::StatusOr<v1::ReleaseReply> reply =
      guard_->AdmitRelease(fence, machine_->committed(), answer);
  absl::Status s = reply.ok() ? PersistFence() : reply.status();  // the answer binds us
  if (!s.ok()) {
    Log(LogLevel::kWarn, "hand-off query refused",
        {{"node", self()}, {"fence", Key(fence.term(), fence.index())},
         {"reason", ReasonOf(s)}, {"error", std::string(s.message())}});
    return s;
  }
  Log(reply->released() ? LogLevel::kInfo : LogLevel::kWarn,
      reply->released() ? "hand-off granted" : "hand-off withheld",
      {{"node", self()}, {"fence", Key(fence.term(), fence.index())},
       {"outcome", v1::HandoffOutcome_Name(reply->outcome())},
       {"detail", reply->detail()}});
  return reply;
}

absl::StatusOr<v1::ReleaseReply> PeerNode::QueryRelease(const std::string& holder,
                                                         const v1::Fence& fence) {
  if (holder == self()) return Release(fence);
  if (auto it = senders_.find(holder); it != senders_.end()) return it->second->Release(fence);
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kHandoffPending,
                   "no address for in-flight node " + holder);
}

absl::Status PeerNode::AskRelease(const std::string& holder, const v1::Fence& fence,
                                  v1::ReleaseReply* released) {
  absl::StatusOr<v1::ReleaseReply> reply = QueryRelease(holder, fence);
  // The holder admits the query only once it knows the fence's record is
  // committed, which the append the leader sends on committing tells it,
  // usually within a round trip: ask again soon, then less often.
  const auto deadline = std::chrono::steady_clock::now() + kUnknownFenceTicks * options_.tick;
  auto pause = std::max<std::chrono::milliseconds>(options_.tick / 16, std::chrono::milliseconds(1));
  while (!reply.ok() && MetadataOf(reply.status(), "peer_reason") == reason::kUnknownFence &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, options_.tick);
    reply = QueryRelease(holder, fence);
  }
  if (!reply.ok()) return reply.status();
  KMSFLEET_RETURN_IF_ERROR(ReadReleaseReply(*reply, holder));
  std::lock_guard lock(mu_);
  if (reply->released() &&
      !machine_->RecordRelease(holder, fence.term(), fence.index(), reply->outcome())) {
    // A newer record was proposed meanwhile (or this node stopped
    // leading): an answer at the old one is no release; ask again.
    return MakeError(absl::StatusCode::kUnavailable, reason::kHandoffPending,
                     holder + " answered at record " + std::to_string(fence.index()) +
                         ", which a newer record replaces; it is asked again",
                     {{"in_flight", holder}});
  }
  if (released != nullptr) *released = *std::move(reply);
  return absl::OkStatus();
}

absl::Status PeerNode::HandOff(const std::string& holder, v1::ReleaseReply* released) {
  std::optional<v1::Fence> fence;
  {
    std::lock_guard lock(mu_);
    if (machine_->role() != Role::kLeader) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                       self() + " is not the coordinator");
    }
    KMSFLEET_ASSIGN_OR_RETURN(fence, HandOffFence(machine_->CurrentFence(), holder, self()));
  }
  return AskRelease(holder, *fence, released);
}

absl::StatusOr<v1::Fence> PeerNode::ProposePlan(
    const std::string& in_flight, const std::string& payload, std::chrono::milliseconds timeout,
    const std::function<absl::Status(const v1::PlanRecord& committed)>& allowed) {
  std::unique_lock lock(mu_);
  if (allowed) KMSFLEET_RETURN_IF_ERROR(allowed(machine_->committed()));
  absl::StatusOr<ElectionReady> ready = machine_->Propose(in_flight, payload);
  if (!ready.ok() && ReasonOf(ready.status()) == reason::kHandoffPending) {
    // Ask the in-flight node, without holding the lock across the call.
    std::string holder = machine_->committed().in_flight();
    std::optional<v1::Fence> fence = machine_->CurrentFence();
    if (!fence) return ready.status();
    lock.unlock();
    absl::Status asked = AskRelease(holder, *fence);
    lock.lock();
    if (!asked.ok()) return asked;
    // Without the lock the record may have moved on (a plan started):
    // what was allowed then is asked again of what is committed now.
    if (allowed) KMSFLEET_RETURN_IF_ERROR(allowed(machine_->committed()));
    ready = machine_->Propose(in_flight, payload);
  }
  if (!ready.ok()) return ready.status();
  v1::PlanRecord wanted = machine_->record();
  // A record that is not durable here was never proposed: Process went
  // back to the persisted state, and the old fence is no answer.
  if (absl::Status s = Process(*ready); !s.ok()) return s;
  // Stop waiting once it committed or this node stopped leading (a new
  // term, or CheckQuorum): a deposed leader's record may never commit.
  bool done = changed_.wait_for(lock, timeout, [&] {
    return stopping_ || !Newer(wanted, machine_->committed()) ||
           machine_->term() != wanted.term() || machine_->role() != Role::kLeader;
  });
  if (!done || !SameKey(machine_->committed(), wanted)) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                     "plan record " + Key(wanted.term(), wanted.index()) +
                         " was not committed within " + std::to_string(timeout.count()) +
                         " ms (a majority may be unreachable); it may still commit: "
                         "`kmsfleetctl leader` shows whether it did (its commit; a fleet "
                         "plan's, `kmsfleetctl plan` too)",
                     {{"record", Key(wanted.term(), wanted.index())}});
  }
  v1::Fence fence;
  fence.set_term(wanted.term());
  fence.set_index(wanted.index());
  fence.set_in_flight(wanted.in_flight());
  return fence;
}

absl::StatusOr<PeerNode::Transferred> PeerNode::TransferLeadership(
    const std::string& target, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  absl::StatusOr<ElectionReady> ready = machine_->TransferLeadership(target);
  if (!ready.ok()) return ready.status();
  const uint64_t term = machine_->term();
  const std::string to = machine_->transfer_target();
  if (absl::Status s = Process(*ready); !s.ok()) return s;
  // Done once we heard the new leader at a newer term (its first APPEND):
  // by then it won its election, and our vote left with its answer.
  bool done = changed_.wait_for(lock, timeout, [&] {
    return stopping_ || (machine_->term() > term && !machine_->leader().empty() &&
                         machine_->leader() != self());
  });
  if (!done || stopping_) {
    return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kLeaderTransferInProgress,
                     "leadership transfer from " + self() + " to " + to +
                         " did not finish within " + std::to_string(timeout.count()) + " ms",
                     {{"target", to}, {"term", std::to_string(machine_->term())},
                      {"leader", machine_->leader()}});
  }
  return Transferred{to, machine_->leader(), machine_->term()};
}

}  // namespace kmsfleet
