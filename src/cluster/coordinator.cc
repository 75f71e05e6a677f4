// Coordinator: the loop that drives the plan machine (docs/fleet-plan.md
// §1). The view, history and Fleet answers are in coordinator_view.cc.
#include "kmsfleet/cluster/coordinator.h"

#include <algorithm>
#include <functional>
#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fleet_actions.h"
#include "kmsfleet/core/compat_policy.h"
#include "kmsfleet/core/node_observation.h"
#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/plan_dry_run.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

// How long a plan change may take to commit before the operator is told.
constexpr std::chrono::seconds kCommitTimeout{5};
// A command's wait checks its caller this often, and ends this long
// before the caller's deadline so that the answer reaches it.
constexpr std::chrono::milliseconds kCallerPoll{100};
constexpr std::chrono::seconds kCallerMargin{1};

}  // namespace

struct Coordinator::Pending {
  bool upgrade = false;
  v1::UpgradeRequest request;
  v1::PlanCommandRequest command;
  std::string who;
  CompatPolicy policy;
  std::optional<Changelog> changelog;
  // An upgrade's dry run: each voter's read-only preflight, asked before
  // the command is queued (the loop does not wait on nodes).
  std::optional<std::vector<NodeReadOnlyChecks>> read_only;
  std::promise<absl::StatusOr<v1::PlanView>> answer;
  bool taken = false;  // by the loop; guarded by Coordinator::mu_
};

Coordinator::Coordinator(PeerNode& node, CoordinatorOptions options)
    : node_(node), options_(std::move(options)) {
  if (options_.channel_credentials) {
    actions_ = std::make_unique<FleetActions>(options_.addresses, options_.channel_credentials,
                                              options_.call_timeout, options_.observe_timeout,
                                              options_.stage_timeout,
                                              options_.preflight_timeout);
  }
  LoadHistory();
}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::Start() {
  loop_ = std::thread([this] { Loop(); });
}

void Coordinator::Stop() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  wake_.notify_all();
  changed_.notify_all();
  lock.unlock();
  // The tick's observations and the workers' calls end now, not at their
  // deadlines (up to 30 s): the agent hands leadership over after this.
  if (actions_) actions_->CancelAll();
  if (loop_.joinable()) loop_.join();
  lock.lock();
  // Workers poll keep_going(), which is false now.
  changed_.wait(lock, [this] { return workers_ == 0; });
  for (const std::shared_ptr<Pending>& p : commands_) {
    p->answer.set_value(MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                                  options_.self + " is shutting down"));
  }
  commands_.clear();
}

bool Coordinator::Stopping() {
  std::lock_guard lock(mu_);
  return stopping_;
}

void Coordinator::Loop() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    Tick();
    rounds_.fetch_add(1, std::memory_order_relaxed);
    lock.lock();
    // A command or a finished action is acted on at once; otherwise the
    // tick paces observation, except after a committed change that sent no
    // action and while the plan counts parity rounds (beside a hand-off, or
    // with nothing else to wait for), which are observed back to back.
    // Waiting for its fence, a new coordinator leaves commands and results
    // queued, so they must not wake it back to back.
    const auto pace = awaiting_fence_ ? std::min<std::chrono::milliseconds>(options_.tick, kFencePoll)
                      : step_at_once_ ? std::chrono::milliseconds(0)
                                      : options_.tick;
    wake_.wait_for(lock, pace, [this] {
      return stopping_ || (!awaiting_fence_ && (!commands_.empty() || !results_.empty()));
    });
  }
}

void Coordinator::Tick() {
  v1::LeaderView leader = node_.View();
  RecordHistory(leader.committed());
  if (leader.role() != "Leader") {
    Follow(leader);
    return;
  }
  Lead(leader);
}

void Coordinator::Follow(const v1::LeaderView& leader) {
  machine_.reset();
  last_round_.reset();
  step_at_once_ = false;
  after_change_ = false;
  awaiting_fence_ = false;
  counted_block_.clear();
  views_.clear();
  {
    std::lock_guard lock(mu_);
    parity_.reset();
  }
  std::vector<std::shared_ptr<Pending>> refused;
  {
    std::lock_guard lock(mu_);
    refused.assign(commands_.begin(), commands_.end());
    commands_.clear();
    // Answers to a term that is over: no machine will take them, and left
    // here they would wake the loop at once, for good.
    results_.clear();
    renew_fence_term_ = 0;
  }
  // The Fleet service adds who leads and where (WithLeader).
  for (const std::shared_ptr<Pending>& p : refused) {
    p->answer.set_value(MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                                  options_.self + " is not the coordinator"));
  }
  Publish(leader, absl::OkStatus());
}

void Coordinator::Lead(const v1::LeaderView& seen) {
  v1::LeaderView leader = seen;
  if (!machine_ || machine_term_ != leader.term()) {
    // One machine per term, from the committed record (fleet-plan.md §1),
    // once this term's own first record committed (its fence exists), as
    // the simulator's coordinator does. Before that, the record known
    // committed here can be older than the last one the previous
    // coordinator committed (found in review: a machine built on it took
    // an abort against a plan that had since entered BreakGlass).
    const std::optional<v1::Fence> fence = node_.CurrentFence();
    awaiting_fence_ = !fence || fence->term() != leader.term();
    if (awaiting_fence_) {
      step_at_once_ = false;
      Publish(leader, MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                                "this coordinator's first record of term " +
                                    std::to_string(leader.term()) + " has not committed yet"));
      return;
    }
    leader = node_.View();
    if (leader.role() != "Leader" || leader.term() != fence->term()) return;  // deposed
    std::optional<v1::FleetPlan> committed;
    if (!leader.committed().payload().empty()) {
      committed = FleetPlanIn(leader.committed().payload());
      // A raw record (`kmsfleetctl plan commit --payload`) is allowed: it
      // is no fleet plan, which is worth a line, not an error.
      if (!committed) {
        Log(LogLevel::kInfo, "committed record holds no fleet plan",
            {{"node", options_.self},
             {"bytes", std::to_string(leader.committed().payload().size())}});
      }
    }
    machine_ = std::make_unique<PlanMachine>(
        PlanMachineConfig{options_.self, options_.voters}, committed);
    machine_term_ = leader.term();
    last_round_.reset();
  } else if (!machine_->proposal_pending()) {
    AdoptCommitted(leader.committed());
  }
  PlanInput in;
  in.now_unix_ms = options_.now_unix_ms();
  bool renew = false;
  {
    // Results first: the views asked for below are then newer than every
    // result, as PlanInput promises the machine.
    std::lock_guard lock(mu_);
    // A worker of an earlier term (this node led before) answers an action
    // that machine issued, under a fence this term has replaced.
    for (TermResult& r : results_) {
      if (r.term == machine_term_) in.results.push_back(std::move(r.result));
    }
    results_.clear();
    renew = renew_fence_term_ == machine_term_;
    renew_fence_term_ = 0;
  }
  std::shared_ptr<Pending> command = NextCommand();
  if (renew) RenewFence();
  in.random = options_.random();
  std::optional<PlanReady> on_last_round;
  const bool after_change = std::exchange(after_change_, false);
  if (!command) on_last_round = StepOnLastRound(in, after_change);
  if (!on_last_round) ObserveRound(in);
  if (Stopping()) {
    // The round was cut short by Stop: nothing is decided on it.
    if (command) {
      Answer(*command, MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                                 options_.self + " is shutting down"));
    }
    return;
  }
  if (command && command->upgrade && command->request.dry_run()) {
    Answer(*command, DryRun(*command, in));
    command.reset();
  } else if (command && !command->upgrade && command->command.dry_run() &&
             command->command.kind() == v1::PLAN_COMMAND_ROLLBACK) {
    Answer(*command, DryRunRollback(*command, in));
    command.reset();
  }
  if (command) {
    absl::StatusOr<OperatorCommand> c = ToCommand(*command, in.views);
    if (!c.ok()) {
      Answer(*command, c.status());
      command.reset();
    } else {
      in.command = *c;
    }
  }
  if (!on_last_round) in.now_mono_ms = NowMonoMs();  // the round's own time counts
  PlanReady ready = on_last_round ? *std::move(on_last_round) : machine_->Step(in);
  CountBlock(ready.blocked);
  if (command && !ready.refusal.ok()) {
    CountRefusal(ready.refusal);
    Answer(*command, ready.refusal);
    command.reset();
  }
  if (ready.plan && !Commit(ready, command.get())) {
    step_at_once_ = false;  // a failed commit is tried again a tick later
    return;
  }
  // What the commit took may have made a swap's round too old to start on.
  if (ready.plan) ReleaseCommitted(ready);
  for (const PlanAction& action : ready.actions) Dispatch(action);
  WarmNextSwap();
  // After a committed change the machine decides again at once (every
  // change costs a durable commit, so this cannot spin), unless the change
  // sent actions: their results wake the loop, and a round meanwhile would
  // only take the CPU the nodes carrying them out need (bench/README.md).
  after_change_ = ready.plan.has_value() && !SendsAnAction(ready.actions);
  step_at_once_ = after_change_ || ready.observe_at_once;
  v1::LeaderView now = node_.View();
  Publish(now, ready.blocked);
  if (command) {
    LogAccepted(*command);
    Answer(*command, View());
  }
}

// The plan's audit keeps its last kMaxAuditEntries entries; the journal
// keeps every accepted command with who sent it (found in review: in a long
// plan, the name on an earlier break-glass acknowledgement was dropped).
void Coordinator::LogAccepted(const Pending& p) {
  constexpr size_t kMaxLoggedBytes = 512;  // the caller's name is the caller's
  const std::optional<v1::FleetPlan>& plan = machine_->committed();
  std::string command = p.upgrade ? "upgrade" : v1::PlanCommandKind_Name(p.command.kind());
  if (p.upgrade) absl::StrAppend(&command, " to ", p.request.target_version().substr(0, 64));
  Log(LogLevel::kInfo, "operator command accepted",
      {{"node", options_.self}, {"command", command},
       {"caller", p.who.substr(0, kMaxLoggedBytes)},
       {"plan", plan ? plan->plan_id() : ""},
       {"revision", plan ? std::to_string(plan->revision()) : ""}});
}

// Asks every voter for its state and probes OpenBao, together: a fresh
// round for `in`, kept as the last round.
void Coordinator::ObserveRound(PlanInput& in) {
  // Asked now: a voter that answers at once is seen as of now, however
  // long the round waits for the slowest.
  in.views_asked_mono_ms = NowMonoMs();
  std::future<std::optional<OpenBaoProbe>> openbao;
  if (options_.probe_openbao) openbao = std::async(std::launch::async, options_.probe_openbao);
  in.views.clear();
  in.openbao.reset();
  Observe(in.views);
  // A round cut short by Stop (its calls cancelled) is no observation of
  // the fleet: keep it out of parity, /metrics and the last round.
  if (Stopping()) return;
  RecordParity(in.views);
  if (openbao.valid()) in.openbao = openbao.get();
  in.views_fresh = true;
  in.now_mono_ms = NowMonoMs();  // read again just before the Step
  last_round_ = Round{in.views, in.openbao, in.views_asked_mono_ms};
}

int64_t Coordinator::NowMonoMs() const {
  if (options_.now_mono_ms) return options_.now_mono_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A Step on results alone, or right after a committed change, may decide
// on this term's last round again: the machine takes it only if it reads
// no view (recording the results and issuing what they call for, or
// waiting out a soak), so the plan
// moves without waiting for a round it does not need
// (PlanInput::views_fresh). nullopt: observe and step as usual.
std::optional<PlanReady> Coordinator::StepOnLastRound(PlanInput& in, bool after_change) {
  if ((in.results.empty() && !after_change) || !last_round_) return std::nullopt;
  in.views = last_round_->views;
  in.openbao = last_round_->openbao;
  in.views_asked_mono_ms = last_round_->asked_mono_ms;
  in.now_mono_ms = NowMonoMs();
  in.views_fresh = false;
  PlanReady ready = machine_->Step(in);
  if (ready.needs_fresh_views) return std::nullopt;  // the machine is as it was
  return ready;
}

void Coordinator::AdoptCommitted(const v1::PlanRecord& committed) {
  // A change whose commit this loop gave up waiting for may have committed
  // after all: decide from what is committed, not from what was abandoned.
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  const std::optional<v1::FleetPlan>& mine = machine_->committed();
  // Revisions increase across plans.
  if (plan && (!mine || plan->revision() > mine->revision())) {
    machine_->Committed(*plan);
  }
}

namespace {

// The election's `allowed` check for a change decided on `base`: proposed
// over a newer plan (a change given up on that committed late), it would
// replace it.
std::function<absl::Status(const v1::PlanRecord&)> DecidedOn(std::optional<v1::FleetPlan> base) {
  return [base = std::move(base)](const v1::PlanRecord& committed) {
    return CheckChangeBase(committed, base);
  };
}

}  // namespace

bool Coordinator::Commit(PlanReady& ready, Pending* command) {
  absl::StatusOr<std::string> payload = EncodePlan(*ready.plan);
  absl::StatusOr<v1::Fence> fence =
      payload.ok() ? node_.ProposePlan(ready.plan->in_flight(), *payload, kCommitTimeout,
                                       DecidedOn(machine_->committed()))
                   : absl::StatusOr<v1::Fence>(payload.status());
  if (!fence.ok()) {
    // Nothing the change authorises may run: forget it and decide again.
    machine_->Abandon();
    Log(LogLevel::kWarn, "plan change not committed",
        {{"node", options_.self}, {"plan", ready.plan->plan_id()},
         {"phase", std::string(PlanPhaseName(ready.plan->phase()))},
         {"revision", std::to_string(ready.plan->revision())},
         {"reason", ReasonOf(fence.status())}, {"error", std::string(fence.status().message())}});
    if (command != nullptr) Answer(*command, CommandAnswerFor(fence.status()));
    return false;
  }
  machine_->Committed(*ready.plan);
  Log(LogLevel::kInfo, "plan change committed",
      {{"node", options_.self}, {"plan", ready.plan->plan_id()},
       {"revision", std::to_string(ready.plan->revision())},
       {"phase", std::string(PlanPhaseName(ready.plan->phase()))},
       {"in_flight", ready.plan->in_flight()},
       {"fence", absl::StrCat(fence->term(), "/", fence->index())}});
  return true;
}

void Coordinator::ReleaseCommitted(PlanReady& ready) {
  std::vector<PlanMachine::Withdrawn> withdrawn;
  ready.actions = machine_->ReleaseCommitted(std::move(ready.actions), options_.now_unix_ms(),
                                             NowMonoMs(), &withdrawn);
  for (const PlanMachine::Withdrawn& w : withdrawn) {
    Log(LogLevel::kInfo, "step withdrawn at its commit",
        {{"node", options_.self}, {"target", w.action.node},
         {"action", std::string(ActionKindName(w.action.kind))},
         {"operation", w.action.operation_id}, {"reason", ReasonOf(w.why)},
         {"detail", absl::StrCat(w.why.message(), " Decided again on a fresh round.")}});
    if (!IsProgressWait(ReasonOf(w.why))) CountRefusal(w.why);
  }
}

void Coordinator::RenewFence() {
  // The committed plan again, unchanged: a new record, so a fresh fence
  // that the in-flight node has not answered a hand-off at.
  const std::optional<v1::FleetPlan>& plan = machine_->committed();
  if (!plan || machine_->proposal_pending()) return;
  absl::StatusOr<std::string> payload = EncodePlan(*plan);
  if (!payload.ok()) return;
  absl::StatusOr<v1::Fence> fence =
      node_.ProposePlan(plan->in_flight(), *payload, kCommitTimeout, DecidedOn(plan));
  Log(fence.ok() ? LogLevel::kInfo : LogLevel::kWarn, "fence renewed",
      {{"node", options_.self}, {"in_flight", plan->in_flight()},
       {"result", fence.ok() ? absl::StrCat(fence->term(), "/", fence->index())
                             : std::string(fence.status().message())}});
}

void Coordinator::Observe(std::vector<NodeView>& views) {
  if (!actions_) return;  // no TLS: no agent can be reached remotely
  struct Answer {
    absl::StatusOr<v1::NodeState> state;
    int64_t took_ms = 0;
  };
  std::vector<std::future<Answer>> answers;
  for (const std::string& voter : options_.voters) {
    answers.push_back(std::async(std::launch::async, [this, voter] {
      const int64_t asked = NowMonoMs();
      absl::StatusOr<v1::NodeState> state = actions_->Observe(voter);
      return Answer{std::move(state), NowMonoMs() - asked};
    }));
  }
  const int64_t now = options_.now_unix_ms();
  for (size_t i = 0; i < options_.voters.size(); ++i) {
    NodeView& view = views_[options_.voters[i]];
    view.node = options_.voters[i];
    Answer answer = answers[i].get();
    absl::StatusOr<v1::NodeState>& state = answer.state;
    view.answered_in_ms = answer.took_ms;
    if (state.ok()) {
      view.state = *state;
      view.unreachable_since_unix_ms = 0;
      view.registry = RegistryFactsOf(*state);
    } else if (view.unreachable_since_unix_ms == 0) {
      view.unreachable_since_unix_ms = now;
    }
    views.push_back(view);
  }
}

void Coordinator::RecordParity(const std::vector<NodeView>& views) {
  const bool in_parity = FleetInParity(views);
  std::lock_guard lock(mu_);
  parity_ = in_parity;
}

std::optional<bool> Coordinator::FleetParity() {
  std::lock_guard lock(mu_);
  return parity_;
}

void Coordinator::CountRefusal(const absl::Status& refusal) {
  // An upgrade to the version the fleet runs is a no-op, not a refusal.
  if (ReasonOf(refusal) == reason::kAlreadyAtTarget) return;
  if (options_.on_refusal && !refusal.ok()) options_.on_refusal(ReasonOf(refusal));
}

// A block is counted once, when its reason first appears, unless it is a
// wait of normal progress (IsProgressWait); a halt or break-glass is
// counted where it is dispatched.
void Coordinator::CountBlock(const absl::Status& blocked) {
  const std::string reason = blocked.ok() ? "" : ReasonOf(blocked);
  if (reason == counted_block_) return;
  counted_block_ = reason;
  if (!reason.empty() && !IsProgressWait(reason)) CountRefusal(blocked);
}

void Coordinator::PaceRetry(std::chrono::steady_clock::time_point began) {
  std::unique_lock lock(mu_);
  wake_.wait_until(lock, began + options_.tick, [this] { return stopping_; });
}

void Coordinator::Dispatch(const PlanAction& action) {
  if (action.kind == ActionKind::kHalt || action.kind == ActionKind::kBreakGlass) {
    CountRefusal(action.why);
    const std::optional<v1::FleetPlan>& committed = machine_->committed();
    Log(LogLevel::kError,
        action.kind == ActionKind::kHalt ? "plan halted" : "plan entered break-glass",
        {{"node", action.node}, {"plan", committed ? committed->plan_id() : ""},
         {"operation", action.operation_id}, {"reason", ReasonOf(action.why)},
         {"error", std::string(action.why.message())}});
    return;
  }
  const std::optional<v1::FleetPlan>& plan = machine_->committed();
  if (!plan || !actions_) return;
  // Disruptive commands go under a record this term committed: at a
  // term's start the record held is the last term's, which every agent
  // that saw the election refuses STALE_TERM.
  std::optional<v1::Fence> current = node_.CurrentFence();
  const bool disruptive = action.kind == ActionKind::kSwap ||
                          action.kind == ActionKind::kRollbackNode ||
                          action.kind == ActionKind::kRestartApiServer;
  const bool no_fence = disruptive && (!current || current->term() != machine_term_);
  const v1::Fence fence = current.value_or(v1::Fence());
  std::string metric_state;
  if (auto it = views_.find(action.node); it != views_.end() && it->second.state) {
    metric_state = it->second.state->rotation_state();
  }
  const uint64_t term = machine_term_;
  StartWorker([this, action, fence, no_fence, settings = plan->settings(), metric_state,
               term] {
    const std::function<bool()> keep_going = WhileLeadingTerm(term);
    const auto began = std::chrono::steady_clock::now();
    ActionResult result;
    if (no_fence) {
      result.kind = ResultKindOf(action.kind);
      result.node = action.node;
      result.revision = action.revision;
      result.operation_id = action.operation_id;
      result.status = MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                                "no record of term " + std::to_string(term) +
                                    " is committed yet on " + options_.self +
                                    "; the command is sent once one is");
    } else if (action.kind == ActionKind::kHandOff) {
      result.node = action.node;
      result.revision = action.revision;
      v1::ReleaseReply released;
      SetHandOffResult(node_.HandOff(action.node, &released), result);
      result.last_operation_id = released.last_operation_id();
      result.last_operation_phase = released.last_operation_phase();
    } else {
      result = actions_->Run(action, fence, settings, metric_state, keep_going);
    }
    // The loop steps on every result at once, and "not now" (no record of
    // this term committed yet, an agent down, starting or busy) or "no
    // such operation" may come back within a millisecond: reported sooner
    // than a tick after the call began, the action would be sent again
    // back to back.
    if (AsksAgainAtOnce(result)) PaceRetry(began);
    const bool renew = (result.kind == ResultKind::kOperation ||
                        result.kind == ResultKind::kApiServerRestarted) &&
                       ReasonOf(result.status) == reason::kStaleFence &&
                       fence.index() == node_.View().committed().index();
    std::lock_guard lock(mu_);
    if (renew) renew_fence_term_ = term;
    results_.push_back({term, std::move(result)});
    wake_.notify_all();
  });
}

// Runs `work` on a thread of its own, which Stop waits for.
void Coordinator::StartWorker(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    ++workers_;
  }
  std::thread([this, work = std::move(work)] {
    work();
    std::lock_guard lock(mu_);
    --workers_;
    changed_.notify_all();
  }).detach();
}

// Whether a worker of `term` goes on: this node still leads that term and
// is not stopping.
std::function<bool()> Coordinator::WhileLeadingTerm(uint64_t term) {
  return [this, term] {
    {
      std::lock_guard lock(mu_);
      if (stopping_) return false;
    }
    v1::LeaderView now = node_.View();
    return now.term() == term && now.role() == "Leader";
  };
}

// The machine's warm-up (PlanMachine::WarmUp), once per node and
// revision, on a worker of its own: it runs in the in-flight node's window
// or beside the parity rounds, and its answer goes nowhere but a log line
// when the node refused it (the node's swap runs the checks again then,
// and judges them).
void Coordinator::WarmNextSwap() {
  std::optional<PlanAction> warm = machine_->WarmUp(options_.now_unix_ms());
  if (!warm || !actions_) return;
  std::string key = absl::StrCat(machine_->committed()->plan_id(), "/", warm->node, "/",
                                 warm->revision);
  if (key == warmed_) return;
  warmed_ = std::move(key);
  const uint64_t term = machine_term_;
  StartWorker([this, warm = *std::move(warm), settings = machine_->committed()->settings(),
               term] {
    const std::function<bool()> keep_going = WhileLeadingTerm(term);
    ActionResult r = actions_->Run(warm, v1::Fence(), settings, "", keep_going);
    if (!r.status.ok()) {
      Log(LogLevel::kInfo, "the next node's early preflight did not answer; its swap checks",
          {{"node", warm.node}, {"reason", ReasonOf(r.status)},
           {"error", std::string(r.status.message())}});
    }
  });
}

std::shared_ptr<Coordinator::Pending> Coordinator::NextCommand() {
  std::lock_guard lock(mu_);
  if (commands_.empty()) return nullptr;
  std::shared_ptr<Pending> p = commands_.front();
  commands_.pop_front();
  p->taken = true;
  return p;
}

void Coordinator::Answer(Pending& pending, absl::StatusOr<v1::PlanView> answer) {
  pending.answer.set_value(std::move(answer));
}

absl::StatusOr<OperatorCommand> Coordinator::ToCommand(Pending& p,
                                                       const std::vector<NodeView>& views) {
  OperatorCommand c;
  c.who = p.who;
  if (!p.upgrade) {
    switch (p.command.kind()) {
      case v1::PLAN_COMMAND_PAUSE: c.kind = CommandKind::kPause; break;
      case v1::PLAN_COMMAND_RESUME: c.kind = CommandKind::kResume; break;
      case v1::PLAN_COMMAND_ABORT: c.kind = CommandKind::kAbort; break;
      case v1::PLAN_COMMAND_ROLLBACK: c.kind = CommandKind::kRollback; break;
      case v1::PLAN_COMMAND_ACK_BREAK_GLASS: c.kind = CommandKind::kAckBreakGlass; break;
      default:
        return MakeError(absl::StatusCode::kInvalidArgument, reason::kCommandNotApplicable,
                         "unknown plan command " + std::to_string(p.command.kind()));
    }
    if (p.command.dry_run() && c.kind != CommandKind::kRollback) {
      // Found in review: any command with dry_run set was answered as a
      // rollback's dry run, and a raw client's pause silently not applied.
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kCommandNotApplicable,
                       "dry_run is for rollback only; " +
                           v1::PlanCommandKind_Name(p.command.kind()) +
                           " has no dry run and was not applied");
    }
    c.nonce = p.command.nonce();
    return c;
  }
  // Each agent restarts kube-apiserver its own configured way: a method a
  // caller sends would be recorded and never run (found in review).
  const std::string& sent = p.request.settings().apiserver_restart_method();
  if (!sent.empty() && sent != options_.apiserver_restart_method) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                     "settings.apiserver_restart_method \"" + sent.substr(0, 128) +
                         "\" is not the caller's to choose: each agent restarts kube-apiserver "
                         "the way its own config's apiserver.restart says; send none",
                     {{"sent", sent.substr(0, 128)}});
  }
  if (!actions_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInvalidConfig,
                     "this cluster runs without TLS (cluster.insecure: true), so no agent "
                     "serves its Agent API to the coordinator: fleet plans need cluster.tls");
  }
  c.kind = CommandKind::kStart;
  c.request.target_version = p.request.target_version();
  c.request.order.assign(p.request.order().begin(), p.request.order().end());
  c.request.settings = p.request.settings();
  c.request.settings.set_apiserver_restart_method(options_.apiserver_restart_method);
  c.request.acknowledgements.assign(p.request.acknowledgements().begin(),
                                    p.request.acknowledgements().end());
  // The facts of the versions crossed, from the fleet's installed version:
  // a mixed or unknown fleet is refused by the version policy anyway.
  absl::StatusOr<SemVer> to = SemVer::Parse(p.request.target_version());
  for (const NodeView& v : views) {
    if (!v.state || !to.ok()) continue;
    absl::StatusOr<SemVer> from = SemVer::Parse(v.state->provider_version());
    if (!from.ok()) continue;
    c.request.facts = FactsCrossed(p.policy, *from, *to);
    if (p.changelog) c.request.changelog = FlagsCrossed(*p.changelog, *from, *to);
    break;
  }
  return c;
}

absl::StatusOr<v1::PlanView> Coordinator::DryRun(Pending& p, const PlanInput& in) {
  DryRunInput dry;
  absl::StatusOr<OperatorCommand> c = ToCommand(p, in.views);
  // As a real run: a request the coordinator cannot take is refused, not
  // evaluated as an empty one.
  if (!c.ok()) return c.status();
  dry.request = c->request;
  dry.now_unix_ms = in.now_unix_ms;
  dry.current = machine_->committed();
  dry.views = in.views;
  dry.openbao = in.openbao;
  dry.parity = machine_->parity();
  dry.read_only = p.read_only;
  return DryRunView(EvaluateDryRun(PlanMachineConfig{options_.self, options_.voters}, dry));
}

v1::PlanView Coordinator::DryRunRollback(Pending& p, const PlanInput& in) {
  return DryRunView(EvaluateRollbackDryRun(PlanMachineConfig{options_.self, options_.voters},
                                           *machine_, in, p.who));
}

// The plan view with a dry run's order and guards.
v1::PlanView Coordinator::DryRunView(const DryRunReport& report) {
  v1::PlanView view = View();
  view.clear_dry_run();
  for (const std::string& n : report.order) view.add_dry_run_order(n);
  for (const GuardOutcome& g : report.guards) {
    v1::GuardResult* out = view.add_dry_run();
    out->set_guard(g.guard);
    out->set_reason(ReasonOf(g.result));
    out->set_message(g.result.ok() ? g.note : std::string(g.result.message()));
  }
  view.set_dry_run_would_start(report.would_start);
  return view;
}

absl::StatusOr<v1::PlanView> Coordinator::Submit(std::shared_ptr<Pending> pending,
                                                 const CommandCaller& caller) {
  // The answer must reach the caller: the wait ends a second before its
  // deadline (read once, then timed on the steady clock, so that a clock
  // step neither cuts it nor stretches it past the caller), and as soon as
  // the caller is gone.
  std::chrono::milliseconds budget = options_.answer_timeout;
  if (caller.deadline != std::chrono::system_clock::time_point::max()) {
    budget = std::min(budget, std::chrono::duration_cast<std::chrono::milliseconds>(
                                  caller.deadline - std::chrono::system_clock::now() -
                                  kCallerMargin));
  }
  if (budget <= std::chrono::milliseconds(0) || (caller.gone && caller.gone())) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kCommandNotTaken,
                     "the call leaves coordinator " + options_.self +
                         " no time to answer; the command was not queued and changed "
                         "nothing: ask again with a longer deadline");
  }
  std::future<absl::StatusOr<v1::PlanView>> answer = pending->answer.get_future();
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                       options_.self + " is shutting down");
    }
    commands_.push_back(pending);
    wake_.notify_all();
  }
  const auto start = std::chrono::steady_clock::now();
  while (answer.wait_for(kCallerPoll) != std::future_status::ready) {
    const auto waited = std::chrono::steady_clock::now() - start;
    if (waited < budget && !(caller.gone && caller.gone())) continue;
    absl::Status unanswered = Unanswered(
        pending,
        absl::StrFormat("%.1f s", std::chrono::duration<double>(waited).count()));
    // Answered at the last moment: that answer, not "may still apply".
    if (answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready) break;
    if (!unanswered.ok()) return unanswered;
    break;  // answered meanwhile by a step-down or the stop
  }
  return answer.get();
}

// Why a command got no answer in time, once it cannot take effect unseen:
// withdrawn if the loop has not taken it (COMMAND_NOT_TAKEN, or
// NOT_LEADER when this node no longer leads, so the caller goes to the
// coordinator); PLAN_CHANGE_PENDING if taken. OK: it was answered (by a
// step-down or the stop) meanwhile.
absl::Status Coordinator::Unanswered(const std::shared_ptr<Pending>& pending,
                                     const std::string& waited) {
  const bool leads = node_.View().role() == "Leader";  // not under mu_
  std::lock_guard lock(mu_);
  auto queued = std::find(commands_.begin(), commands_.end(), pending);
  if (!pending->taken && queued == commands_.end()) return absl::OkStatus();
  if (!pending->taken) {
    commands_.erase(queued);
    if (stopping_ || !leads) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                       options_.self + " no longer coordinates; the command was withdrawn "
                       "and changed nothing");
    }
    return MakeError(absl::StatusCode::kUnavailable, reason::kCommandNotTaken,
                     "coordinator " + options_.self + " did not take the command within " +
                         waited + " (its loop was still observing the fleet, committing, or "
                         "waiting for its first record to commit); it was withdrawn and "
                         "changed nothing: ask again");
  }
  return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                   "coordinator " + options_.self + " took the command but did not answer "
                   "within " + waited + "; it may still take effect: check `kmsfleetctl "
                   "plan` before asking again");
}

absl::StatusOr<v1::PlanView> Coordinator::StartUpgrade(const v1::UpgradeRequest& request,
                                                       const std::string& who,
                                                       const CommandCaller& caller) {
  auto p = std::make_shared<Pending>();
  p->upgrade = true;
  p->request = request;
  p->who = who;
  p->policy = BuiltinCompatPolicy();
  if (!request.policy_yaml().empty()) {
    absl::StatusOr<CompatPolicy> overlay =
        ParseCompatPolicy(request.policy_yaml(), request.policy_name());
    if (!overlay.ok()) return overlay.status();
    p->policy = MergePolicies(p->policy, *overlay);
  }
  if (!request.changelog().empty()) {
    absl::StatusOr<Changelog> changelog =
        ParseChangelog(request.changelog(), request.changelog_name());
    if (!changelog.ok()) return changelog.status();
    // A target that is not SemVer is the version policy's refusal.
    if (absl::StatusOr<SemVer> target = SemVer::Parse(request.target_version()); target.ok()) {
      if (absl::Status s = CheckChangelogNamesTarget(*changelog, *target,
                                                     request.changelog_name());
          !s.ok()) {
        return s;
      }
    }
    p->changelog = *changelog;
  }
  if (!request.dry_run() || request.start_guards_only()) return Submit(std::move(p), caller);
  // The ask and the command share the answer's time: the caller's
  // deadline, or answer_timeout from now for one without.
  CommandCaller bounded = caller;
  bounded.deadline = std::min(caller.deadline, std::chrono::system_clock::now() +
                                                   options_.answer_timeout + kCallerMargin);
  p->read_only = AskReadOnlyChecks(bounded);
  return Submit(std::move(p), bounded);
}

// Every voter's read-only preflight, asked together, for an upgrade's dry
// run on the coordinator; nullopt elsewhere (a follower refuses the
// command NOT_LEADER), and when no time is left. Half the caller's time at
// most: the command still needs its round. Cancelled when the caller goes
// or the coordinator stops.
std::optional<std::vector<NodeReadOnlyChecks>> Coordinator::AskReadOnlyChecks(
    const CommandCaller& caller) {
  if (!actions_ || node_.View().role() != "Leader") return std::nullopt;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      caller.deadline - std::chrono::system_clock::now() - kCallerMargin);
  if (left < std::chrono::milliseconds(2)) return std::nullopt;
  const std::chrono::milliseconds cap = left / 2;
  const std::function<bool()> keep_going = [this, &caller] {
    return !Stopping() && !(caller.gone && caller.gone());
  };
  std::vector<std::string> voters = options_.voters;
  std::sort(voters.begin(), voters.end());  // named in that order
  std::vector<std::future<absl::StatusOr<v1::PreflightResponse>>> answers;
  for (const std::string& node : voters) {
    answers.push_back(std::async(std::launch::async, [this, node, cap, &keep_going] {
      return actions_->PreflightInstalled(node, cap, keep_going);
    }));
  }
  std::vector<NodeReadOnlyChecks> checks;
  for (size_t i = 0; i < answers.size(); ++i) {
    checks.push_back(ReadOnlyChecksOf(voters[i], answers[i].get()));
  }
  return checks;
}

absl::StatusOr<v1::PlanView> Coordinator::Command(const v1::PlanCommandRequest& request,
                                                  const std::string& who,
                                                  const CommandCaller& caller) {
  auto p = std::make_shared<Pending>();
  p->command = request;
  p->who = who;
  return Submit(std::move(p), caller);
}

}  // namespace kmsfleet
