// --plan: the explorer's leader runs the real PlanMachine (plan_machine.h)
// through the coordinator loop of sim_plan.cc, reduced to what the
// exhaustive search can enumerate (explore_world.h):
//   - the plan upgrades kPlanNodes (n2, then n3) from kPlanFromVersion to
//     kPlanToVersion; n1 is a voter of the election only;
//   - time is frozen (soak 0, every timestamp the same), and each Step's
//     observations are a fresh parity round (parity over 1 observation):
//     the coordinator observes every plan node directly, unreachable only
//     while the node is down;
//   - stage, preflight and the API server restart (not required here)
//     answer at once and pass: they precede the fence protocol;
//   - swaps, rollbacks, polls, hand-off queries and their answers are
//     messages (lost, duplicated, reordered like any other); an operation
//     ends by the schedule's `finish` event (Stable, RolledBack,
//     RollbackFailed); a request the coordinator gives up on (`expire`)
//     comes back Unavailable, and the machine issues it again;
//   - the operator starts the upgrade whenever a leader has no plan, and
//     gives no other command.
// The invariants added (besides the election's 1-3): every plan change
// carries at most one InFlight node, the one the record names; no action
// is carried out before the plan revision naming it committed; the
// election never has to refuse a slot change for want of a hand-off;
// a plan committed Completed or RolledBack leaves every plan node serving
// one version; Halted, Aborted and BreakGlass carry a reason (and a fresh
// nonce); every refusal and wait carries a reason code.
#include <algorithm>

#include "explore_world.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/reasons.h"
#include "plan_invariants.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::sim {
namespace {

// Every timestamp: time does not pass in the explorer (soak 0).
constexpr int64_t kNowMs = 1000000;
// The providers' key_id hash: no rotation happens during the plan.
constexpr char kHash[] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

std::string RequestKey(const PlanAction& a) {
  return a.node + "/" + std::string(ActionKindName(a.kind));
}

ActionResult Unavailable(const PlanAction& a, const std::string& why) {
  ActionResult r;
  r.kind = ResultKindOf(a.kind);
  r.node = a.node;
  r.revision = a.revision;
  r.operation_id = a.operation_id;
  r.status = absl::UnavailableError(why);
  return r;
}

OperatorCommand StartCommand(bool auto_rollback) {
  OperatorCommand c;
  c.kind = CommandKind::kStart;
  c.who = "CN=operator";
  c.request.target_version = kPlanToVersion;
  c.request.settings.set_soak_ms(0);
  c.request.settings.set_stabilization_ms(2000);
  c.request.settings.set_parity_observations(1);
  c.request.settings.set_auto_rollback(auto_rollback);
  c.request.settings.set_apiserver_restart_method("systemd:kube-apiserver");
  c.request.facts.set_apiserver_restart_required(false);
  return c;
}

}  // namespace

ExPlanCoordinator& ExState::WritablePlan(ExNode& node) {
  if (node.plan.use_count() > 1) node.plan = std::make_shared<ExPlanCoordinator>(*node.plan);
  return *node.plan;
}

// One coordinator round on the leader `name`, as sim_plan.cc's
// PlanCoordinate: a machine per term from the committed plan, once the
// leader's own first record committed; commit first, then act.
void ExState::PlanCoordinate(const std::string& name) {
  ExNode& node = nodes_.at(name);
  if (node.machine->role() != Role::kLeader ||
      (node.plan && node.plan->term != node.machine->term())) {
    node.plan.reset();
  }
  if (!node.plan) {
    if (!node.machine->CurrentFence()) return;
    std::optional<v1::FleetPlan> committed;
    const std::string& payload = node.machine->committed().payload();
    if (!payload.empty()) {
      absl::StatusOr<v1::FleetPlan> plan = DecodePlan(payload);
      if (!plan.ok()) return Fail("the committed plan does not decode: " + plan.status().ToString());
      committed = FleetPlanIn(payload);  // as the agents' coordinator takes it
    }
    node.plan = std::make_shared<ExPlanCoordinator>(ExPlanCoordinator{
        .term = node.machine->term(),
        .machine = PlanMachine(PlanMachineConfig{.self = name, .voters = kPlanNodes},
                               std::move(committed))});
    Log(name + ": coordinates term " + std::to_string(node.plan->term));
  }
  CommitIfDone(name);
  ExPlanCoordinator& p = WritablePlan(node);
  for (auto& [request, o] : p.outstanding) {
    if (!o.poll) continue;
    o.poll = false;
    ExMessage poll;
    poll.kind = MessageKind::kPoll;
    poll.from = name;
    poll.to = o.action.node;
    poll.fence = o.fence;
    poll.action = std::make_shared<const PlanAction>(o.action);
    Send(std::move(poll));
  }
  const bool had_command = !p.machine.committed() && !p.machine.proposal_pending();
  // As kmsfleetd's coordinator: a Step on results alone is tried on the
  // last round again, and taken only if it reads no view.
  const bool on_last_round = !had_command && !p.results.empty() && !p.last_round.empty();
  PlanInput in = Gather(p, on_last_round);
  if (had_command) in.command = StartCommand(config_.auto_rollback);
  PlanReady ready = p.machine.Step(in);
  if (ready.needs_fresh_views) {
    ObserveRound(p, in);
    ready = p.machine.Step(in);
  } else if (on_last_round) {
    for (const std::string& v : LastRoundViolations(p.machine.committed(), ready)) Fail(v);
  }
  CheckReady(ready, had_command);
  if (had_command) {
    Log(name + ": operator upgrade: " +
        (ready.refusal.ok() ? std::string("accepted") : ready.refusal.ToString()));
  }
  if (ready.plan) {
    CheckProposal(p, *ready.plan, in.views);
    return ProposePlan(name, std::move(ready));
  }
  for (const PlanAction& a : ready.actions) CarryOut(name, a);
}

// The results, and a fresh round of views or (on_last_round) the last
// round again.
PlanInput ExState::Gather(ExPlanCoordinator& p, bool on_last_round) {
  PlanInput in;
  // One instant: every round is as fresh as a start needs.
  in.now_unix_ms = in.now_mono_ms = in.views_asked_mono_ms = kNowMs;
  in.results = std::move(p.results);
  p.results.clear();
  in.random = 0x5eed;
  OpenBaoProbe probe;
  probe.address = "https://bao.explore:8200";
  probe.status = 200;
  in.openbao = probe;
  if (!on_last_round) {
    ObserveRound(p, in);
    return in;
  }
  in.views = p.last_round;
  in.views_fresh = false;
  return in;
}

// GetNodeState of every plan node, fresh; a node that is down does not
// answer.
void ExState::ObserveRound(ExPlanCoordinator& p, PlanInput& in) {
  in.views.clear();
  in.views_fresh = true;
  ++observations_;
  for (const std::string& name : kPlanNodes) {
    const ExNode& node = nodes_.at(name);
    NodeView view;
    view.node = name;
    if (!node.machine) {
      view.unreachable_since_unix_ms = kNowMs;
      in.views.push_back(std::move(view));
      continue;
    }
    const bool serving = !Disrupted(node);
    v1::NodeState s;
    s.set_node(name);
    s.set_provider_version(node.version);
    s.set_apiserver_restart_configured(true);  // the plans ask for restarts
    s.set_live(serving);
    s.set_ready(serving);
    if (serving) {
      s.set_key_id_hash_metric(kHash);
      s.set_key_id_hash_socket(kHash);
    }
    s.set_rotation_state("active");
    s.set_key_version(3);
    s.set_observed_at_unix_ms(observations_);
    view.state = std::move(s);
    view.registry = RegistryFacts{"keyregistry.openbao-kms/v1alpha1", 0};
    in.views.push_back(std::move(view));
  }
  p.last_round = in.views;
}

void ExState::ProposePlan(const std::string& name, PlanReady ready) {
  ExNode& node = nodes_.at(name);
  const v1::FleetPlan& plan = *ready.plan;
  absl::StatusOr<std::string> payload = EncodePlan(plan);
  if (!payload.ok()) return Fail("a proposed plan does not encode: " + payload.status().ToString());
  absl::StatusOr<ElectionReady> proposed = Writable(node).Propose(plan.in_flight(), *payload);
  ExPlanCoordinator& p = WritablePlan(node);
  if (!proposed.ok()) {
    if (ReasonOf(proposed.status()) == reason::kHandoffPending) {
      return Fail("invariant 3 (hand-off): " + name + "'s plan machine moved the slot to '" +
                  plan.in_flight() + "' without a released hand-off: " +
                  std::string(proposed.status().message()));
    }
    p.machine.Abandon();
    return Log(name + ": could not propose: " + std::string(ReasonOf(proposed.status())));
  }
  p.pending_index = node.machine->record().index();
  p.pending_plan = plan;
  p.held = std::move(ready.actions);
  Log(name + ": propose plan r" + std::to_string(plan.revision()) + " " +
      std::string(PlanPhaseName(plan.phase())) +
      " in_flight=" + (plan.in_flight().empty() ? "none" : plan.in_flight()));
  Handle(name, *proposed);
  CommitIfDone(name);
}

// Commit first: the held actions go out once the proposal committed.
void ExState::CommitIfDone(const std::string& name) {
  ExNode& node = nodes_.at(name);
  if (!node.plan || !node.plan->pending_index) return;
  const v1::PlanRecord& committed = node.machine->committed();
  if (committed.term() != node.plan->term || committed.index() < *node.plan->pending_index) return;
  ExPlanCoordinator& p = WritablePlan(node);
  p.machine.Committed(*p.pending_plan);
  p.pending_index.reset();
  p.pending_plan.reset();
  std::vector<PlanAction> held = p.machine.ReleaseCommitted(std::move(p.held), kNowMs, kNowMs);
  p.held.clear();
  for (const PlanAction& a : held) CarryOut(name, a);
}

void ExState::CarryOut(const std::string& name, const PlanAction& a) {
  if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) {
    return Log(name + ": reports " + std::string(ActionKindName(a.kind)) + " [" +
               ReasonOf(a.why) + "]");
  }
  ExNode& leader = nodes_.at(name);
  ExPlanCoordinator& p = WritablePlan(leader);
  const std::optional<v1::FleetPlan>& plan = p.machine.committed();
  const bool disruptive = a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode;
  if (!plan || plan->revision() != a.revision || (disruptive && plan->in_flight() != a.node)) {
    return Fail("commit first: " + std::string(ActionKindName(a.kind)) + " on " + a.node +
                " names plan revision " + std::to_string(a.revision) +
                " but the committed plan is " +
                (plan ? "revision " + std::to_string(plan->revision()) + " with '" +
                            plan->in_flight() + "' in flight"
                      : std::string("none")));
  }
  std::optional<v1::Fence> fence = leader.machine->CurrentFence();
  if (!fence) {
    p.results.push_back(Unavailable(a, "no fence yet on " + name));
    return;
  }
  if (a.kind == ActionKind::kStage || a.kind == ActionKind::kPreflight ||
      a.kind == ActionKind::kRestartApiServer) {
    // Outside the fence protocol: answered at once, and passing.
    ActionResult r;
    r.kind = ResultKindOf(a.kind);
    r.node = a.node;
    r.revision = a.revision;
    if (!nodes_.at(a.node).machine) {
      r.status = absl::UnavailableError(a.node + " is down");
    } else if (a.kind == ActionKind::kStage) {
      r.previous_artifact_verified = true;
    } else if (a.kind == ActionKind::kPreflight) {
      r.doctor = {a.node, true, true, ""};
      RotationReport report;
      report.name = "rotation-plan";
      report.transit_metadata_status = "pass";
      report.rotation_state = "active";
      r.rotation.node = a.node;
      r.rotation.report = report;
      r.rotation.metric_state = "active";
    }
    Log(name + ": " + std::string(ActionKindName(a.kind)) + " " + a.node + ": " +
        (r.status.ok() ? "done" : "unavailable"));
    p.results.push_back(std::move(r));
    return;
  }
  ExMessage m;
  // A follow-only swap asks how the operation stands and starts nothing.
  m.kind = disruptive && a.start_allowed ? MessageKind::kSwap
           : disruptive                  ? MessageKind::kPoll
                                         : MessageKind::kQuery;
  m.from = name;
  m.to = a.node;
  m.fence = *fence;
  m.action = std::make_shared<const PlanAction>(a);
  if (disruptive && a.start_allowed) last_swap_[a.node] = m.action;
  p.outstanding[RequestKey(a)] = {.action = a, .fence = *fence};
  Send(std::move(m));
}

// Whose certificate `m` came under, for the agent's leader check
// (CheckSentByLeader): a member's own, or for the adversary's forgery the
// key of the leader `node` follows, the strongest it could hold, so that
// the fence guard alone stands between a forged fence and the provider
// (--mutate skip-fence-guard shows it does).
namespace {

std::string SentBy(const ExNode& node, const ExMessage& m) {
  return m.from == "adversary" ? node.machine->leader() : m.from;
}

}  // namespace

// The agent's side of a swap or rollback (sim_executor.cc's
// HandlePlanSwap): the fence guard, then a known operation answers how it
// is, a new one must be the plan's own step, sent by the leader the node
// follows (BindCommandToPlan), and the node free.
void ExState::PlanSwap(ExNode& node, const ExMessage& m) {
  const PlanAction& a = *m.action;
  node.guard->ObserveTerm(node.machine->term());
  absl::Status s = config_.mutation == Mutation::kSkipFenceGuard && m.fence.in_flight() == m.to
                       ? absl::OkStatus()
                       : node.guard->AdmitSwap(m.fence, node.machine->committed());
  ActionResult r;
  r.kind = ResultKind::kOperation;
  r.node = m.to;
  r.revision = a.revision;
  r.operation_id = a.operation_id;
  if (!s.ok()) {
    note_ = ReasonOf(s);
    if (note_.empty()) Fail("a refused swap carries no reason code: " + s.ToString());
    Log(m.to + ": refused [" + note_ + "]");
    r.status = s;
    return PlanReply(m, std::move(r), false);
  }
  node.fence_durable = node.guard->state();  // persisted before acting
  const bool known = (node.journal && node.journal->operation_id == a.operation_id) ||
                     node.ended.contains(a.operation_id);
  if (!known) {
    if (node.running) {
      Log(m.to + ": busy with " + node.journal->operation_id);
      // As Executor::Reserve: another operation holds the node.
      r.status = MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                           m.to + " is busy with " + node.journal->operation_id);
      return PlanReply(m, std::move(r), false);
    }
    NodeCommand command{.kind = a.kind == ActionKind::kRollbackNode ? NodeCommand::Kind::kRollback
                                                                    : NodeCommand::Kind::kSwap,
                        .operation_id = a.operation_id,
                        .version = a.version,
                        .of_operation_id = a.of_operation_id,
                        .stabilization_ms = a.stabilization_ms,
                        .expected_staged_digest = a.expected_staged_digest,
                        .sent_by = SentBy(node, m)};
    absl::StatusOr<PlanBinding> plan = BindCommandToPlan(
        node.machine->committed(), m.to, command,
        LeaderOfTerm{.leader = node.machine->leader(), .term = node.machine->term()});
    if (!plan.ok()) {
      note_ = ReasonOf(plan.status());
      Log(m.to + ": refused [" + note_ + "]");
      r.status = plan.status();
      return PlanReply(m, std::move(r), false);
    }
    CheckAdmitted(m.to, m.fence);
    node.running = true;
    SwapJournal j;
    j.operation_id = a.operation_id;
    j.phase = SwapPhase::kStopped;
    j.fence_term = m.fence.term();
    j.fence_index = m.fence.index();
    node.journal = j;
    node.op_prev = node.version;
    node.op_target = a.version;
    Log(m.to + ": admitted; operation " + a.operation_id + " starts " + node.op_prev + " -> " +
        a.version);
  } else {
    Log(m.to + ": admitted; operation " + a.operation_id + " already " +
        (node.running && node.journal->operation_id == a.operation_id ? "runs" : "ended"));
  }
  ReplyWithOperation(node, m, a);
}

// Answers with how operation `a` stands: running, ended (as its journal
// says), or unknown to the node.
void ExState::ReplyWithOperation(const ExNode& node, const ExMessage& m, const PlanAction& a) {
  bool running = false;
  ActionResult answer = OperationResult(node, a, running);
  const bool ended = !running && node.ended.contains(a.operation_id);
  PlanReply(m, std::move(answer), running, ended);
}

// GetOperation: how the operation `a` names ended, or that it still runs.
ActionResult ExState::OperationResult(const ExNode& node, const PlanAction& a,
                                      bool& running) const {
  ActionResult r;
  r.kind = ResultKind::kOperation;
  r.node = a.node;
  r.revision = a.revision;
  r.operation_id = a.operation_id;
  running = node.running && node.journal->operation_id == a.operation_id;
  auto it = node.ended.find(a.operation_id);
  if (running || it == node.ended.end()) return r;  // kNotFound
  // An end before the stop is the swap's own doctor failing.
  SetEndedOutcome(r, it->second, it->second < SwapPhase::kStopped ? reason::kDoctorFailed : "");
  return r;
}

void ExState::PlanReply(const ExMessage& m, ActionResult r, bool running, bool ended) {
  if (!nodes_.contains(m.from)) return;  // the adversary's own command
  ExMessage answer;
  answer.kind = MessageKind::kResult;
  answer.from = m.to;
  answer.to = m.from;
  answer.fence = m.fence;
  answer.action = m.action;
  answer.result = std::make_shared<const ActionResult>(std::move(r));
  answer.running = running;
  answer.ended = ended;
  Send(std::move(answer));
}

// A swap's or poll's answer at the coordinator (sim_plan.cc's
// HandleResult), fed to the machine's next Step.
void ExState::PlanResult(const std::string& name, const ExMessage& m) {
  ExNode& leader = nodes_.at(name);
  if (!leader.plan || leader.plan->term != m.fence.term() ||
      leader.machine->role() != Role::kLeader) {
    return Log(name + ": not its coordinator's, ignored");
  }
  ExPlanCoordinator& p = WritablePlan(leader);
  auto it = p.outstanding.find(RequestKey(*m.action));
  const bool awaited = it != p.outstanding.end() &&
                       it->second.action.revision == m.action->revision &&
                       it->second.action.operation_id == m.action->operation_id;
  if (m.running) {
    if (awaited) it->second.poll = true;
    return;
  }
  const ActionResult& r = *m.result;
  // A refusal of the command, not an operation that ended before its stop
  // (that is a result: the node's step failed, its provider untouched).
  if (!r.status.ok() && !m.ended) {
    const v1::PlanRecord& committed = leader.machine->committed();
    if (awaited && ReasonOf(r.status) == reason::kStaleFence &&
        m.fence.term() == committed.term() && m.fence.index() == committed.index()) {
      // Handed off at the current record: the operation says whether the
      // swap ran.
      it->second.stale_fence = true;
      it->second.poll = true;
      return;
    }
    // Any other refusal reaches the machine as FleetActions hands it on
    // (CommandRefusalForPlan): a busy node is asked again, a fence refusal
    // is sent again under the current fence, any other fails the node's
    // step with its provider untouched.
    if (awaited) p.outstanding.erase(it);
    ActionResult refused = r;
    refused.status = CommandRefusalForPlan(r.status);
    p.results.push_back(std::move(refused));
    return;
  }
  if (awaited && it->second.stale_fence && r.outcome == OperationOutcome::kNotFound &&
      !m.ended) {
    const std::string node = it->second.action.node;
    p.outstanding.erase(it);
    RenewFence(name, node);
    ActionResult retry = r;
    retry.status = absl::UnavailableError(node + " handed off before the swap arrived");
    WritablePlan(leader).results.push_back(std::move(retry));
    return;
  }
  if (awaited) p.outstanding.erase(it);
  p.results.push_back(r);
}

// Commits the same plan again for a fresh fence (sim_plan.cc).
void ExState::RenewFence(const std::string& name, const std::string& in_flight) {
  ExNode& leader = nodes_.at(name);
  const v1::PlanRecord committed = leader.machine->committed();
  if (leader.plan->pending_index || committed.in_flight() != in_flight) return;
  absl::StatusOr<ElectionReady> proposed =
      Writable(leader).Propose(committed.in_flight(), committed.payload());
  if (!proposed.ok()) return;
  Log(name + ": commits the same plan again for a fresh fence for " + in_flight);
  Handle(name, *proposed);
}

// The hand-off answer: recorded in the election before the machine sees
// it, and only at the record it was asked under.
void ExState::PlanReleased(const std::string& name, const ExMessage& m) {
  ExNode& leader = nodes_.at(name);
  if (leader.machine->role() != Role::kLeader) return Log(name + ": not leading, ignored");
  if (!leader.plan || leader.plan->term != m.fence.term()) {
    return Log(name + ": not its coordinator's, ignored");
  }
  ExPlanCoordinator& p = WritablePlan(leader);
  p.outstanding.erase(RequestKey(*m.action));
  ActionResult r;
  r.kind = ResultKind::kHandOff;
  r.node = m.from;
  r.revision = m.action->revision;
  const v1::PlanRecord& committed = leader.machine->committed();
  if (m.fence.term() != committed.term() || m.fence.index() != committed.index()) {
    r.status = absl::UnavailableError("hand-off answered under an earlier record; ask again");
    p.results.push_back(std::move(r));
    return Log(name + ": answer under an earlier record; asks again");
  }
  if (!Writable(leader).RecordRelease(m.from, m.fence.term(), m.fence.index(), m.outcome) &&
      m.released) {
    r.status = absl::UnavailableError("hand-off answered under a record being replaced");
    WritablePlan(leader).results.push_back(std::move(r));
    return Log(name + ": answer under a record being replaced; asks again");
  }
  // As PeerNode::AskRelease and the coordinator read it.
  v1::ReleaseReply reply;
  reply.set_released(m.released);
  reply.set_outcome(m.outcome);
  SetHandOffResult(ReadReleaseReply(reply, m.from), r);
  WritablePlan(leader).results.push_back(std::move(r));
  Log(name + ": recorded the answer");
}

bool ExState::Expire(const std::string& name, const std::string& request) {
  auto n = nodes_.find(name);
  if (n == nodes_.end() || !n->second.machine || !n->second.plan ||
      n->second.plan->term != n->second.machine->term()) {
    return false;
  }
  ExPlanCoordinator& p = WritablePlan(n->second);
  auto it = p.outstanding.find(request);
  if (it == p.outstanding.end()) return false;
  p.results.push_back(Unavailable(it->second.action, it->second.action.node +
                                                         " did not answer"));
  p.outstanding.erase(it);
  Log(name + ": gives up on " + request);
  return true;
}

// The adversary replays the newest real swap sent to `to`, or, before
// any, a command of its own making.
std::shared_ptr<const PlanAction> ExState::AdversaryAction(const std::string& to) const {
  auto it = last_swap_.find(to);
  if (it != last_swap_.end()) return it->second;
  auto forged = std::make_shared<PlanAction>();
  forged->kind = ActionKind::kSwap;
  forged->node = to;
  forged->version = kPlanToVersion;
  forged->operation_id = "forged." + to;
  return forged;
}

// ---- invariants ----

void ExState::CheckReady(const PlanReady& ready, bool had_command) {
  if (!ready.refusal.ok() && ReasonOf(ready.refusal).empty()) {
    Fail("a refusal without a reason code: " + ready.refusal.ToString());
  }
  if (!ready.refusal.ok() && !had_command && ReasonOf(ready.refusal) != reason::kPlanTooLarge) {
    Fail("a refusal without a command: " + ready.refusal.ToString());
  }
  if (!ready.blocked.ok() && ReasonOf(ready.blocked).empty()) {
    Fail("a wait without a reason code: " + ready.blocked.ToString());
  }
  for (const PlanAction& a : ready.actions) {
    if ((a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) &&
        ReasonOf(a.why).empty()) {
      Fail("a " + std::string(ActionKindName(a.kind)) + " without a reason code");
    }
  }
}

// A proposal, before it goes to the election: one node in flight at most,
// the one the plan names; a new break-glass nonce; a plan finishes on what
// it saw: one version, one key_id hash.
void ExState::CheckProposal(const ExPlanCoordinator& p, const v1::FleetPlan& plan,
                            const std::vector<NodeView>& views) {
  int in_flight = 0;
  for (const std::string& v : ProposalViolations(p.machine.committed(), plan, views, kHash,
                                                 in_flight)) {
    Fail(v);
  }
}

// As each plan record commits: its plan names the record's in-flight
// node; Completed and RolledBack leave every plan node serving the one
// version (checked against the providers); stops carry reasons.
void ExState::CheckPlanCommitted(const v1::PlanRecord& record) {
  if (record.payload().empty()) return;
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(record.payload());
  if (!plan.ok()) return Fail("a committed plan does not decode: " + plan.status().ToString());
  if (plan->in_flight() != record.in_flight()) {
    return Fail("record " + std::to_string(record.index()) + " puts '" + record.in_flight() +
                "' in flight but its plan names '" + plan->in_flight() + "'");
  }
  if (record.index() >= plan_index_) {
    plan_index_ = record.index();
    plan_phase_ = std::string(PlanPhaseName(plan->phase()));
  }
  switch (plan->phase()) {
    case v1::PLAN_PHASE_COMPLETED:
    case v1::PLAN_PHASE_ROLLED_BACK: {
      const std::string& want = plan->phase() == v1::PLAN_PHASE_COMPLETED
                                    ? plan->target_version()
                                    : plan->version_before();
      for (const std::string& name : kPlanNodes) {
        const ExNode& n = nodes_.at(name);
        if (Disrupted(n) || n.version != want) {
          return Fail("invariant 5: plan " + std::string(PlanPhaseName(plan->phase())) +
                      " committed at " + std::to_string(record.index()) + " but " + name + " " +
                      (Disrupted(n) ? "is out of service" : "runs " + n.version) + ", not " +
                      want);
        }
      }
      return;
    }
    case v1::PLAN_PHASE_BREAK_GLASS:
      if (plan->break_glass().reason().empty() || plan->break_glass().nonce().empty()) {
        Fail("invariant 5: BreakGlass without a reason or nonce at " +
             std::to_string(record.index()));
      }
      return;
    case v1::PLAN_PHASE_HALTED:
    case v1::PLAN_PHASE_ABORTED:
      if (plan->halt().reason().empty()) {
        Fail("invariant 5: " + std::string(PlanPhaseName(plan->phase())) +
             " without a reason at " + std::to_string(record.index()));
      }
      return;
    default:
      return;
  }
}

}  // namespace kmsfleet::sim
