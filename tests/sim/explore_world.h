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
// fences (kForge). With ExploreConfig::plan the leader's coordinator is
// the real PlanMachine instead of the toy (explore_plan.cc).
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
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/plan_types.h"
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
  // --plan: the leader's coordinator is the real PlanMachine
  // (explore_plan.cc) driving one upgrade of the plan nodes, instead of
  // the toy coordinator.
  bool plan = false;
  bool auto_rollback = true;  // the plan's setting
};

// --plan: the nodes the upgrade plan covers, in the machine's order; n1 is
// a voter of the election only.
inline const std::vector<std::string> kPlanNodes = {"n2", "n3"};
inline constexpr char kPlanFromVersion[] = "0.1.0";
inline constexpr char kPlanToVersion[] = "0.2.0";

enum class MessageKind { kPeer, kSwap, kQuery, kReleased, kResult, kPoll };

struct ExMessage {
  MessageKind kind = MessageKind::kPeer;
  std::string from, to;
  v1::PeerMessage peer;                            // kPeer
  v1::Fence fence;                                 // kSwap, kQuery, kReleased
  v1::HandoffOutcome outcome = v1::HANDOFF_UNKNOWN;  // kReleased
  bool released = false;                           // kReleased
  // --plan: the action a swap, query or poll carries out, and the answer
  // (kResult: the operation's result, or that it still runs).
  std::shared_ptr<const PlanAction> action;
  std::shared_ptr<const ActionResult> result;
  bool running = false;
  // kResult read an ended operation's journal: one that failed before its
  // stop is a failed result, not a refusal to retry.
  bool ended = false;
};

// --plan: the coordinator's shell around the PlanMachine of one term, as
// sim_plan.cc's PlanCoordinator: the proposal being committed and the
// actions held until it commits, the results to feed the next Step, and
// the requests awaiting an answer (by "node/kind").
struct ExPlanCoordinator {
  struct Outstanding {
    PlanAction action{};
    v1::Fence fence{};
    bool poll = false;         // the operation runs: poll on the next tick
    bool stale_fence = false;  // refused STALE_FENCE at the committed record
  };
  uint64_t term = 0;
  PlanMachine machine;
  std::optional<uint64_t> pending_index{};
  std::optional<v1::FleetPlan> pending_plan{};
  std::vector<PlanAction> held{};
  std::vector<ActionResult> results{};
  std::map<std::string, Outstanding> outstanding{};
  // The last round of views, for a Step on results alone (empty: none yet
  // this term).
  std::vector<NodeView> last_round{};
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
  // --plan: the provider's version, the running operation's versions, how
  // every ended operation ended (a command sent again starts nothing), and
  // the coordinator while leading (shared until an event changes it).
  std::string version;
  std::string op_prev, op_target;
  std::map<std::string, SwapPhase> ended;
  std::shared_ptr<ExPlanCoordinator> plan;
};

// kForge: the adversary of sim_adversary.cc, holding a member's
// certificate, sends a swap under a fence it made up from what GetLeader
// tells anyone: the newest term and the committed index + 1, or the
// committed (term, index), naming its target.
// kExpire (--plan): the coordinator gives up waiting for an answer to a
// request ("n2/swap"), which its PlanMachine then issues again.
enum class EventKind {
  kTick, kDeliver, kDrop, kDuplicate, kCrash, kRestart, kFinish, kForge, kExpire
};

struct Event {
  EventKind kind = EventKind::kTick;
  std::string node;     // kTick, kCrash, kRestart, kFinish
  std::string message;  // kDeliver, kDrop, kDuplicate: DescribeMessage; kExpire: request
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
  // --plan: the phase of the newest committed plan ("" before one).
  const std::string& plan_phase() const { return plan_phase_; }

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
  // --plan (explore_plan.cc).
  void PlanCoordinate(const std::string& name);
  ExPlanCoordinator& WritablePlan(ExNode& node);
  PlanInput Gather(ExPlanCoordinator& p, bool on_last_round);
  void ObserveRound(ExPlanCoordinator& p, PlanInput& in);
  void ProposePlan(const std::string& name, PlanReady ready);
  void CommitIfDone(const std::string& name);
  void CarryOut(const std::string& name, const PlanAction& a);
  void PlanSwap(ExNode& node, const ExMessage& m);
  void ReplyWithOperation(const ExNode& node, const ExMessage& m, const PlanAction& a);
  void PlanReply(const ExMessage& m, ActionResult r, bool running, bool ended = false);
  ActionResult OperationResult(const ExNode& node, const PlanAction& a, bool& running) const;
  void PlanResult(const std::string& name, const ExMessage& m);
  void PlanReleased(const std::string& name, const ExMessage& m);
  void RenewFence(const std::string& name, const std::string& in_flight);
  bool Expire(const std::string& name, const std::string& request);
  void CheckReady(const PlanReady& ready, bool had_command);
  void CheckProposal(const ExPlanCoordinator& p, const v1::FleetPlan& plan,
                     const std::vector<NodeView>& views);
  void CheckPlanCommitted(const v1::PlanRecord& record);
  std::shared_ptr<const PlanAction> AdversaryAction(const std::string& to) const;

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
  // --plan: the newest swap command sent to each node, which the adversary
  // replays under its made-up fences; the newest committed plan's phase.
  std::map<std::string, std::shared_ptr<const PlanAction>> last_swap_;
  std::string plan_phase_;
  uint64_t plan_index_ = 0;
  // --plan: stamps each observation later than the one before, so that
  // every coordinator Step is a fresh parity round. Not in the state: only
  // its order matters, and it always increases.
  int64_t observations_ = 0;
  std::vector<std::string>* log_ = nullptr;  // during Apply only
  std::string note_;
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_EXPLORE_WORLD_H_
