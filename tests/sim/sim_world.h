// The simulator's world: nodes, network and invariant checks (see
// simulator.h). Internal to tests/sim. Single-threaded.
#ifndef KMSFLEET_TESTS_SIM_SIM_WORLD_H_
#define KMSFLEET_TESTS_SIM_SIM_WORLD_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/plan_machine.h"
#include "simulator.h"

namespace kmsfleet::sim {

// --plan: the versions the plan moves between, and simulated milliseconds
// per tick (the plan machine's clock).
inline constexpr char kPlanFrom[] = "0.1.0";
inline constexpr char kPlanTo[] = "0.2.0";
inline constexpr int64_t kTickMs = 100;
// Ticks a plan coordinator waits for its change to commit before it gives
// up and decides again (kmsfleetd's kCommitTimeout, shortened so that a
// change given up on and committed late happens in the schedules).
inline constexpr int64_t kCommitWaitTicks = 6;

// "term/index/in_flight": a fence as the adversary and the logs name it.
std::string FenceKey(const v1::Fence& fence);
// A 43-character key_id hash, one per promoted rotation.
std::string SimHash(int serial);

enum class Kind { kPeer, kSwap, kQuery, kReleased, kAction, kPoll, kResult };

// One message in flight. Swap and Query are the coordinator's Agent
// commands; Released is the answer to a Query. With --plan, Action (stage,
// preflight, restart the API server) and Poll (GetOperation) are Agent
// calls too, and Result is a node's answer to an Action, Swap or Poll.
struct Envelope {
  int64_t deliver_at = 0;
  int64_t seq = 0;  // tie-break, so delivery order depends only on the seed
  Kind kind = Kind::kPeer;
  std::string from;
  std::string to;
  v1::PeerMessage peer;
  v1::Fence fence;
  v1::ReleaseReply reply;  // Released: the node's answer
  bool adversary = false;  // Swap or Query injected by the adversary
  std::string certificate;  // ... the member whose key the adversary holds
  bool weakened = false;   // ... a real command with a 1 ms window and no digest
  bool held_back = false;  // ... the step its coordinator sends follow-only
  // The member whose key sent it: the adversary's certificate, or the
  // sender's own.
  const std::string& Key() const { return adversary ? certificate : from; }
  bool waited = false;     // Swap or Query held once for its record's commit
  int64_t caller_deadline = -1;  // --plan Swap: when its caller gives up
  // --plan: the coordinator's term, the action carried out (Swap, Query,
  // Action, Poll and their answers), the node's result, and whether the
  // operation polled still runs.
  uint64_t term = 0;
  std::shared_ptr<const PlanAction> action;
  std::shared_ptr<const ActionResult> result;
  bool running = false;
  // The result reads the journal of an operation that ended (one that
  // failed before its stop is a failed result, not a refusal to retry).
  bool ended = false;
  bool operator>(const Envelope& o) const {
    return deliver_at != o.deliver_at ? deliver_at > o.deliver_at : seq > o.seq;
  }
};

// A request the plan coordinator sent and awaits (sim_plan.cc).
struct Outstanding {
  PlanAction action;
  int64_t deadline = 0;    // no answer by then: Unavailable
  int64_t next_poll = -1;  // >= 0: the operation runs; poll it then
  // The swap was refused STALE_FENCE: the node holds a newer record than
  // the one sent, so its outcome is read with a poll instead
  // (FleetActions::Operate): the refusal, and whether it was sent under
  // the committed record (then the node handed off at it, to someone).
  std::optional<absl::Status> stale_fence = std::nullopt;
  bool stale_at_committed = false;
};

// The plan machine's shell on the leader (sim_plan.cc): one per term,
// volatile like everything a coordinator holds.
struct PlanCoordinator {
  uint64_t term = 0;
  // Its configured voters: the sim's, or while faults run now and then one
  // short (cluster.voters edited on its node); it observes only these.
  std::vector<std::string> voters;
  std::unique_ptr<PlanMachine> machine;
  std::optional<uint64_t> pending_index;  // election record proposed
  int64_t pending_since = 0;              // the tick it was proposed at
  std::optional<v1::FleetPlan> pending_plan;
  std::vector<PlanAction> held;           // carried out once it commits
  std::vector<ActionResult> results;      // arrived since the last Step
  std::map<std::string, Outstanding> outstanding;  // "node/kind"
  std::map<std::string, NodeView> views;  // the newest view of each voter
  // The last round (views and OpenBao probe), for a Step on results alone,
  // and the time it was asked for (ms).
  std::optional<std::pair<std::vector<NodeView>, OpenBaoProbe>> last_round;
  int64_t last_round_asked_ms = 0;
  // A round kmsfleetd's coordinator waits on for a slow voter: taken at
  // round.views_asked_mono_ms (every view as of then), decided on at the
  // tick `due` (World::WaitsOnSlowRound).
  struct SlowRound {
    PlanInput round;
    int64_t due = 0;
  };
  std::optional<SlowRound> slow_round;
  // A change that sent no action committed: the next Step is tried on the
  // last round, as kmsfleetd's coordinator does (after_change_).
  bool after_change = false;
};

// A leadership transfer under way (sim_transfer.cc).
struct Transfer {
  std::string from;
  std::string target;
  uint64_t term = 0;        // the old leader's
  v1::PlanRecord record;    // its record when the transfer began
  int64_t start = 0;
  bool stop = false;        // the old leader stops once it is over
  bool stopped = false;
};

// What the leader's toy coordinator remembers (volatile, lost on crash).
struct CoordinatorState {
  std::string commanded;      // fence key of the last swap sent
  std::string target;         // node it wants in flight next
  bool want_handoff = false;
  int64_t last_query = -1000;
  int64_t changes = 0;
  std::shared_ptr<PlanCoordinator> plan;  // --plan
};

// --plan: the node's provider as the coordinator observes it.
struct SimProvider {
  std::string version;
  std::string hash;            // the active key_id hash it reports
  std::string next_hash;       // a promoted rotation, reaching it at hash_at
  int64_t hash_at = 0;
  bool rotation_pending = false;
  int removed_records = 0;     // key-registry.json `removed` records
  // rotation-plan's stateCheckpointStatus (reference §2.6): "current", or
  // "behind" / "missing" since the tick checkpoint_off_since.
  std::string checkpoint = "current";
  int64_t checkpoint_off_since = -1;
  // An outage of its own (OutageFault): from outage_since until the tick
  // outage_until, /live and /ready fail; -1 when none ran.
  int64_t outage_since = -1;
  int64_t outage_until = -1;
};

// How an operation ended, as its closed journal says: its last phase, and
// for one that ended before the stop, the reason (DOCTOR_FAILED, ...).
struct EndedOperation {
  SwapPhase phase = SwapPhase::kStable;
  std::string reason;
};

// --plan: a plan's swap or rollback the agent is still admitting after
// its reservation (as Executor::Start: the fence checked, the node
// reserved, the target being checked, or the agent starved of CPU). The
// node is busy, a lookup of the id answers OPERATION_BEING_ADMITTED, and
// at `until` the operation starts, or is refused CALLER_GONE once its
// caller's deadline passed. (The wait for the fence's commit comes before
// the reservation: the hold of HeldForCommit, at most a tick, during which
// this model answers a lookup NOT_FOUND where the agent would say
// OPERATION_BEING_ADMITTED.)
struct Admission {
  Envelope e;
  int64_t until = 0;
  PlanBinding binding;  // what the plan bound the swap to
};

struct Node {
  std::string name;
  ElectionConfig config;
  std::unique_ptr<SeededRandom> random;
  bool up = false;
  std::unique_ptr<ElectionMachine> machine;
  std::unique_ptr<FenceGuard> guard;
  v1::HardState durable;       // what survives a crash
  v1::FenceState fence_durable;
  // The toy executor: the provider is disrupted while now < op_end, and
  // after that too when the operation ended RollbackFailed.
  int64_t op_end = -1;
  int64_t op_start = -1;       // -1: no operation ever ran
  SwapPhase op_outcome = SwapPhase::kStable;  // how it ends (at op_end)
  std::string op_reason;       // --plan: why, if it ends before the stop
  v1::Fence op_fence;          // the fence it was admitted under
  v1::PlanRecord applied;      // newest committed record applied
  CoordinatorState coordinator;
  // --plan (sim_executor.cc): the operation's id and versions, whether the
  // agent crashed in the middle of it (the provider stays down until the
  // restarted agent recovers it), whether its end was applied to the
  // provider, and how every finished operation ended (its journals).
  std::string op_id, op_target, op_prev;
  bool op_interrupted = false;
  // Refused before its stop (doctor, disk, manifest, checkpoint): the
  // provider was never touched, and no crash and recovery changes that.
  bool op_refused_before_stop = false;
  bool op_applied = true;
  std::map<std::string, EndedOperation> op_outcomes;
  // A plan's swap (not a rollback): what the committed plan bound it to
  // (BindCommandToPlan), and whether its target had been ready before it
  // failed.
  bool op_is_swap = false;
  std::string op_restore_barrier;
  bool op_target_served = false;
  // The key_id hash served when the operation started, and for each
  // operation what its journal keeps of its capture (versions, and the
  // hash as SwapJournal::registry_active_key_id_hash), which the rollback
  // of it is judged against.
  std::string op_start_hash;
  std::map<std::string, SwapJournal> captures;
  // World truth, for the property: every key_id hash each version has
  // served on this node. A release that never served a hash never
  // promoted it (reference §8.1).
  std::map<std::string, std::set<std::string>> served_hashes;
  // Each kube-apiserver restart id the agent ran, and whether it failed.
  std::map<std::string, bool> restarts;
  std::optional<Admission> admitting;
  SimProvider provider;
  // Bumped when an operator stages the same version again with other
  // bytes (--plan faults): the staged digest changes.
  int stage_generation = 0;
};

class World {
 public:
  explicit World(const SimOptions& options);
  SimResult Run();

 private:
  // simulator.cc: schedule and faults.
  double Unit();
  bool Chance(double p);
  int64_t Pick(int64_t lo, int64_t hi);
  std::string RandomMember();
  void Trace(const std::string& line);
  void Fail(const std::string& what);
  void Step();
  void InjectFaults();
  void Heal();
  void Crash(Node& node);
  void Restart(Node& node);

  // sim_network.cc: messages, Ready handling, the agents' commands.
  void Send(Envelope e, int64_t max_delay);
  void Deliver();
  void DeliverOne(const Envelope& e);
  bool HeldForCommit(const Node& node, const Envelope& e);
  void Handle(Node& node, const ElectionReady& ready);
  void HandleSwap(Node& node, const Envelope& e);
  void HandleQuery(Node& node, const Envelope& e);
  void HandleReleased(Node& node, const Envelope& e);
  void StartOperation(Node& node, const v1::Fence& fence);
  bool CheckAlone(const Node& node, const v1::Fence& fence);
  HandoffFacts Facts(const Node& node) const;
  bool Disrupted(const Node& node) const;
  // The tick since which the node's provider serves nothing (an operation
  // of its own, or an outage), or -1 while it serves.
  int64_t DownSince(const Node& node) const;

  // sim_adversary.cc: a member's certificate in the wrong hands, sending
  // forged, replayed and duplicated fences at random points.
  void Adversary();
  void Inject(Kind kind, const v1::Fence& fence, const std::string& to);
  void InjectHeldBack();
  bool CheckStartedByItsLeader(const Node& node, const Envelope& e);
  // A learner's certificate, or a voter's speaking out of turn, sending
  // election messages of its own; each must leave its target as it was.
  void ForgePeerMessage();
  std::optional<v1::PeerMessage> ForgedMessage(const Node& target, bool& must_refuse);

  // sim_transfer.cc: leadership transfers at random points, sometimes
  // followed by the old leader stopping (kmsfleetd's SIGTERM), and their
  // own checks.
  void Transfers();
  void StartTransfer(Node& leader);
  bool FollowTransfer(Transfer& t);

  // sim_coordinator.cc: the leader's actions and the invariants.
  void Coordinate(Node& leader);
  void Propose(Node& leader, const std::string& in_flight, const std::string& payload);
  bool ProposeAndCheck(const std::string& payload);
  void CheckApplied(Node& node, const v1::PlanRecord& record);
  void CheckHolderReleased(const Node& leader, const v1::PlanRecord& record);
  void CheckHandOff(const Node& leader, const v1::PlanRecord& record);
  void CheckInvariants();

  // sim_plan.cc (--plan): the plan machine's shell on the elected
  // coordinator, the operator, and the plan's invariants and liveness.
  SimResult RunPlan();
  void DrawPlanShape();
  void PlanLeaders();
  std::optional<OperatorCommand> Operator(const std::optional<v1::FleetPlan>& plan);
  OperatorCommand StartCommand();
  void PlanCoordinate(Node& leader, std::optional<OperatorCommand> command);
  PlanInput Gather(const Node& leader, PlanCoordinator& p, bool on_last_round);
  void ObserveRound(const Node& leader, PlanCoordinator& p, PlanInput& in);
  bool WaitsOnSlowRound(const Node& leader, PlanCoordinator& p);
  void CheckLastRoundStep(const PlanCoordinator& p, const PlanReady& ready);
  void CheckWarmUp(const PlanCoordinator& p);
  NodeView Observe(const Node& leader, PlanCoordinator& p, const Node& node);
  void ProposePlan(Node& leader, const std::shared_ptr<PlanCoordinator>& p,
                   PlanReady ready);
  void CommitIfDone(Node& leader, PlanCoordinator& p);
  void GiveUpOnCommit(PlanCoordinator& p);
  void AdoptCommitted(const Node& leader, PlanCoordinator& p);
  void CarryOut(Node& leader, PlanCoordinator& p, const PlanAction& a);
  void ExpireRequests(Node& leader, PlanCoordinator& p);
  void HandleResult(Node& leader, const Envelope& e);
  void PlanReleased(Node& leader, const Envelope& e);
  void RenewFence(Node& leader, PlanCoordinator& p, const std::string& node);
  void CheckReady(const PlanReady& ready, bool had_command);
  void CheckStaleVoters(const PlanCoordinator& p, const PlanReady& ready);
  void CheckStartsOnlyWhileMoving(const PlanCoordinator& p, const PlanReady& ready);
  void CheckProposal(const PlanCoordinator& p, const v1::FleetPlan& plan,
                     const std::vector<NodeView>& views);
  void CountStepsSentAgain(const v1::FleetPlan& plan, bool new_plan);
  void CheckPlanCommitted(const v1::PlanRecord& record);
  void CheckConverged(const v1::FleetPlan& plan, const std::string& when,
                      bool hashes);
  bool PlanSettled() const;

  // sim_executor.cc (--plan): each node's executor and provider.
  void PlanFaults();
  void AdvanceProviders();
  void HandlePlanSwap(Node& node, const Envelope& e);
  void HandleAction(Node& node, const Envelope& e);
  void StartPlanOperation(Node& node, const PlanAction& a, const v1::Fence& fence,
                          bool checkpoint_acknowledged);
  // As the swap's own check before the stop (CheckRotationPlanAllowsUpgrade):
  // an upgrade on a node whose checkpoint is not current ends Preflighted,
  // STATE_CHECKPOINT_NOT_CURRENT, unless the plan acknowledged it.
  void JudgeCheckpoint(Node& node, const PlanAction& a, bool acknowledged);
  void JudgeRotationSinceCapture(Node& node, const PlanAction& a);
  void JudgeActiveKey(Node& node, const PlanAction& a);
  void RefuseBeforeStop(Node& node, const PlanAction& a, const absl::Status& judged,
                        int64_t& refused);
  void CheckSwapStartsOnItsExpectedKey(const Node& node, const PlanAction& a);
  void CheckRestoredReleaseServedTheKey(const Node& node);
  void CheckNoApiServerLeftNotReady(const Node& node, const PlanAction& a);
  void CheckSentWhileOthersServe(const PlanCoordinator& p, const PlanAction& a);
  void CheckpointFault(Node& node);
  void OutageFault(Node& node);
  // The coordinator's guard (fleet_guards CheckRotation, from the plan's
  // preflight), as `plan`'s coordinator sends `a`: no upgrade goes to a
  // node whose checkpoint has not been current since before its plan
  // began, unless the plan acknowledged it.
  void CheckCheckpointGuard(const Node& node, const PlanAction& a, const v1::FleetPlan& plan);
  void AdmitSlowly(Node& node, const Envelope& e, const PlanBinding& binding);
  void StartAdmitted(Node& node, const Envelope& e, const PlanBinding& binding);
  void FinishAdmissions();
  bool CallerGone(const Node& node, const Envelope& e);
  void KeepAServedTargetIfBound(Node& node);
  // As Executor::CheckStagedDigest: false (and answered) when `a` expects
  // other bytes than the node holds staged; a plan swap expecting none
  // fails the run.
  bool CheckStagedDigest(Node& node, const Envelope& e);
  void CheckRollbackOnBaseline(const Node& node, const Envelope& e);
  void RefuseCommand(Node& node, const Envelope& e, const absl::Status& refusal);
  ActionResult OperationResult(const Node& node, const PlanAction& a,
                               bool& running) const;
  void ReplyWithOperation(Node& node, const Envelope& e, const PlanAction& a);
  void Reply(Node& node, const Envelope& e, ActionResult result, bool running,
             int64_t delay, bool ended = false);
  void CrashExecutor(Node& node);
  void RecoverExecutor(Node& node);
  void Repair(Node& node);
  std::shared_ptr<const PlanAction> AdversaryAction(const v1::Fence& fence,
                                                    const std::string& to);
  bool CheckAdmitted(const Node& node, const Envelope& e);

  SimOptions options_;
  SeededRandom rng_;
  std::map<std::string, Node> nodes_;
  // By pointer: heap moves of whole protobuf messages dominated the run
  // time under ASan.
  struct Later {
    bool operator()(const std::unique_ptr<Envelope>& a,
                    const std::unique_ptr<Envelope>& b) const {
      return *a > *b;
    }
  };
  std::priority_queue<std::unique_ptr<Envelope>, std::vector<std::unique_ptr<Envelope>>,
                      Later>
      inflight_;
  std::set<std::pair<std::string, std::string>> blocked_;  // from -> to
  int64_t now_ = 0;
  int64_t seq_ = 0;
  bool faults_ = true;
  double loss_ = 0, dup_ = 0, crash_rate_ = 0, lost_write_rate_ = 0;
  double adversary_rate_ = 0, rollback_failed_rate_ = 0;
  std::vector<v1::Fence> real_fences_;  // every fence a coordinator sent
  static std::string NamedOr(const v1::Fence& fence, const std::string& other);
  void CheckFailedNodesRanNothing(const v1::FleetPlan& plan);
  void CheckGivenBackUntouched(const v1::FleetPlan& plan);
  int64_t max_delay_ = 0;

  std::map<uint64_t, std::string> leader_of_term_;       // invariant 1
  std::map<uint64_t, v1::PlanRecord> committed_index_;   // invariant 2
  std::string failure_;
  Counters counters_;

  // Leadership transfers: their own random stream, so that drawing them
  // does not shift the other draws of a seed until the first one starts.
  SeededRandom transfer_rng_;
  double transfer_rate_ = 0;
  std::vector<Transfer> transfers_;

  // The peer forger: its own random stream, like the transfers'.
  SeededRandom forger_rng_;
  // Re-stages by hand (--plan): their own stream too, so that the seeds
  // chosen for the other faults keep their schedules.
  SeededRandom restage_rng_;
  // The plan's compatibility facts and whether a failed target had been
  // ready: their own stream as well.
  SeededRandom compat_rng_;
  // Which admissions take a while, and how long: their own stream too.
  SeededRandom admission_rng_;
  // Registry checkpoints that fall behind or go missing, and plans that
  // acknowledge it: their own stream too.
  SeededRandom checkpoint_rng_;
  // Providers down by themselves for a while: their own stream too.
  SeededRandom outage_rng_;
  // Rounds a slow voter holds up, and on which seeds: their own stream too.
  SeededRandom slow_round_rng_;
  bool slow_rounds_ = false;
  // The adversary's copies of steps their coordinator holds back: their
  // own stream too.
  SeededRandom held_back_rng_;
  bool wire_format_ = false;  // the seed's plans cross a wire-format change

  // --plan.
  std::vector<std::string> voters_;
  double op_fail_rate_ = 0;       // operations that fail and roll back
  double action_fail_rate_ = 0;   // stage, doctor, API server restart
  bool auto_rollback_ = false;
  bool restart_required_ = false;
  bool operator_resolves_ = false;  // after faults: acks and resumes
  int64_t plan_fault_ticks_ = 0;
  int hash_serial_ = 0;
  bool resume_refused_ = false;
  std::map<std::string, std::shared_ptr<const PlanAction>> real_swaps_;  // by fence
  std::map<std::string, std::shared_ptr<const PlanAction>> last_real_swap_;  // by node
  // The step a coordinator last sent a node follow-only (start_allowed
  // false: gates failing, the plan not moving), as seen on the wire, with
  // its fence; and "<fence>/<operation id>" of every step a coordinator
  // sent to start. An operation starts only from the second
  // (CheckStartedByItsLeader).
  std::map<std::string, std::pair<v1::Fence, std::shared_ptr<const PlanAction>>> held_back_;
  std::set<std::string> started_steps_;
  std::optional<v1::FleetPlan> last_plan_;  // of the newest committed record
  // "<node>/<operation id>" of every step a plan gave back untouched, until
  // its slot is released, then (given_back_) for good: none of them may
  // start after that release (CheckGivenBackUntouched).
  std::set<std::string> giving_back_, given_back_;
  // World truth: per plan id, the node whose kube-apiserver restart last
  // failed there, not ready until a restart there succeeds.
  std::map<std::string, std::string> apiserver_not_ready_;
  uint64_t last_plan_index_ = 0;
  int tail_resumes_ = 0;
  std::string last_blocked_;  // why the newest coordinator's plan waits
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_SIM_WORLD_H_
