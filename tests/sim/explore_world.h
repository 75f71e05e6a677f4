// The exhaustive explorer's world (issue 12): the agents of the random
// simulator (sim_world.h) as a copyable value, so that every schedule up to
// a bound can be enumerated and repeated states pruned by a canonical hash.
//
// Each node holds the real ElectionMachine and FenceGuard, what it
// persisted, the executor's one operation (running, or ended with a phase,
// journalled under its fence; the hand-off answer is the real
// DecideHandoff over that journal) and, while it leads, the toy coordinator
// of sim_coordinator.cc reduced to one plan: put n2 in flight, swap it,
// ask for the hand-off, then n3, then nobody. The network is a multiset of
// messages in flight: any one may be delivered next (reordering), lost or
// duplicated. Nodes crash and restart from what they persisted. An
// adversary holding a member's certificate sends swaps under made-up
// fences (kForge).
//
// Unlike World, nothing here draws a random number: every choice is an
// Event, so a schedule is a list of events and replays exactly. Events
// print as transcript commands ("tick n1", "deliver n1->n2 APPEND ..."),
// and Apply prints what happened in the scenario transcripts' style.
//
// Checked after every event (the random simulator's invariants 1-3):
//   1. at most one leader per term, over the whole history;
//   2. a committed record is never lost or rolled back: each node's
//      committed record only moves forward, across restarts too; one index
//      is only ever committed as one record; terms never go down as the
//      index grows; a leader holds every record committed before its term;
//   3. at most one node disrupted (an operation running, or the last one
//      ended RollbackFailed); a swap is admitted only under a committed
//      record naming the node, and never under a record deposed by a
//      later committed record naming another node; a record putting
//      another node in flight never commits while one is disrupted.
// Single-threaded.
#ifndef KMSFLEET_TESTS_SIM_EXPLORE_WORLD_H_
#define KMSFLEET_TESTS_SIM_EXPLORE_WORLD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/swap_machine.h"

namespace kmsfleet::sim {

// Deliberately broken rules in this world model (never in src/core), to
// show that the explorer finds what it is meant to find.
enum class Mutation {
  kNone,
  // The node answers a hand-off query "Stable" after RollbackFailed.
  kReleaseRollbackFailed,
  // The agent admits a swap whose fence merely names it, without its
  // FenceGuard.
  kSkipFenceGuard,
};

struct ExploreConfig {
  int voters = 3;
  uint64_t max_term = 2;  // at most this many elections
  int max_messages = 6;   // in flight, counting copies
  int crashes = 1;
  int duplications = 1;
  int forgeries = 1;
  Mutation mutation = Mutation::kNone;
};

enum class MessageKind { kPeer, kSwap, kQuery, kReleased };

struct ExMessage {
  MessageKind kind = MessageKind::kPeer;
  std::string from, to;
  v1::PeerMessage peer;                            // kPeer
  v1::Fence fence;                                 // kSwap, kQuery, kReleased
  v1::HandoffOutcome outcome = v1::HANDOFF_UNKNOWN;  // kReleased
  bool released = false;                           // kReleased
};

// The message's text: its identity in the multiset and in transcripts.
std::string DescribeMessage(const ExMessage& m);

struct ExNode {
  // Shared between states until an event changes it (Writable).
  std::shared_ptr<ElectionMachine> machine;  // unset while down
  std::optional<FenceGuard> guard;
  v1::HardState durable;
  v1::FenceState fence_durable;
  // The executor: one operation at a time; the journal of the last one.
  bool running = false;
  std::optional<SwapJournal> journal;
  // The coordinator's volatile memory: fences it sent a swap under.
  std::set<std::string> commanded;
  v1::PlanRecord applied;  // newest committed record applied (invariant 2)
};

// kForge: the adversary of sim_adversary.cc, holding a member's
// certificate, sends a swap under a fence it made up from what GetLeader
// tells anyone: the newest term and the committed index + 1, or the
// committed (term, index), naming its target.
enum class EventKind { kTick, kDeliver, kDrop, kDuplicate, kCrash, kRestart, kFinish, kForge };

struct Event {
  EventKind kind = EventKind::kTick;
  std::string node;     // kTick, kCrash, kRestart, kFinish
  std::string message;  // kDeliver, kDrop, kDuplicate: DescribeMessage
  v1::Fence fence;      // kForge
  SwapPhase outcome = SwapPhase::kStable;  // kFinish
};

Event NodeEvent(EventKind kind, const std::string& node,
                SwapPhase outcome = SwapPhase::kStable);
Event MessageEvent(EventKind kind, const std::string& message);
std::string EventText(const Event& e);
// Parses EventText's form. Errors: InvalidArgument naming the text.
absl::StatusOr<Event> ParseEvent(const std::string& text);

class ExState {
 public:
  explicit ExState(const ExploreConfig& config);

  // Every event enabled now, in a fixed order.
  std::vector<Event> Enabled() const;
  // Carries out `e`; false when it is not enabled (nothing changed).
  // `log` (if set) receives what happened, one line each.
  bool Apply(const Event& e, std::vector<std::string>* log);
  // Outside the bound (term, messages): not explored further.
  bool OutOfBound() const;
  // The first invariant violated so far, "" when none.
  const std::string& failure() const { return failure_; }
  // Every machine's state, the messages in flight and the history the
  // invariants need, in one canonical text.
  std::string Canonical() const;

  const std::map<std::string, ExNode>& nodes() const { return nodes_; }
  // What the last Apply refused or withheld, for the coverage counts: a
  // swap's or query's reason code, or "WITHHELD" for a hand-off answer
  // that kept the slot. Not part of the state.
  const std::string& note() const { return note_; }

 private:
  ElectionConfig ConfigFor(const std::string& name) const;
  bool ApplyToNode(const Event& e);     // tick, crash, restart, finish
  bool ApplyToMessage(const Event& e);  // deliver, drop, duplicate
  bool Forge(const v1::Fence& fence);
  void Fail(const std::string& what);
  void Send(ExMessage m);
  void Handle(const std::string& name, const ElectionReady& ready);
  void Coordinate(const std::string& name);
  void Propose(const std::string& name, const std::string& in_flight,
               const std::string& payload);
  void Deliver(const ExMessage& m);
  void DeliverSwap(ExNode& node, const ExMessage& m);
  void DeliverQuery(ExNode& node, const ExMessage& m);
  void Restart(const std::string& name);
  ElectionMachine& Writable(ExNode& node);
  bool Disrupted(const ExNode& node) const;
  void CheckApplied(const std::string& name, const v1::PlanRecord& record);
  void CheckAdmitted(const std::string& name, const v1::Fence& fence);
  void CheckHandOff(const std::string& leader, const v1::PlanRecord& record);
  void CheckInvariants();
  void Log(const std::string& line);
  std::vector<v1::Fence> Forgeries() const;

  ExploreConfig config_;
  std::vector<std::string> voters_;
  std::map<std::string, ExNode> nodes_;
  // The multiset in flight: text -> (message, copies).
  std::map<std::string, std::pair<std::shared_ptr<const ExMessage>, int>> inflight_;
  int crashes_left_ = 0;
  int duplications_left_ = 0;
  int forgeries_left_ = 0;
  // History (part of the state, so pruning never hides a violation).
  std::map<uint64_t, std::string> leader_of_term_;
  std::map<uint64_t, v1::PlanRecord> committed_index_;
  std::string failure_;
  std::vector<std::string>* log_ = nullptr;  // during Apply only
  std::string note_;
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_EXPLORE_WORLD_H_
