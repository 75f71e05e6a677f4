// PeerNode: plan proposals, the hand-off and fenced commands
// (architecture.md §6).
#include "kmsfleet/log.h"
#include "kmsfleet/peer_node.h"
#include "kmsfleet/reasons.h"
#include "kmsfleet/state_file.h"
#include "kmsfleet/status.h"
#include "peer_sender.h"

namespace kmsfleet {
namespace {

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

}  // namespace

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

namespace {

// Checks `fence` against what this node knows from the election itself,
// so that even a member's certificate cannot make up a fence: a real
// coordinator's term reached this node with its heartbeats.
absl::Status CheckAgainstElection(const std::string& self, const ElectionMachine& machine,
                                  const v1::Fence& fence) {
  if (fence.term() > machine.term()) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kUnknownFence,
                     "node " + self + " has not seen term " + std::to_string(fence.term()) +
                         " in the election (it is at " + std::to_string(machine.term()) +
                         "); retry after the coordinator's next heartbeat",
                     {{"fence_term", std::to_string(fence.term())},
                      {"election_term", std::to_string(machine.term())}});
  }
  const v1::PlanRecord& c = machine.committed();
  if (c.term() == fence.term() && c.index() == fence.index() &&
      c.in_flight() != fence.in_flight()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                     "node " + self + " refused a fence for plan record " +
                         Key(fence.term(), fence.index()) + " naming '" + fence.in_flight() +
                         "': that record names '" + c.in_flight() + "'",
                     {{"in_flight", c.in_flight()}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PeerNode::AdmitSwap(const v1::Fence& fence) {
  std::lock_guard lock(mu_);
  // A term this node saw in the election is a term it has seen: a command
  // from any older coordinator is stale, whether or not it reached us.
  guard_->ObserveTerm(machine_->term());
  absl::Status s = CheckAgainstElection(self(), *machine_, fence);
  if (s.ok()) s = guard_->AdmitSwap(fence);
  if (s.ok()) s = PersistFence();
  if (!s.ok()) {
    Log(LogLevel::kWarn, "swap command refused",
        {{"node", self()}, {"fence", Key(fence.term(), fence.index())},
         {"fence_in_flight", fence.in_flight()}, {"reason", ReasonOf(s)},
         {"error", std::string(s.message())}});
    return s;
  }
  Log(LogLevel::kInfo, "swap command admitted",
      {{"node", self()}, {"fence", Key(fence.term(), fence.index())}});
  return absl::OkStatus();
}

absl::StatusOr<v1::ReleaseReply> PeerNode::Release(const v1::Fence& fence) {
  std::lock_guard lock(mu_);
  guard_->ObserveTerm(machine_->term());
  bool running = options_.operation_running();
  absl::Status s = CheckAgainstElection(self(), *machine_, fence);
  if (s.ok()) s = guard_->AdmitRelease(fence, running);
  if (s.ok()) s = PersistFence();  // before answering: the answer binds us
  if (!s.ok()) {
    Log(LogLevel::kWarn, "hand-off query refused",
        {{"node", self()}, {"fence", Key(fence.term(), fence.index())},
         {"reason", ReasonOf(s)}, {"error", std::string(s.message())}});
    return s;
  }
  v1::ReleaseReply reply;
  reply.set_node(self());
  reply.set_running(running);
  reply.set_highest_term(guard_->state().highest_term());
  return reply;
}

absl::Status PeerNode::AskRelease(const std::string& holder, const v1::Fence& fence) {
  absl::StatusOr<v1::ReleaseReply> reply;
  if (holder == self()) {
    reply = Release(fence);
  } else if (auto it = senders_.find(holder); it != senders_.end()) {
    reply = it->second->Release(fence);
  } else {
    reply = MakeError(absl::StatusCode::kFailedPrecondition, reason::kHandoffPending,
                      "no address for in-flight node " + holder);
  }
  if (!reply.ok()) return reply.status();
  if (reply->running()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kHandoffPending,
                     "in-flight node " + holder + " is still running its operation",
                     {{"in_flight", holder}});
  }
  std::lock_guard lock(mu_);
  machine_->RecordRelease(holder, fence.term(), fence.index());
  return absl::OkStatus();
}

absl::StatusOr<v1::Fence> PeerNode::ProposePlan(const std::string& in_flight,
                                                const std::string& payload,
                                                std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
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
    ready = machine_->Propose(in_flight, payload);
  }
  if (!ready.ok()) return ready.status();
  Process(*ready);
  v1::PlanRecord wanted = machine_->record();
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
                         " ms; a majority may be unreachable",
                     {{"record", Key(wanted.term(), wanted.index())}});
  }
  v1::Fence fence;
  fence.set_term(wanted.term());
  fence.set_index(wanted.index());
  fence.set_in_flight(wanted.in_flight());
  return fence;
}

}  // namespace kmsfleet
