// The coordinator runtime (architecture.md §5, docs/fleet-plan.md §1): the
// shell of the pure PlanMachine. On the elected coordinator it observes
// every voter over kmsfleet.v1.Agent, probes OpenBao, steps the machine,
// commits each plan change through the election (PeerNode::ProposePlan)
// and only then carries out the actions that change authorises, each on
// a worker thread of its own, sending the committed record's fence with
// every swap and rollback. On every agent it keeps the history of finished
// plans it saw committed, and answers the Fleet API's plan calls.
//
// Thread-safe: the public methods may be called from gRPC handler threads.
#ifndef KMSFLEET_CLUSTER_COORDINATOR_H_
#define KMSFLEET_CLUSTER_COORDINATOR_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/core/plan_dry_run.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

class FleetActions;

struct CoordinatorOptions {
  std::string self;
  std::vector<std::string> voters;
  // Every voter's cluster listener (host:port), this node's included: the
  // coordinator reaches each agent there, itself too.
  std::map<std::string, std::string> addresses;
  // The member certificate; null when the cluster runs without TLS, where
  // no agent serves its Agent API remotely and plans are refused.
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials;
  std::chrono::milliseconds tick{200};
  std::chrono::milliseconds call_timeout{3000};
  // GetNodeState: the agents' ObserveBound and a margin. Shorter, a
  // provider that hangs reads as AGENT_UNREACHABLE, with the wrong remedy.
  std::chrono::milliseconds observe_timeout{16000};
  // This and preflight_timeout are this agent's own (CallBoundsOf); a node
  // whose own config allows longer (NodeState.call_bounds) is given that.
  // Agent.Stage, which may download the artifact from a URL or fetch it
  // from the coordinator: the agents' executor.download_timeout_ms and a
  // margin for the copy and the hash. Shorter, a large artifact on a slow
  // link never stages: every attempt starts again from its first byte.
  std::chrono::milliseconds stage_timeout{std::chrono::minutes(11)};
  // Agent.Preflight: the agents' executor.doctor_timeout_ms twice (doctor
  // beside one rotation-plan, then, for a release that predates the
  // Transit check, the other release's rotation-plan) and a margin.
  // Found in review: ten plain call timeouts (30 s) cut a doctor waiting
  // on a slow OpenBao every time, and the plan sent it again for ever as
  // AGENT_UNREACHABLE.
  std::chrono::milliseconds preflight_timeout{std::chrono::minutes(3)};
  // Finished plans, newest first; "" keeps them in memory only.
  std::string history_path;
  // GET <openbao.address>/v1/sys/health; nullopt when it cannot be probed.
  std::function<std::optional<OpenBaoProbe>()> probe_openbao;
  std::function<int64_t()> now_unix_ms;
  // A monotonic clock in milliseconds, which times how old a round of
  // observations is when a disruption would start on it
  // (PlanInput::now_mono_ms); unset: std::chrono::steady_clock. Called
  // from the round's threads at once.
  std::function<int64_t()> now_mono_ms;
  std::function<uint64_t()> random;
  // This agent's `apiserver.restart` ("systemd:<unit>", "command:<path>"),
  // or "": recorded in a plan the operator started without one, so that a
  // release needing an API server restart can start (every agent restarts
  // its own kube-apiserver its own configured way).
  std::string apiserver_restart_method;
  // Told the reason code of every refusal by a guard on the coordinator:
  // an operator command the machine refused, a halt, a break-glass, and
  // each new block by a fleet guard (not the waits of normal progress:
  // fresh parity rounds, the soak, a paused plan). May be empty.
  std::function<void(std::string_view reason)> on_refusal;
  // How long an operator command may wait for its answer in all (cut to a
  // second before its caller's deadline), an upgrade dry run's ask of
  // every node included. Not taken by then, it is
  // withdrawn (COMMAND_NOT_TAKEN); taken, it may still apply
  // (PLAN_CHANGE_PENDING). A loop's round can take an observation
  // (observe_timeout) and a commit (5 s), and a command may wait for the
  // round under way before its own.
  std::chrono::milliseconds answer_timeout{50000};
};

// Finished plans kept in the history.
inline constexpr int kMaxPlanHistory = 20;

// Who waits for an operator command's answer: the answer must reach them
// before their deadline, and a caller gone (cancelled) gets none.
struct CommandCaller {
  std::chrono::system_clock::time_point deadline = std::chrono::system_clock::time_point::max();
  std::function<bool()> gone;  // may be empty
};

class Coordinator {
 public:
  // Loads the history (a corrupt file is logged and set aside: it holds
  // no decision).
  Coordinator(PeerNode& node, CoordinatorOptions options);
  ~Coordinator();  // Stop()

  void Start();
  // Idempotent. Cancels the calls in flight (FleetActions::CancelAll) and
  // waits for the loop and the action workers to notice.
  void Stop();

  // Fleet.StartUpgrade for `who` (operator identity or "local root").
  // Errors: Unavailable NOT_LEADER (metadata leader, leader_address), the
  // policy or changelog parse error naming the file, the machine's refusal
  // (plan_machine.h), the commit's failure (PLAN_CHANGE_PENDING), and for
  // a command the loop did not take in time (withdrawn, nothing changed)
  // COMMAND_NOT_TAKEN; see CoordinatorOptions::answer_timeout.
  absl::StatusOr<v1::PlanView> StartUpgrade(const v1::UpgradeRequest& request,
                                            const std::string& who,
                                            const CommandCaller& caller = {});
  // Fleet.CommandPlan: pause, resume, abort, rollback, ack-break-glass.
  absl::StatusOr<v1::PlanView> Command(const v1::PlanCommandRequest& request,
                                       const std::string& who, const CommandCaller& caller = {});

  // The committed plan as this agent knows it; on the coordinator with why
  // it is blocked. `version` increases with every change of the view.
  v1::PlanView View(uint64_t* version = nullptr);
  // The coordinator's own view when this agent follows (asked over mTLS
  // as a member), so that any agent shows why the plan waits; this
  // agent's View when it leads, or when the coordinator cannot be asked.
  v1::PlanView CoordinatorView();
  // Waits until the view's version passes `version`, or `timeout`, or
  // watches end.
  void WaitForChange(uint64_t version, std::chrono::milliseconds timeout);
  // The agent is stopping: every WatchPlan stream ends now, so that none
  // holds a listener's shutdown for its whole grace. Plans go on.
  void EndWatches();
  bool WatchesEnded();
  v1::PlanHistory History();
  // On the coordinator: whether every voter, at its last observation, was
  // reachable and reported the same single key_id hash. nullopt on a
  // follower, or before the first observation.
  std::optional<bool> FleetParity();
  // Rounds of the plan loop so far: a watchdog reads that the loop moves
  // (a round ends at least every `tick`).
  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }

 private:
  struct Pending;
  void Loop();
  bool Stopping();
  void Tick();
  void Lead(const v1::LeaderView& leader);
  void Follow(const v1::LeaderView& leader);
  void Observe(std::vector<NodeView>& views);
  void ObserveRound(PlanInput& in);
  int64_t NowMonoMs() const;
  std::optional<PlanReady> StepOnLastRound(PlanInput& in, bool after_change);
  void RecordParity(const std::vector<NodeView>& views);
  void CountRefusal(const absl::Status& refusal);
  void CountBlock(const absl::Status& blocked);
  std::shared_ptr<Pending> NextCommand();
  void Answer(Pending& pending, absl::StatusOr<v1::PlanView> answer);
  void LogAccepted(const Pending& pending);
  absl::StatusOr<OperatorCommand> ToCommand(Pending& pending,
                                            const std::vector<NodeView>& views);
  absl::StatusOr<v1::PlanView> DryRun(Pending& pending, const PlanInput& input);
  std::optional<std::vector<NodeReadOnlyChecks>> AskReadOnlyChecks(const CommandCaller& caller);
  v1::PlanView DryRunRollback(Pending& pending, const PlanInput& input);
  v1::PlanView DryRunView(const DryRunReport& report);
  // Proposes ready.plan and waits for the commit; false (the machine told
  // to abandon it, the command answered) when it did not commit.
  bool Commit(PlanReady& ready, Pending* command);
  void AdoptCommitted(const v1::PlanRecord& committed);
  void Dispatch(const PlanAction& action);
  void StartWorker(std::function<void()> work);
  void WarmNextSwap();
  std::function<bool()> WhileLeadingTerm(uint64_t term);
  // A worker's wait, until a tick after `began` or Stop, before it reports
  // an Unavailable result (Dispatch says why).
  void PaceRetry(std::chrono::steady_clock::time_point began);
  // Commits the committed plan again for a fresh fence (a swap refused
  // STALE_FENCE at the current record that never ran: docs/fleet-plan.md §1).
  void RenewFence();
  // PlanMachine::ReleaseCommitted on a committed change's actions, with a
  // log line for each one withdrawn, and its check counted as a refusal
  // (but for a slow round or commit, a wait: IsProgressWait).
  void ReleaseCommitted(PlanReady& ready);
  void LoadHistory();
  void RecordHistory(const v1::PlanRecord& committed);
  void Publish(const v1::LeaderView& leader, const absl::Status& blocked);
  absl::StatusOr<v1::PlanView> Submit(std::shared_ptr<Pending> pending,
                                      const CommandCaller& caller);
  absl::Status Unanswered(const std::shared_ptr<Pending>& pending, const std::string& waited);

  PeerNode& node_;
  CoordinatorOptions options_;
  std::unique_ptr<FleetActions> actions_;

  // Loop state: touched by the loop thread only.
  std::unique_ptr<PlanMachine> machine_;
  uint64_t machine_term_ = 0;
  std::map<std::string, NodeView> views_;
  // The last round of observations, for a Step on results alone.
  struct Round {
    std::vector<NodeView> views;
    std::optional<OpenBaoProbe> openbao;
    int64_t asked_mono_ms = 0;  // on NowMonoMs
  };
  std::optional<Round> last_round_;
  uint64_t history_term_ = 0, history_index_ = 0;  // last record looked at
  // The next step runs without waiting a tick: the plan waits only for
  // parity rounds, or a change that sent no action was just committed
  // (what it allows, such as the next phase, is decided at once).
  bool step_at_once_ = false;
  // A change that sent no action was just committed: the next step is
  // tried on the last round first (StepOnLastRound).
  bool after_change_ = false;
  // Leading without this term's fence yet (Lead): no machine decides.
  // The three flags belong to the loop's thread.
  bool awaiting_fence_ = false;
  static constexpr std::chrono::milliseconds kFencePoll{10};
  std::string counted_block_;     // the block reason counted last
  std::string warmed_;            // the last warm-up sent: plan/node/revision

  std::mutex mu_;
  std::condition_variable wake_;     // commands, results, Stop
  std::condition_variable changed_;  // the view changed
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool watches_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::shared_ptr<Pending>> commands_ ABSL_GUARDED_BY(mu_);
  struct TermResult {
    uint64_t term;  // of the machine that issued the action
    ActionResult result;
  };
  std::vector<TermResult> results_ ABSL_GUARDED_BY(mu_);
  v1::PlanView view_ ABSL_GUARDED_BY(mu_);
  uint64_t view_version_ ABSL_GUARDED_BY(mu_) = 0;
  v1::PlanHistory history_ ABSL_GUARDED_BY(mu_);
  int workers_ ABSL_GUARDED_BY(mu_) = 0;
  // The term whose machine must commit a fresh fence (0: none).
  uint64_t renew_fence_term_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<bool> parity_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> rounds_{0};
  std::thread loop_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_COORDINATOR_H_
