// --plan (issue 9): the fleet plan machine runs on the elected coordinator,
// through the loop of docs/fleet-plan.md §1. Each leader, once its first
// record has committed, builds a PlanMachine from the committed record's
// payload (DecodePlan) and steps it every tick with views of every voter
// (unreachable across partitions, crashes and lost calls), an OpenBao
// probe, an operator command and the results that came back. A plan
// change is proposed through ElectionMachine::Propose (in_flight =
// plan.in_flight, payload = EncodePlan) and its actions are carried out
// only once it commits, each under the fence of the committed record; a
// hand-off answer is recorded with RecordRelease before the machine may
// move the slot. Requests that get no answer come back Unavailable.
//
// Checked after every event, besides the election's invariants 1-3:
//   - invariant 3: at most one provider down; a swap admitted only under a
//     committed record naming the node; no action carried out before the
//     plan revision naming it committed; the election never has to refuse
//     a slot change for want of a hand-off (HANDOFF_PENDING);
//   - invariant 5: a plan committed Completed or RolledBack leaves every
//     voter's provider serving one version (checked against the simulated
//     providers, and at the end of the run with one key_id hash too);
//     Halted, Aborted and BreakGlass name their reason;
//   - every refusal (command, gate, fence) carries a reason code;
//   - a swap or rollback that may start, and a kube-apiserver restart, is
//     sent only while every other voter's provider serves as the
//     coordinator last saw it (providers also go down by themselves now
//     and then: OutageFault);
//   - a coordinator whose cluster.voters was edited (one voter short, while
//     faults run; restored and restarted when they stop) starts no swap or
//     rollback: it does not observe every plan node;
//   - liveness: after faults stop, the started plan settles (Completed,
//     RolledBack, Aborted, or Halted/BreakGlass when the operator does not
//     step in) within plan_liveness_ticks.
#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "kmsfleet/core/operation_result.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "plan_invariants.h"
#include "sim_world.h"

namespace kmsfleet::sim {
namespace {

std::string CommandName(CommandKind kind) {
  switch (kind) {
    case CommandKind::kStart: return "upgrade";
    case CommandKind::kPause: return "pause";
    case CommandKind::kResume: return "resume";
    case CommandKind::kAbort: return "abort";
    case CommandKind::kRollback: return "rollback";
    case CommandKind::kAckBreakGlass: return "ack-break-glass";
  }
  return "unknown";
}

std::string RequestKey(const PlanAction& a) {
  return a.node + "/" + std::string(ActionKindName(a.kind));
}

// A halt that resuming would only repeat: the rollback guards refuse.
bool RefusedForGood(const v1::FleetPlan& plan) {
  const std::string& r = plan.halt().reason();
  return r.starts_with("ROLLBACK_REFUSED") || r == reason::kRegistryUnknown;
}

}  // namespace

void World::DrawPlanShape() {
  plan_fault_ticks_ = Pick(50, 2 * options_.fault_ticks);
  op_fail_rate_ = 0.3 * Unit();
  action_fail_rate_ = 0.05 * Unit();
  rollback_failed_rate_ = 0.08 * Unit();
  auto_rollback_ = Chance(0.3);
  restart_required_ = Chance(0.3);
  operator_resolves_ = Chance(0.5);
  wire_format_ = compat_rng_.Uniform(0, 3) == 0;
  // Half the seeds without the adversary: its traffic crowds out the plan's
  // own races (late answers, delayed swaps across plan changes).
  if (Chance(0.5)) adversary_rate_ = 0;
  for (auto& [name, node] : nodes_) {
    node.provider.version = kPlanFrom;
    node.provider.hash = SimHash(0);
  }
}

SimResult World::RunPlan() {
  for (now_ = 1; now_ <= plan_fault_ticks_ && failure_.empty(); ++now_) {
    InjectFaults();
    Adversary();
    PlanFaults();
    Step();
  }
  Heal();
  for (auto& [name, node] : nodes_) node.provider.rotation_pending = false;
  const int64_t healed = now_;
  const int64_t deadline = now_ + options_.plan_liveness_ticks;
  bool settled = false;
  for (; now_ <= deadline && failure_.empty() && !settled; ++now_) {
    Step();
    settled = PlanSettled();
  }
  if (failure_.empty() && !settled) {
    Fail("liveness: the plan did not settle within " +
         std::to_string(options_.plan_liveness_ticks) + " ticks after faults stopped: " +
         (last_plan_ ? std::string(PlanPhaseName(last_plan_->phase())) : "no plan") +
         ", waiting on: " + last_blocked_);
  }
  if (failure_.empty()) {
    counters_.max_settle_ticks = now_ - healed;
    switch (last_plan_->phase()) {
      case v1::PLAN_PHASE_COMPLETED: ++counters_.plans_completed; break;
      case v1::PLAN_PHASE_ROLLED_BACK: ++counters_.plans_rolled_back; break;
      case v1::PLAN_PHASE_ABORTED: ++counters_.plans_aborted; break;
      case v1::PLAN_PHASE_HALTED: ++counters_.plans_halted; break;
      default: ++counters_.plans_break_glass; break;
    }
    const v1::PlanPhase phase = last_plan_->phase();
    if (phase == v1::PLAN_PHASE_COMPLETED || phase == v1::PLAN_PHASE_ROLLED_BACK) {
      CheckConverged(*last_plan_, "at the end of the run", true);
    }
  }
  SimResult result;
  result.ok = failure_.empty();
  result.failure = failure_;
  result.counters = counters_;
  return result;
}

bool World::PlanSettled() const {
  if (!last_plan_) return false;
  for (const auto& [name, node] : nodes_) {
    if (!node.provider.next_hash.empty()) return false;  // a rotation still lands
  }
  const v1::PlanPhase phase = last_plan_->phase();
  if (IsFinished(phase)) return true;
  return !operator_resolves_ &&
         (phase == v1::PLAN_PHASE_HALTED || phase == v1::PLAN_PHASE_BREAK_GLASS);
}

// Every leader coordinates (a deposed one may not know it yet); the
// operator talks to the one of the newest term.
void World::PlanLeaders() {
  Node* newest = nullptr;
  for (auto& [name, node] : nodes_) {
    if (!node.up) continue;
    if (node.machine->role() != Role::kLeader) {
      node.coordinator.plan.reset();
      continue;
    }
    if (newest == nullptr || node.machine->term() > newest->machine->term()) newest = &node;
  }
  std::optional<OperatorCommand> command;
  if (newest != nullptr && newest->coordinator.plan &&
      newest->coordinator.plan->term == newest->machine->term()) {
    // A coordinator waiting on a slow round takes no command meanwhile.
    if (!newest->coordinator.plan->slow_round) {
      command = Operator(newest->coordinator.plan->machine->committed());
    }
    // Voters are changed only with no plan under way (docs/election.md):
    // no plan is started on a coordinator whose list was edited.
    if (command && command->kind == CommandKind::kStart &&
        newest->coordinator.plan->voters != voters_) {
      command.reset();
    }
  }
  for (auto& [name, node] : nodes_) {
    if (!node.up || node.machine->role() != Role::kLeader) continue;
    PlanCoordinate(node, &node == newest ? command : std::nullopt);
  }
}

OperatorCommand World::StartCommand() {
  OperatorCommand c;
  c.kind = CommandKind::kStart;
  c.who = "CN=operator";
  c.request.target_version = kPlanTo;
  c.request.settings.set_soak_ms(Chance(0.5) ? 0 : 1000);
  c.request.settings.set_stabilization_ms(2000);
  c.request.settings.set_auto_rollback(auto_rollback_);
  c.request.settings.set_apiserver_restart_method("systemd:kube-apiserver");
  c.request.facts.set_apiserver_restart_required(restart_required_);
  if (wire_format_) {
    // A planned wire-format change, acknowledged: its nodes keep a target
    // that was ready, and no rollback crosses it.
    c.request.facts.set_wire_format_change(true);
    c.request.facts.set_migration_planned(true);
    c.request.acknowledgements.push_back(reason::kAckWireFormatChange);
  }
  // Some operators have judged their registry state and acknowledge a
  // checkpoint that is not current.
  if (checkpoint_rng_.Uniform(0, 3) == 0) {
    c.request.acknowledgements.push_back(reason::kAckStateCheckpointNotCurrent);
  }
  return c;
}

// The operator: starts an upgrade early, and while faults last pauses,
// resumes, aborts, rolls back and acknowledges break-glass at random
// (sometimes with a wrong nonce, sometimes before repairing the node).
// Once faults stop it resumes a paused
// plan and, on seeds where it steps in, repairs and acknowledges
// break-glass and resumes a halted plan (or aborts it when resuming would
// only halt again).
std::optional<OperatorCommand> World::Operator(const std::optional<v1::FleetPlan>& plan) {
  OperatorCommand c;
  c.who = "CN=operator";
  if (!plan) {
    if (!Chance(0.1)) return std::nullopt;
    return StartCommand();
  }
  const v1::PlanPhase phase = plan->phase();
  auto ack = [&](bool right_nonce) {
    // While faults last, some operators acknowledge before the repair is
    // done: the node then does not release its slot and break-glass comes
    // back with a new nonce.
    auto it = nodes_.find(plan->break_glass().node());
    if (it != nodes_.end() && (!faults_ || Chance(0.7))) Repair(it->second);
    c.kind = CommandKind::kAckBreakGlass;
    c.nonce = right_nonce ? plan->break_glass().nonce() : "00000000deadbeef";
    return c;
  };
  if (IsFinished(phase)) {
    if (!faults_ || !Chance(0.004)) return std::nullopt;
    if (phase == v1::PLAN_PHASE_COMPLETED && Chance(0.5)) {
      c.kind = CommandKind::kRollback;
      return c;
    }
    return StartCommand();
  }
  if (!faults_) {
    if (!Chance(0.1)) return std::nullopt;  // the operator answers in a second or so
    if (phase == v1::PLAN_PHASE_PAUSED) {
      c.kind = CommandKind::kResume;
      return c;
    }
    if (!operator_resolves_) return std::nullopt;
    if (phase == v1::PLAN_PHASE_BREAK_GLASS) return ack(true);
    if (phase != v1::PLAN_PHASE_HALTED) return std::nullopt;
    const bool give_up = RefusedForGood(*plan) || resume_refused_ || tail_resumes_ >= 3;
    c.kind = give_up ? CommandKind::kAbort : CommandKind::kResume;
    if (!give_up) ++tail_resumes_;
    return c;
  }
  const double roll = Unit();
  if (phase == v1::PLAN_PHASE_BREAK_GLASS && roll < 0.03) return ack(roll > 0.006);
  if (roll < 0.004) c.kind = CommandKind::kPause;
  else if (roll < 0.010) c.kind = CommandKind::kResume;
  else if (roll < 0.011) c.kind = CommandKind::kAbort;
  else if (roll < 0.013) c.kind = CommandKind::kRollback;
  else if (roll < 0.014) return ack(false);
  else return std::nullopt;
  return c;
}

void World::PlanCoordinate(Node& leader, std::optional<OperatorCommand> command) {
  CoordinatorState& c = leader.coordinator;
  if (c.plan && c.plan->term != leader.machine->term()) c.plan.reset();
  if (!c.plan) {
    // One machine per term, from the committed plan, once the leader's own
    // first record committed (its fence exists).
    if (!leader.machine->CurrentFence()) return;
    std::optional<v1::FleetPlan> committed;
    const std::string& payload = leader.machine->committed().payload();
    if (!payload.empty()) {
      absl::StatusOr<v1::FleetPlan> plan = DecodePlan(payload);
      if (!plan.ok()) {
        return Fail("the committed plan does not decode: " + plan.status().ToString());
      }
      committed = FleetPlanIn(payload);  // as the agents' coordinator takes it
    }
    c.plan = std::make_shared<PlanCoordinator>();
    c.plan->term = leader.machine->term();
    c.plan->voters = voters_;
    if (faults_ && Chance(0.05)) {
      // A voter edited out of this node's cluster.voters: the plan must
      // give no slot while its nodes are not the coordinator's voters.
      std::string dropped = RandomMember();
      if (dropped != leader.name) {
        std::erase(c.plan->voters, dropped);
        ++counters_.stale_voter_terms;
        Trace(leader.name + " coordinates without voter " + dropped);
      }
    }
    c.plan->machine = std::make_unique<PlanMachine>(
        PlanMachineConfig{.self = leader.name, .voters = c.plan->voters}, std::move(committed));
    Trace(leader.name + " coordinates term " + std::to_string(c.plan->term));
  }
  std::shared_ptr<PlanCoordinator> p = c.plan;  // alive even if the leader crashes
  CommitIfDone(leader, *p);
  GiveUpOnCommit(*p);
  // kmsfleetd adopts at the start of an iteration and proposes after a
  // round of observations: a late commit can land in between. Here it is
  // adopted on even ticks only, so that on odd ones the Step decides on
  // what the machine held before it.
  if (!p->pending_index && now_ % 2 == 0) AdoptCommitted(leader, *p);
  ExpireRequests(leader, *p);
  if (!command && WaitsOnSlowRound(leader, *p)) return;
  // Like kmsfleetd's coordinator, a Step on results alone is tried on the
  // last round again (here on half of them), and so is every Step right
  // after a change that sent no action: the machine takes it only if it
  // reads no view.
  const bool after_change = std::exchange(p->after_change, false);
  // A slow round that came in is decided on first.
  const bool on_last_round =
      !command && !p->slow_round && ((!p->results.empty() && Chance(0.5)) || after_change);
  PlanInput in = Gather(leader, *p, on_last_round);
  const bool had_command = command.has_value();
  if (had_command) ++counters_.commands;
  in.command = std::move(command);
  PlanReady ready = p->machine->Step(in);
  if (!in.views_fresh) {
    if (ready.needs_fresh_views) {
      ++counters_.fresh_rounds_asked;
      ObserveRound(leader, *p, in);
      ready = p->machine->Step(in);
    } else {
      ++(in.results.empty() ? counters_.steps_after_change : counters_.steps_on_last_round);
      CheckLastRoundStep(*p, ready);
    }
  }
  CheckReady(ready, had_command);
  if (ReasonOf(ready.blocked) == reason::kObservationsTooOld) ++counters_.too_old_blocks;
  CheckStaleVoters(*p, ready);
  CheckStartsOnlyWhileMoving(*p, ready);
  CheckWarmUp(*p);
  if (!ready.blocked.ok()) last_blocked_ = ready.blocked.ToString();
  // IssueApiServerRestart's wait (its message is the only mark of it).
  if (absl::StartsWith(ready.blocked.message(), "kube-apiserver on ")) ++counters_.restarts_held;
  if (had_command) {
    if (!ready.refusal.ok()) {
      ++counters_.commands_refused;
      if (in.command->kind == CommandKind::kResume &&
          ReasonOf(ready.refusal) != reason::kPlanChangePending) {
        resume_refused_ = true;
      }
    }
    Trace(leader.name + " operator " + CommandName(in.command->kind) + " " + in.command->nonce +
          ": " + (ready.refusal.ok() ? "accepted" : ready.refusal.ToString()));
  }
  if (ready.plan) {
    CheckProposal(*p, *ready.plan, in.views);
    return ProposePlan(leader, p, std::move(ready));
  }
  for (const PlanAction& a : ready.actions) CarryOut(leader, *p, a);
}

PlanInput World::Gather(const Node& leader, PlanCoordinator& p, bool on_last_round) {
  if (p.slow_round) {
    // The slow round is in: its views are as old as its asking, and it
    // carries the results taken before it; later ones wait for the next
    // Step, as in kmsfleetd.
    PlanInput in = std::move(p.slow_round->round);
    p.slow_round.reset();
    in.now_unix_ms = in.now_mono_ms = now_ * kTickMs;
    in.random = rng_.Next();
    p.last_round = {in.views, *in.openbao};
    p.last_round_asked_ms = in.views_asked_mono_ms;
    return in;
  }
  PlanInput in;
  in.now_unix_ms = in.now_mono_ms = now_ * kTickMs;
  in.results = std::move(p.results);
  p.results.clear();
  in.random = rng_.Next();
  if (on_last_round && p.last_round) {
    in.views = p.last_round->first;
    in.openbao = p.last_round->second;
    in.views_asked_mono_ms = p.last_round_asked_ms;
    in.views_fresh = false;
    return in;
  }
  ObserveRound(leader, p, in);
  return in;
}

// kmsfleetd's round waits for every voter's answer: one slow to answer
// (a provider's /metrics slow, a loaded node) holds the Step up while the
// others' views age. On some seeds, while faults last and the plan rolls
// forward or back, a round now and then (one Step in ten; one in two while
// a kube-apiserver restart is due) is taken at once, with the results
// that came before it, and decided on 0.3-2.5 s later; meanwhile this
// coordinator decides nothing (kmsfleetd's loop is in the round). Not
// while a change commits: kmsfleetd waits for the commit before its next
// round. True while it waits.
bool World::WaitsOnSlowRound(const Node& leader, PlanCoordinator& p) {
  if (p.slow_round) return now_ < p.slow_round->due;
  // Where starts are decided: a plan rolling forward or back.
  const std::optional<v1::FleetPlan>& plan = p.machine->committed();
  const bool starts = plan && (plan->phase() == v1::PLAN_PHASE_ROLLING ||
                               plan->phase() == v1::PLAN_PHASE_ROLLING_BACK);
  // Most often where a Step sends a start of its own: a kube-apiserver
  // restart due.
  const bool restart_due =
      starts && std::any_of(plan->nodes().begin(), plan->nodes().end(), [&](const v1::PlanNode& n) {
        return n.node() == plan->in_flight() &&
               n.stage() == v1::PLAN_STEP_STAGE_RESTARTING_APISERVER;
      });
  if (!slow_rounds_ || !faults_ || !starts || p.pending_index ||
      slow_round_rng_.Uniform(0, 99) >= (restart_due ? 50 : 10)) {
    return false;
  }
  PlanCoordinator::SlowRound slow;
  slow.round.results = std::move(p.results);
  p.results.clear();
  ObserveRound(leader, p, slow.round);
  slow.due = now_ + slow_round_rng_.Uniform(3, 25);
  if (!slow.round.views.empty()) {
    NodeView& slowest = slow.round.views[static_cast<size_t>(
        slow_round_rng_.Uniform(0, static_cast<int64_t>(slow.round.views.size()) - 1))];
    slowest.answered_in_ms = (slow.due - now_) * kTickMs;
  }
  p.slow_round = std::move(slow);
  ++counters_.slow_rounds;
  Trace(leader.name + " waits on a slow round until t=" + std::to_string(p.slow_round->due));
  return true;
}

// A fresh round: every voter's view and the OpenBao probe.
void World::ObserveRound(const Node& leader, PlanCoordinator& p, PlanInput& in) {
  in.views.clear();
  for (const std::string& v : p.voters) in.views.push_back(Observe(leader, p, nodes_.at(v)));
  OpenBaoProbe probe;
  probe.address = "https://bao.sim:8200";
  probe.status = 200;
  if (faults_ && Chance(0.03)) {
    if (Chance(0.5)) probe.status = 503;  // sealed
    else probe.transport = absl::UnavailableError("connection refused");
  }
  in.openbao = probe;
  in.views_asked_mono_ms = now_ * kTickMs;
  in.views_fresh = true;
  p.last_round = {in.views, probe};
  p.last_round_asked_ms = in.views_asked_mono_ms;
}

// A Step taken on the last round read no view (LastRoundViolations).
void World::CheckLastRoundStep(const PlanCoordinator& p, const PlanReady& ready) {
  for (const std::string& v : LastRoundViolations(p.machine->committed(), ready)) Fail(v);
}

// The warm-up kmsfleetd sends beside the parity rounds (PlanMachine::WarmUp)
// reaches a node outside the plan's commits, so it must be harmless
// there: a read-only preflight of the target, to a node neither in flight
// nor swapped yet, under a forward-rolling plan. (Its answer goes nowhere:
// a node's swap judges the checks it reuses or runs.)
void World::CheckWarmUp(const PlanCoordinator& p) {
  const std::optional<PlanAction> warm = p.machine->WarmUp(now_ * kTickMs);
  if (!warm) return;
  ++counters_.warm_ups;
  const std::optional<v1::FleetPlan>& plan = p.machine->committed();
  const v1::PlanNode* node = nullptr;
  if (plan) {
    for (const v1::PlanNode& n : plan->nodes()) {
      if (n.node() == warm->node) node = &n;
    }
  }
  if (warm->kind != ActionKind::kPreflight || !plan ||
      plan->phase() != v1::PLAN_PHASE_ROLLING || warm->node == plan->in_flight() ||
      node == nullptr || node->phase() != v1::PLAN_NODE_PHASE_PREFLIGHTED ||
      warm->version != plan->target_version()) {
    Fail("warm-up: " + std::string(ActionKindName(warm->kind)) + " of " + warm->node +
         " at " + warm->version + " while " + (plan ? plan->in_flight() : "no plan") +
         " is in flight");
  }
}

// GetNodeState of one voter: fresh when the call gets through, else the
// last answer with the time the node stopped answering.
NodeView World::Observe(const Node& leader, PlanCoordinator& p, const Node& node) {
  NodeView& view = p.views[node.name];
  view.node = node.name;
  const bool reachable =
      node.up && (&node == &leader ||
                  (!blocked_.contains({leader.name, node.name}) &&
                   !blocked_.contains({node.name, leader.name}) && !(faults_ && Chance(loss_))));
  if (!reachable) {
    if (view.unreachable_since_unix_ms == 0) view.unreachable_since_unix_ms = now_ * kTickMs;
    return view;
  }
  view.unreachable_since_unix_ms = 0;
  const bool serving = DownSince(node) < 0;
  v1::NodeState s;
  s.set_node(node.name);
  s.set_provider_version(node.provider.version);
  s.set_apiserver_restart_configured(true);  // the plans ask for restarts
  s.set_live(serving);
  s.set_ready(serving);
  if (serving) {
    s.set_key_id_hash_metric(node.provider.hash);
    s.set_key_id_hash_socket(node.provider.hash);
  }
  s.set_rotation_state(node.provider.rotation_pending ? "pending" : "active");
  s.set_key_version(3);
  s.set_observed_at_unix_ms(now_ * kTickMs);
  view.state = std::move(s);
  view.registry = RegistryFacts{"keyregistry.openbao-kms/v1alpha1", node.provider.removed_records};
  return view;
}

void World::ProposePlan(Node& leader, const std::shared_ptr<PlanCoordinator>& p,
                        PlanReady ready) {
  const v1::FleetPlan& plan = *ready.plan;
  absl::StatusOr<std::string> payload = EncodePlan(plan);
  if (!payload.ok()) return Fail("a proposed plan does not encode: " + payload.status().ToString());
  // As PeerNode::ProposePlan's `allowed` in Coordinator::Commit.
  if (absl::Status s = CheckChangeBase(leader.machine->committed(), p->machine->committed());
      !s.ok()) {
    ++counters_.changes_on_old_base;
    p->machine->Abandon();
    return Trace(leader.name + " does not propose: " + s.ToString());
  }
  absl::StatusOr<ElectionReady> proposed = leader.machine->Propose(plan.in_flight(), *payload);
  if (!proposed.ok()) {
    if (ReasonOf(proposed.status()) == reason::kHandoffPending) {
      return Fail("invariant 3 (hand-off): " + leader.name + "'s plan machine moved the slot to '" +
                  plan.in_flight() + "' without a released hand-off: " +
                  std::string(proposed.status().message()));
    }
    ++counters_.plan_proposals_failed;
    p->machine->Abandon();
    return Trace(leader.name + " could not propose: " + proposed.status().ToString());
  }
  p->pending_index = leader.machine->record().index();
  p->pending_since = now_;
  p->pending_plan = plan;
  p->held = std::move(ready.actions);
  Trace(leader.name + " proposes plan revision " + std::to_string(plan.revision()) + " " +
        std::string(PlanPhaseName(plan.phase())) + " in_flight=" + plan.in_flight() +
        " at index " + std::to_string(*p->pending_index));
  Handle(leader, *proposed);
  if (leader.up) CommitIfDone(leader, *p);
}

// As Coordinator::Commit once kCommitTimeout passed: the change is
// forgotten and decided again, though its record may still commit.
void World::GiveUpOnCommit(PlanCoordinator& p) {
  if (!p.pending_index || now_ - p.pending_since < kCommitWaitTicks) return;
  ++counters_.commits_given_up;
  Trace("plan coordinator gives up waiting for record " + std::to_string(*p.pending_index));
  p.machine->Abandon();
  p.pending_index.reset();
  p.pending_plan.reset();
  p.held.clear();
}

// As Coordinator::AdoptCommitted: a change given up on that committed
// after all is what the machine decides on next.
void World::AdoptCommitted(const Node& leader, PlanCoordinator& p) {
  std::optional<v1::FleetPlan> plan = FleetPlanIn(leader.machine->committed().payload());
  const std::optional<v1::FleetPlan>& mine = p.machine->committed();
  if (!plan || (mine && plan->revision() <= mine->revision())) return;
  ++counters_.late_commits_adopted;
  Trace("plan coordinator adopts revision " + std::to_string(plan->revision()) +
        ", committed after it gave up on it");
  p.machine->Committed(*plan);
}

// Commit first: the held actions go out once the proposal committed.
void World::CommitIfDone(Node& leader, PlanCoordinator& p) {
  if (!p.pending_index) return;
  const v1::PlanRecord& committed = leader.machine->committed();
  if (committed.term() != p.term || committed.index() < *p.pending_index) return;
  p.machine->Committed(*p.pending_plan);
  p.pending_index.reset();
  p.pending_plan.reset();
  const size_t decided = p.held.size();
  std::vector<PlanMachine::Withdrawn> withdrawn;
  std::vector<PlanAction> held = p.machine->ReleaseCommitted(
      std::move(p.held), now_ * kTickMs, now_ * kTickMs, &withdrawn);
  p.held.clear();
  if (withdrawn.size() != decided - held.size()) {
    Fail("ReleaseCommitted withdrew " + std::to_string(decided - held.size()) +
         " actions but gave " + std::to_string(withdrawn.size()) + " reasons");
  }
  for (const PlanMachine::Withdrawn& w : withdrawn) {
    if (ReasonOf(w.why).empty()) Fail("a withdrawal without a reason: " + w.why.ToString());
  }
  counters_.withdrawn_at_release += static_cast<int64_t>(decided - held.size());
  p.after_change = !SendsAnAction(held);
  for (const PlanAction& a : held) CarryOut(leader, p, a);
}

void World::CarryOut(Node& leader, PlanCoordinator& p, const PlanAction& a) {
  if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) {
    return Trace(leader.name + " reports " + std::string(ActionKindName(a.kind)) + ": " +
                 a.why.ToString());
  }
  const std::optional<v1::FleetPlan>& plan = p.machine->committed();
  const bool disruptive = a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode;
  if (!plan || plan->revision() != a.revision ||
      (disruptive && plan->in_flight() != a.node)) {
    return Fail("commit first: " + std::string(ActionKindName(a.kind)) + " on " + a.node +
                " names plan revision " + std::to_string(a.revision) +
                " but the committed plan is revision " +
                (plan ? std::to_string(plan->revision()) + " with '" + plan->in_flight() +
                            "' in flight"
                      : std::string("none")));
  }
  CheckCheckpointGuard(nodes_.at(a.node), a, *plan);
  CheckSentWhileOthersServe(p, a);
  std::optional<v1::Fence> fence = leader.machine->CurrentFence();
  if (!fence) {
    // A fresh fence for the same plan is being committed (RenewFence).
    ActionResult r;
    r.kind = ResultKindOf(a.kind);
    r.node = a.node;
    r.revision = a.revision;
    r.status = absl::UnavailableError("no fence yet on " + leader.name);
    p.results.push_back(std::move(r));
    return;
  }
  Envelope e;
  // A follow-only swap (start_allowed false) asks how the operation stands,
  // as FleetActions watches it, and starts nothing.
  const bool starts = disruptive && a.start_allowed;
  e.kind = starts                            ? Kind::kSwap
           : disruptive                      ? Kind::kPoll
           : a.kind == ActionKind::kHandOff ? Kind::kQuery
                                             : Kind::kAction;
  e.from = leader.name;
  e.to = a.node;
  e.fence = *fence;
  e.term = p.term;
  e.action = std::make_shared<const PlanAction>(a);
  int64_t delay = max_delay_;
  if (disruptive && !starts) held_back_[a.node] = {*fence, e.action};
  if (starts) {
    held_back_.erase(a.node);
    started_steps_.insert(FenceKey(*fence) + "/" + a.operation_id);
    real_fences_.push_back(*fence);
    real_swaps_[FenceKey(*fence)] = e.action;
    last_real_swap_[a.node] = e.action;
    // Some swaps are held long enough to cross a hand-off or a new leader.
    if (faults_ && Chance(0.2)) delay = Pick(10, 60);
  }
  // The call's deadline, whatever the network does with it: a swap held
  // past it reaches a node after its caller gave up (CALLER_GONE).
  const int64_t deadline = now_ + 30 + max_delay_;
  p.outstanding[RequestKey(a)] = {.action = a, .deadline = deadline};
  e.caller_deadline = deadline;
  Trace(leader.name + " sends " + std::string(ActionKindName(a.kind)) +
        (disruptive && !starts ? " (follow-only)" : "") + " to " + a.node + " under " +
        FenceKey(*fence) + " (revision " + std::to_string(a.revision) + ")" +
        (delay > max_delay_ ? ", held " + std::to_string(delay) + " ticks" : ""));
  Send(std::move(e), delay);
}

// A call that got no answer in time fails Unavailable (the machine issues
// it again); an operation that still runs is polled.
void World::ExpireRequests(Node& leader, PlanCoordinator& p) {
  for (auto it = p.outstanding.begin(); it != p.outstanding.end();) {
    Outstanding& o = it->second;
    if (now_ >= o.deadline) {
      ActionResult r;
      r.kind = ResultKindOf(o.action.kind);
      r.node = o.action.node;
      r.revision = o.action.revision;
      r.operation_id = o.action.operation_id;
      r.status = absl::UnavailableError(o.action.node + " did not answer " +
                                        std::string(ActionKindName(o.action.kind)));
      Trace(leader.name + " gives up on " + std::string(ActionKindName(o.action.kind)) +
            " of " + o.action.node);
      p.results.push_back(std::move(r));
      it = p.outstanding.erase(it);
      continue;
    }
    if (o.next_poll >= 0 && now_ >= o.next_poll) {
      o.next_poll = -1;
      Envelope e;
      e.kind = Kind::kPoll;
      e.from = leader.name;
      e.to = o.action.node;
      e.term = p.term;
      e.action = std::make_shared<const PlanAction>(o.action);
      Send(std::move(e), max_delay_);
    }
    ++it;
  }
}

void World::HandleResult(Node& leader, const Envelope& e) {
  // A copy: Handle may crash the leader, which drops its coordinator.
  std::shared_ptr<PlanCoordinator> p = leader.coordinator.plan;
  if (!p || p->term != e.term || !e.action || !e.result) return;  // an older coordinator's
  auto it = p->outstanding.find(RequestKey(*e.action));
  const bool awaited = it != p->outstanding.end() &&
                       it->second.action.revision == e.action->revision &&
                       it->second.action.operation_id == e.action->operation_id;
  if (options_.verbose) {
    Trace(leader.name + " gets " + std::string(ActionKindName(e.action->kind)) + " of " +
          e.action->node + " " + e.action->operation_id + (awaited ? "" : " (not awaited)") +
          ": " + (e.running ? std::string("running") : e.result->status.ToString()) +
          (e.ended ? ", ended" : ""));
  }
  if (e.running) {
    if (awaited) {
      it->second.next_poll = now_ + 5;
      it->second.deadline = now_ + 40;
    }
    return;
  }
  const ActionResult& r = *e.result;
  // A refusal of the command, not an operation that ended before its stop
  // (that is a result: the node's step failed, its provider untouched).
  if (r.kind == ResultKind::kOperation && !r.status.ok() && !e.ended) {
    const v1::PlanRecord& committed = leader.machine->committed();
    if (awaited && ReasonOf(r.status) == reason::kStaleFence) {
      // The swap may have run (and its answer got lost), under an earlier
      // record if this was sent again, or never have. Its operation says
      // which. FleetActions::Operate always asks. (Found by
      // CheckGivenBackUntouched, seed 117: polled only when sent under the
      // committed record, a paused plan took the refusal of a resend for
      // "never ran" and gave back a slot whose swap had ended Stable. The
      // simulated agent checks the fence before it looks a known id up;
      // the real one answers from the journal first, so there it is rare.)
      it->second.stale_fence = r.status;
      it->second.stale_at_committed =
          e.fence.term() == committed.term() && e.fence.index() == committed.index();
      it->second.next_poll = now_;
      it->second.deadline = now_ + 40;
      return;
    }
    // Any other refusal reaches the machine as FleetActions hands it on
    // (CommandRefusalForPlan): a busy node is asked again, a fence refusal
    // is sent again under the current fence, any other fails the node's
    // step with its provider untouched.
    if (awaited) p->outstanding.erase(it);
    ActionResult refused = r;
    refused.status = CommandRefusalForPlan(r.status);
    p->results.push_back(std::move(refused));
    return;
  }
  if (awaited && it->second.stale_fence && r.outcome == OperationOutcome::kNotFound &&
      !e.ended) {
    // Never ran: the machine has the refusal, as FleetActions hands it on
    // (sent again under the committed record's fence, or, not moving, the
    // slot given back). Sent under the committed record, the node released
    // the slot at it to a Release it did not get from us: that fence can
    // never admit the swap, so the same plan is committed again for a
    // fresh one, as Coordinator::RenewFence does.
    const std::string node = it->second.action.node;
    const bool renew = it->second.stale_at_committed;
    ActionResult refused = r;
    refused.status = CommandRefusalForPlan(*it->second.stale_fence);
    p->outstanding.erase(it);
    if (renew) RenewFence(leader, *p, node);
    p->results.push_back(std::move(refused));
    return;
  }
  if (awaited) p->outstanding.erase(it);
  p->results.push_back(r);
}

void World::RenewFence(Node& leader, PlanCoordinator& p, const std::string& node) {
  const v1::PlanRecord committed = leader.machine->committed();
  const std::optional<v1::FleetPlan>& plan = p.machine->committed();
  if (p.pending_index || committed.in_flight() != node || !plan) return;
  // As Coordinator::RenewFence: the machine's committed plan again, under
  // the same check of its base as any change.
  if (!CheckChangeBase(committed, plan).ok()) {
    ++counters_.changes_on_old_base;
    return;
  }
  absl::StatusOr<std::string> payload = EncodePlan(*plan);
  if (!payload.ok()) return Fail("a committed plan does not encode");
  absl::StatusOr<ElectionReady> proposed = leader.machine->Propose(plan->in_flight(), *payload);
  if (!proposed.ok()) return;
  ++counters_.fences_renewed;
  Trace(leader.name + " commits the same plan again for a fresh fence for " + node);
  Handle(leader, *proposed);
}

// The in-flight node's hand-off answer: the election records it before the
// plan machine sees it, and only at the record it was asked under.
void World::PlanReleased(Node& leader, const Envelope& e) {
  if (leader.machine->role() != Role::kLeader) return;
  // A copy: Handle may crash the leader, which drops its coordinator.
  std::shared_ptr<PlanCoordinator> p = leader.coordinator.plan;
  if (!p || p->term != e.term || !e.action) return;
  p->outstanding.erase(RequestKey(*e.action));
  ActionResult r;
  r.kind = ResultKind::kHandOff;
  r.node = e.from;
  r.revision = e.action->revision;
  const v1::PlanRecord& committed = leader.machine->committed();
  if (e.fence.term() != committed.term() || e.fence.index() != committed.index()) {
    r.status = absl::UnavailableError("hand-off answered under an earlier record; ask again");
    p->results.push_back(std::move(r));
    return;
  }
  // As PeerNode::AskRelease and the coordinator read it: an answer the
  // election did not record (a newer record is pending) is asked again.
  if (!leader.machine->RecordRelease(e.from, e.fence.term(), e.fence.index(),
                                     e.reply.outcome()) &&
      e.reply.released()) {
    r.status = absl::UnavailableError("hand-off answered under a record being replaced");
    p->results.push_back(std::move(r));
    return;
  }
  SetHandOffResult(ReadReleaseReply(e.reply, e.from), r);
  r.last_operation_id = e.reply.last_operation_id();
  r.last_operation_phase = e.reply.last_operation_phase();
  if (!r.released) {
    ++counters_.handoffs_withheld;
    Trace(e.from + " keeps its slot: " + e.reply.detail());
  }
  p->results.push_back(std::move(r));
}

void World::CheckReady(const PlanReady& ready, bool had_command) {
  if (!ready.refusal.ok() && ReasonOf(ready.refusal).empty()) {
    Fail("a refusal without a reason code: " + ready.refusal.ToString());
  }
  if (!ready.refusal.ok() && !had_command &&
      ReasonOf(ready.refusal) != reason::kPlanTooLarge) {
    Fail("a refusal without a command: " + ready.refusal.ToString());
  }
  if (!ready.blocked.ok() && ReasonOf(ready.blocked).empty()) {
    Fail("a wait without a reason code: " + ready.blocked.ToString());
  }
  for (const PlanAction& a : ready.actions) {
    if ((a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) &&
        ReasonOf(a.why).empty()) {
      Fail("a " + std::string(ActionKindName(a.kind)) + " without a reason code: " +
           a.why.ToString());
    }
  }
}

// A coordinator whose voters the plan's nodes are not observes a node
// less (or one the plan lacks): it may start no swap or rollback, though
// it may follow one already running.
void World::CheckStaleVoters(const PlanCoordinator& p, const PlanReady& ready) {
  if (p.voters == voters_) return;
  for (const PlanAction& a : ready.actions) {
    const bool operation = a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode;
    if (!operation || !a.start_allowed) continue;
    ++counters_.stale_voter_starts;
    Fail("a coordinator with voters " + absl::StrJoin(p.voters, ",") + " started " +
         std::string(ActionKindName(a.kind)) + " on " + a.node + " (PLAN_MEMBERS_CHANGED)");
  }
}

// A swap or rollback that may start goes out only under a plan moving on
// its own (Rolling or RollingBack, no abort asked): paused, halted or
// aborting, the operator asked for no new disruption, so one that never
// reached its node is followed only, and the node gives its slot back.
void World::CheckStartsOnlyWhileMoving(const PlanCoordinator& p, const PlanReady& ready) {
  const std::optional<v1::FleetPlan>& committed = p.machine->committed();
  const v1::FleetPlan* plan = ready.plan ? &*ready.plan : committed ? &*committed : nullptr;
  if (plan == nullptr) return;
  const bool moving = (plan->phase() == v1::PLAN_PHASE_ROLLING ||
                       plan->phase() == v1::PLAN_PHASE_ROLLING_BACK) &&
                      !plan->abort_requested();
  if (moving) return;
  for (const PlanAction& a : ready.actions) {
    const bool operation = a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode;
    if (!operation || !a.start_allowed) continue;
    Fail("a " + std::string(ActionKindName(a.kind)) + " of " + a.node +
         " that may start was sent while the plan is " +
         std::string(PlanPhaseName(plan->phase())) +
         (plan->abort_requested() ? " with an abort asked" : ""));
  }
}

// A proposal, before it goes to the election: one node in flight at most,
// named by the plan; stops carry reasons; a plan that finishes does so on
// what it saw: one version, one key_id hash.
void World::CheckProposal(const PlanCoordinator& p, const v1::FleetPlan& plan,
                          const std::vector<NodeView>& views) {
  int in_flight = 0;
  const std::string hash =
      views.empty() || !views.front().state ? "" : views.front().state->key_id_hash_metric();
  for (const std::string& v :
       ProposalViolations(p.machine->committed(), plan, views, hash, in_flight)) {
    Fail(v);
  }
  counters_.max_in_flight = std::max<int64_t>(counters_.max_in_flight, in_flight);
}

// Invariant 5 as each plan record commits (and the count of plans and
// break-glass events).
void World::CheckPlanCommitted(const v1::PlanRecord& record) {
  if (record.payload().empty() || record.index() < last_plan_index_) return;
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(record.payload());
  if (!plan.ok()) return Fail("a committed plan does not decode: " + plan.status().ToString());
  if (plan->in_flight() != record.in_flight()) {
    return Fail("record " + std::to_string(record.index()) + " puts '" + record.in_flight() +
                "' in flight but its plan names '" + plan->in_flight() + "'");
  }
  // Each committed change continues from the one before: a revision never
  // goes back, and one committed again is the same plan (a renewed fence),
  // not another change decided on the revision before it.
  if (last_plan_ && (plan->revision() < last_plan_->revision() ||
                     (plan->revision() == last_plan_->revision() &&
                      plan->SerializeAsString() != last_plan_->SerializeAsString()))) {
    return Fail("record " + std::to_string(record.index()) + " commits plan revision " +
                std::to_string(plan->revision()) + " over committed revision " +
                std::to_string(last_plan_->revision()) + " it was not decided on");
  }
  const bool new_plan = !last_plan_ || last_plan_->plan_id() != plan->plan_id();
  const bool moved = new_plan || last_plan_->phase() != plan->phase();
  CountStepsSentAgain(*plan, new_plan);
  CheckFailedNodesRanNothing(*plan);
  CheckGivenBackUntouched(*plan);
  if (new_plan) ++counters_.plans_started;
  last_plan_ = *plan;
  last_plan_index_ = record.index();
  if (!moved) return;
  Trace("committed plan " + plan->plan_id() + " revision " + std::to_string(plan->revision()) +
        " " + std::string(PlanPhaseName(plan->phase())));
  switch (plan->phase()) {
    case v1::PLAN_PHASE_COMPLETED:
    case v1::PLAN_PHASE_ROLLED_BACK:
      return CheckConverged(*plan, "when it committed", false);
    case v1::PLAN_PHASE_BREAK_GLASS:
      ++counters_.break_glass_entered;
      if (plan->break_glass().reason().empty() || plan->break_glass().nonce().empty()) {
        Fail("invariant 5: BreakGlass without a reason or nonce: " + plan->DebugString());
      }
      return;
    case v1::PLAN_PHASE_HALTED:
    case v1::PLAN_PHASE_ABORTED:
      if (plan->settings().auto_rollback() && plan->halt().reason() == reason::kArtifactIo) {
        ++counters_.walk_backs_withheld;
      }
      if (plan->halt().reason().empty()) {
        Fail("invariant 5: " + std::string(PlanPhaseName(plan->phase())) +
             " without a reason: " + plan->DebugString());
      }
      return;
    default:
      return;
  }
}

// Steps sent again under a new id after their agent stopped before the
// provider's stop (PlanNode.agent_stop_retries going up), never more than
// kMaxAgentStopRetries in one step.
void World::CountStepsSentAgain(const v1::FleetPlan& plan, bool new_plan) {
  for (int i = 0; i < plan.nodes_size(); ++i) {
    const int32_t now = plan.nodes(i).agent_stop_retries();
    if (now > kMaxAgentStopRetries) {
      return Fail(plan.nodes(i).node() + " was sent its step again " + std::to_string(now) +
                  " times: " + plan.DebugString());
    }
    const int32_t before =
        new_plan || i >= last_plan_->nodes_size() ? 0 : last_plan_->nodes(i).agent_stop_retries();
    if (now <= before) continue;
    // A resend is a new disruption: only a plan moving on its own sends
    // one (commands are applied before results in a Step).
    if (plan.abort_requested() || (plan.phase() != v1::PLAN_PHASE_ROLLING &&
                                   plan.phase() != v1::PLAN_PHASE_ROLLING_BACK)) {
      return Fail(plan.nodes(i).node() + "'s step was sent again while the plan is " +
                  std::string(PlanPhaseName(plan.phase())) +
                  (plan.abort_requested() ? " with an abort requested" : ""));
    }
    counters_.sent_again_after_agent_stop += now - before;
  }
}

// A node the plan records Failed did not run its step's operation to
// Stable, nor runs it still (but for a kube-apiserver restart, which
// fails the step after it): a refusal that says nothing of a command sent
// again (its caller, an unreadable journal) must not fail a node whose
// operation runs or ran (CommandRefusalForPlan).
void World::CheckFailedNodesRanNothing(const v1::FleetPlan& plan) {
  for (const v1::PlanNode& n : plan.nodes()) {
    // A kube-apiserver restart fails the step after its operation ended.
    if (n.phase() != v1::PLAN_NODE_PHASE_FAILED || n.operation_id().empty() ||
        n.reason() == reason::kApiServerRestartFailed) {
      continue;
    }
    const Node& node = nodes_.at(n.node());
    auto ended = node.op_outcomes.find(n.operation_id());
    const bool stable = ended != node.op_outcomes.end() && ended->second.phase == SwapPhase::kStable;
    const bool running = node.op_id == n.operation_id() && !node.op_applied;
    if (stable || running) {
      return Fail("plan " + plan.plan_id() + " records " + n.node() + " Failed (" + n.reason() +
                  ") while its operation " + n.operation_id() +
                  (stable ? " ended Stable" : " still runs"));
    }
  }
}

// A node whose slot the plan gave back untouched (its operation never
// reached it, or ended before the stop: GiveSlotBackUntouched) is recorded
// as its operation left it once the slot is released: moved (Done, or
// RolledBack on the way back) if and only if the operation ended Stable
// (StepRanAfterAll; a failed kube-apiserver restart after it fails the
// node instead), and it never starts that operation afterwards
// (StartPlanOperation). Found in review: a lookup answered NotFound while
// the swap was still being admitted (the agent now answers
// OPERATION_BEING_ADMITTED, modelled by AdmitSlowly). Found by this check
// at the give-back (seed 1908): the adversary's replay of the step under
// its still valid fence, landing after the follow-only lookup's NotFound
// and before the node learned the paused record, ran while the plan
// recorded the node untouched.
void World::CheckGivenBackUntouched(const v1::FleetPlan& plan) {
  if (!last_plan_ || last_plan_->plan_id() != plan.plan_id()) return;
  for (const v1::PlanNode& n : plan.nodes()) {
    const v1::PlanNode* before = nullptr;
    for (const v1::PlanNode& b : last_plan_->nodes()) {
      if (b.node() == n.node()) before = &b;
    }
    if (before == nullptr || n.operation_id().empty()) continue;
    const std::string key = n.node() + "/" + n.operation_id();
    if (!before->given_back_untouched() && n.given_back_untouched()) {
      ++counters_.given_back_untouched;
      giving_back_.insert(key);
      continue;
    }
    if (last_plan_->in_flight() != n.node() || plan.in_flight() == n.node() ||
        giving_back_.erase(key) == 0) {
      continue;
    }
    given_back_.insert(key);
    const Node& node = nodes_.at(n.node());
    auto ended = node.op_outcomes.find(n.operation_id());
    const bool stable =
        ended != node.op_outcomes.end() && ended->second.phase == SwapPhase::kStable;
    const bool runs =
        node.op_id == n.operation_id() && (!node.op_applied || node.op_interrupted);
    const bool moved = n.phase() == (n.rollback_of().empty() ? v1::PLAN_NODE_PHASE_DONE
                                                             : v1::PLAN_NODE_PHASE_ROLLED_BACK);
    const bool restart_failed = n.phase() == v1::PLAN_NODE_PHASE_FAILED &&
                                n.reason() == reason::kApiServerRestartFailed;
    if (moved || n.phase() == v1::PLAN_NODE_PHASE_FAILED) ++counters_.ran_after_all;
    if (runs || (stable && !moved && !restart_failed) || (!stable && moved)) {
      return Fail("plan " + plan.plan_id() + " releases " + n.node() + "'s slot, given back " +
                  "untouched, recorded " + std::string(PlanNodePhaseName(n.phase())) +
                  " while its operation " + n.operation_id() +
                  (runs      ? " still runs"
                   : stable  ? " ended Stable"
                             : " did not end Stable"));
    }
  }
}

// Invariant 5 against the simulated providers themselves.
void World::CheckConverged(const v1::FleetPlan& plan, const std::string& when, bool hashes) {
  const std::string& want = plan.phase() == v1::PLAN_PHASE_COMPLETED ? plan.target_version()
                                                                     : plan.version_before();
  const std::string& hash = nodes_.at(voters_.front()).provider.hash;
  for (const std::string& v : voters_) {
    const Node& n = nodes_.at(v);
    if (Disrupted(n) || n.provider.version != want || (hashes && n.provider.hash != hash)) {
      return Fail("invariant 5: plan " + plan.plan_id() + " is " +
                  std::string(PlanPhaseName(plan.phase())) + " " + when + " but " + v + " " +
                  (Disrupted(n) ? "is down" : "runs " + n.provider.version) + " with hash " +
                  n.provider.hash.substr(0, 6) + "..., not " + want);
    }
  }
}

}  // namespace kmsfleet::sim
