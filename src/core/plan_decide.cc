// Phase decisions of one plan machine Step (plan_step.h): preflight, the
// gates between nodes, the node in flight, completion, and the wait for a
// node that leaves an action unanswered.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/node_gates.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "plan_step.h"

namespace kmsfleet {
namespace {

absl::Status Waiting(std::string_view reason, std::string message) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason, message);
}

bool RollingBack(const v1::FleetPlan& plan) {
  return plan.phase() == v1::PLAN_PHASE_ROLLING_BACK;
}

}  // namespace

void PlanStep::DecidePhase() {
  if (!next_->in_flight().empty() &&
      next_->phase() != v1::PLAN_PHASE_BREAK_GLASS) {
    // The node in flight finishes (or hands off) whatever the phase.
    DecideInFlight();
    return;
  }
  switch (next_->phase()) {
    case v1::PLAN_PHASE_DRAFT:
      Become(v1::PLAN_PHASE_PREFLIGHT, "plan recorded");
      DecidePreflight();
      return;
    case v1::PLAN_PHASE_PREFLIGHT: DecidePreflight(); return;
    case v1::PLAN_PHASE_ROLLING:
    case v1::PLAN_PHASE_ROLLING_BACK: DecideNextNode(); return;
    case v1::PLAN_PHASE_PAUSED:
      if (next_->abort_requested()) {
        AbortNow();
        return;
      }
      Block(Waiting(reason::kPlanPaused, "The plan is paused; run "
                                         "`kmsfleetctl resume`."));
      return;
    case v1::PLAN_PHASE_HALTED:
      // An abort asked while a node was still in flight (after a
      // break-glass acknowledgement) ends the plan once it handed off.
      if (next_->abort_requested()) {
        AbortNow();
        return;
      }
      Block(Waiting(reason::kPlanHalted,
                    absl::StrCat("The plan halted: ", next_->halt().reason(),
                                 ": ", next_->halt().message())));
      return;
    case v1::PLAN_PHASE_BREAK_GLASS:
      Block(Waiting(reason::kBreakGlassActive,
                    absl::StrCat("Break-glass on ", next_->break_glass().node(),
                                 ": ", next_->break_glass().failure(),
                                 " Acknowledge nonce ",
                                 next_->break_glass().nonce(),
                                 " once fixed by hand.")));
      return;
    default:
      return;  // finished
  }
}

void PlanStep::DecidePreflight() {
  if (next_->abort_requested()) {
    AbortNow();
    return;
  }
  if (absl::Status members = MembersUnchanged(); !members.ok()) {
    Block(members);
    return;
  }
  // Each node's doctor and rotation-plan ask OpenBao: sent into a sealed,
  // standby-only or unreachable one they would fail, and halt the plan for
  // what is OpenBao's (found in review). They wait for it instead. Judged
  // on the round at hand, the last one included: a wait changes nothing,
  // and a doctor sent on a probe a tick old checks OpenBao itself.
  const absl::Status openbao = CheckOpenBaoGate(in_.openbao);
  bool waiting = false, waiting_for_openbao = false;
  std::vector<NodeArtifact> artifacts;
  for (const v1::PlanNode& n : next_->nodes()) {
    const bool pending = n.phase() == v1::PLAN_NODE_PHASE_PENDING;
    const bool staged = n.phase() == v1::PLAN_NODE_PHASE_STAGED;
    if (staged && !openbao.ok()) {
      waiting = waiting_for_openbao = true;
    } else if (pending || staged) {
      PlanAction a = MakeAction(
          pending ? ActionKind::kStage : ActionKind::kPreflight, n.node());
      a.version = next_->target_version();
      Issue(std::move(a));
      waiting = true;
    }
    artifacts.push_back({n.node(), next_->version_before(),
                         n.previous_artifact_verified()});
  }
  if (waiting_for_openbao) Block(openbao);
  if (waiting) return;
  if (absl::Status ready = CheckRollbackReadiness(artifacts); !ready.ok()) {
    Halt(ready, "");
    return;
  }
  if (absl::Status gates = NodeGates(false); !gates.ok()) {
    Block(gates);
    return;
  }
  // Every node Preflighted means doctor and rotation-plan passed on each.
  for (const char* guard : {"doctor", "rotation", "rollback readiness",
                            "fleet health", "parity", "openbao"}) {
    RecordGuard(guard, absl::OkStatus());
  }
  Become(v1::PLAN_PHASE_ROLLING, "preflight passed on every node");
  DecideNextNode();
}

absl::Status PlanStep::MembersUnchanged() const {
  return CheckPlanMembers(*next_, m_.config_.self, m_.config_.voters);
}

absl::Status PlanStep::NodeGates(bool rolling_back) {
  // Before the views are read: a Step that only waits out the soak can be
  // taken on the last round.
  if (absl::Status soak = CheckSoak(*next_, in_.now_unix_ms); !soak.ok()) return soak;
  absl::Status s;
  for (GuardOutcome& gate : EvaluateFleetGates(
           *next_, {.voters = m_.config_.voters, .views = Views(), .parity = Parity(),
                    .openbao = OpenBao(), .now_unix_ms = in_.now_unix_ms})) {
    if (!gate.result.ok()) {
      s = std::move(gate.result);
      break;
    }
  }
  if (s.ok() && rolling_back) {
    if (absl::Status allowed = RollbackAllowed(); !allowed.ok()) {
      Halt(allowed, "");
      return allowed;
    }
  }
  return s;
}

absl::Status PlanStep::OpenBaoGate() { return CheckOpenBaoGate(OpenBao()); }

void PlanStep::DecideNextNode() {
  const bool rolling_back = RollingBack(*next_);
  if (next_->abort_requested()) {
    AbortNow();
    return;
  }
  // Before the next slot and before completion, which says every node
  // runs the target: a node the voters left is no longer observed, and
  // one they gained was never upgraded.
  if (absl::Status members = MembersUnchanged(); !members.ok()) {
    Block(members);
    return;
  }
  v1::PlanNode* target = nullptr;
  for (v1::PlanNode& n : *next_->mutable_nodes()) {
    if (!rolling_back && n.phase() == v1::PLAN_NODE_PHASE_PREFLIGHTED) {
      target = &n;
      break;
    }
    // Rolling back walks the upgraded nodes in reverse order.
    if (rolling_back && n.phase() == v1::PLAN_NODE_PHASE_DONE) target = &n;
  }
  if (target == nullptr) {
    DecideCompletion(rolling_back);
    return;
  }
  if (absl::Status gates = NodeGates(rolling_back); !gates.ok()) {
    Block(gates);
    return;
  }
  if (!rolling_back && !next_->first_swap_authorised()) RetakeBaseline();
  // The swap to undo is recorded once: a retried walk-back undoes the same
  // swap, not the failed rollback.
  if (rolling_back && target->rollback_of().empty()) {
    target->set_rollback_of(target->operation_id());
  }
  SetNextOperationId(*target);
  target->set_agent_stop_retries(0);
  target->set_apiserver_restart_retries(0);
  target->clear_apiserver_restart();  // an earlier step's restart
  target->set_stage(v1::PLAN_STEP_STAGE_SWAPPING);
  target->clear_reason();
  target->clear_message();
  SetNodePhase(*target, v1::PLAN_NODE_PHASE_IN_FLIGHT);
  next_->set_in_flight(target->node());
  next_->set_first_swap_authorised(true);
  DecideInFlight();
}

bool IsValidNodeName(std::string_view name) {
  auto alnum = [](char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); };
  if (name.empty() || name.size() > kMaxNodeNameBytes) return false;
  if (!alnum(name.front()) || !alnum(name.back())) return false;
  return std::all_of(name.begin(), name.end(),
                     [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; });
}

void PlanStep::SetNextOperationId(v1::PlanNode& node) const {
  const uint64_t revision = (m_.committed_ ? m_.committed_->revision() : 0) + 1;
  // Agents keep operations in files named by the id: [A-Za-z0-9._+-] only.
  node.set_operation_id(absl::StrCat(next_->plan_id(), ".", node.node(),
                                     node.rollback_of().empty() ? ".swap." : ".rollback.",
                                     revision));
}

void PlanStep::DecideInFlight() {
  v1::PlanNode* n = FindNode(next_->in_flight());
  if (n == nullptr) return;  // a plan naming an unknown node never commits
  switch (n->stage()) {
    case v1::PLAN_STEP_STAGE_SWAPPING: {
      const bool back = !n->rollback_of().empty();
      PlanAction a = MakeAction(
          back ? ActionKind::kRollbackNode : ActionKind::kSwap, n->node());
      a.version = back ? next_->version_before() : next_->target_version();
      a.operation_id = n->operation_id();
      a.of_operation_id = n->rollback_of();
      if (!back) a.expected_staged_digest = n->staged_digest();  // what preflight checked
      a.expected_key_id_hash = Parity().hash();
      a.stabilization_ms = next_->settings().stabilization_ms();
      IssueOperation(std::move(a));
      return;
    }
    case v1::PLAN_STEP_STAGE_RESTARTING_APISERVER:
      IssueApiServerRestart(*n);
      return;
    default:
      Issue(MakeAction(ActionKind::kHandOff, n->node()));
      // The streak counts from the node's result, not from its hand-off
      // (RestartParity): its rounds are asked while the hand-off is, but
      // for the last, which waits for the hand-off's answer: a Step that
      // gives the next slot reads a round newer than every result
      // (PlanInput), so a last round begun before the answer came would
      // be asked again.
      rounds_beside_hand_off_ =
          ReasonOf(CheckParityStable(m_.parity_,
                                     next_->settings().parity_observations() - 1)) ==
          reason::kParityNotStable;
      return;
  }
}

// The gates passed when the node was given the slot, perhaps long ago: a
// new coordinator resumes the committed in-flight node, and a command that
// went unanswered or never reached the node is sent again. Sent anew, it
// could start now, so every other node must still be healthy and in
// parity, or the start could take a second provider down; and OpenBao
// unsealed with no rotation under way, or the node's own checks would fail
// it for a fleet-wide condition. A rollback, also still safe (found in
// review: one sent again after a rotation promoted meanwhile reinstalled
// a release that never saw the new key version). `hash`: the others'
// key_id hash.
absl::Status PlanStep::OthersStillHealthy(std::string_view in_flight, bool rollback,
                                          std::string* hash) {
  absl::Status s = OthersGates(in_flight, rollback, hash);
  if (s.ok()) s = ViewsFreshEnough();
  if (s.ok()) return s;
  return MakeError(s.code(), ReasonOf(s),
                   absl::StrCat("No operation is started on ", std::string(in_flight),
                                " (one it already runs is followed) while: ",
                                std::string(s.message())),
                   {{"node", std::string(in_flight)}});
}

// A start is judged on views no older than their round's asking: a voter
// that answered at once was last seen then, however long the slowest one
// (or, at a release, the commit) took after it. Found in review: a Step
// that changed nothing sent its swap on a round of any age, and a
// release counted from the Step's wall-clock reading, which a clock step
// moves. Asked last, once every other gate passes: what an old round shows
// wrong (an agent that does not answer makes every round slow, a node's
// own provider down) is the reason to show, and an abort gives a restart
// up on it. A negative age (a clock misused) fails closed too.
absl::Status PlanStep::ViewsFreshEnough() const {
  const int64_t age = in_.now_mono_ms - in_.views_asked_mono_ms;
  if (age >= 0 && age <= kMaxViewsAgeAtSendMs) return absl::OkStatus();
  const NodeView* slowest = nullptr;
  for (const NodeView& v : in_.views) {
    if (slowest == nullptr || v.answered_in_ms > slowest->answered_in_ms) slowest = &v;
  }
  // A voter is named only when its answer took much of the age: the round
  // also waits for OpenBao's health probe, and a release for its commit.
  const std::string slowest_said =
      slowest != nullptr && slowest->answered_in_ms * 2 >= age
          ? absl::StrCat(" The slowest to answer was ", slowest->node, ", in ",
                         slowest->answered_in_ms, " ms.")
          : " No node took that long to answer: OpenBao's health probe (asked beside "
            "the round) or the commit of the plan change before it was slow.";
  return MakeError(absl::StatusCode::kUnavailable, reason::kObservationsTooOld,
                   absl::StrCat("The last round of observations was asked for ", age,
                                " ms ago (more than ", kMaxViewsAgeAtSendMs,
                                " ms): nothing that takes a provider or an API server down "
                                "is started on it; a new round is asked at once.",
                                slowest_said));
}

// OthersStillHealthy's gates, their refusal as it is. `hash` may be null.
absl::Status PlanStep::OthersGates(std::string_view in_flight, bool rollback,
                                   std::string* hash) {
  std::vector<std::string> voters;
  for (const std::string& v : m_.config_.voters) {
    if (v != in_flight) voters.push_back(v);
  }
  std::vector<NodeView> others;
  for (const NodeView& v : Views()) {
    if (v.node != in_flight) others.push_back(v);
  }
  // A plan node outside the voters is not observed: it could be down.
  absl::Status s = MembersUnchanged();
  if (s.ok()) s = CheckFleetHealth(voters, others, in_.now_unix_ms);
  if (s.ok()) s = CheckParityOnce(others);
  // As the slot's own gates (EvaluateFleetGates): found in review, a swap
  // sent again under a sealed OpenBao ran the node's doctor against it, and
  // failed the node for OpenBao's outage (with --auto-rollback, walking the
  // fleet back).
  if (s.ok()) s = OpenBaoGate();
  if (s.ok()) s = CheckRotationMetric(others);
  if (s.ok() && rollback) s = RollbackAllowed();
  if (!s.ok()) return s;
  if (hash != nullptr && !others.empty() && others.front().state) {
    *hash = others.front().state->key_id_hash_metric();
  }
  return absl::OkStatus();
}

// The kube-apiserver restart that ends the in-flight node's step. It
// disrupts no provider, and asked again the agent answers from the
// restart it ran; but while it runs that node's API server serves
// nothing, so it is sent only while every other node is healthy and in
// parity, OpenBao unsealed and no rotation under way (found in review:
// `resume` after a failed restart restarted the node's kube-apiserver at
// once, with another node's provider down, leaving one API server that
// could read Secrets). Until then the plan waits, naming why; the node
// keeps its slot, paused too (the node in flight finishes its step). One
// sent and answered is not asked again; one sent and not answered is asked
// again only once the gates pass (the agent answers it from the restart it
// ran). An abort does not wait on the gates (found in review: with another
// node down for good the slot was never given back, and abort could not
// end the plan): the node gives its slot back, its restart not confirmed,
// as a restart that failed, and the plan ends Aborted; a `rollback` then
// walks that node back too, its restart after its rollback.
void PlanStep::IssueApiServerRestart(v1::PlanNode& node) {
  PlanAction a = MakeAction(ActionKind::kRestartApiServer, node.node());
  a.method = next_->settings().apiserver_restart_method();
  a.operation_id = ApiServerRestartOperationId(node);  // one per swap, and per retry
  if (Issued(a)) return;
  absl::Status s = OthersGates(node.node(), false, nullptr);
  // Nor while the node's own provider is down: a kube-apiserver started
  // without its KMS plugin cannot read Secrets and does not come back
  // ready (found in review).
  if (s.ok()) s = CheckFleetHealth({node.node()}, Views(), in_.now_unix_ms);
  if (s.ok()) s = ViewsFreshEnough();
  if (s.ok()) return Issue(std::move(a));
  // A round too old says nothing of the fleet: an abort waits for a
  // quicker one rather than give the restart up (found in review).
  if (next_->abort_requested() && ReasonOf(s) != reason::kObservationsTooOld) {
    node.set_reason(reason::kApiServerRestartFailed);
    node.set_message(absl::StrCat(
        "kube-apiserver on ", node.node(), " was not restarted by the plan, which is aborting (",
        "one sent before and not answered may have run: check it), while: ",
        std::string(s.message())));
    node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
    changed_ = true;
    return;
  }
  Block(MakeError(s.code(), ReasonOf(s),
                  absl::StrCat("kube-apiserver on ", node.node(),
                               " is not restarted now (one sent before and not answered is "
                               "asked again once this passes) while: ",
                               std::string(s.message())),
                  {{"node", node.node()}}));
}

// A swap or rollback of the in-flight node. Held back entirely, one that
// already runs would never be followed (found in review: with the old
// coordinator's host gone for good, the plan froze with the node in
// flight, beyond abort and rollback): while the gates fail it is sent
// follow-only, and so it is while the plan is not moving on its own
// (ResendsNow): one that never reached the node then comes back NotFound
// and the node gives its slot back (found in review: paused after an
// unanswered send, or under a successor, the swap went out to start).
void PlanStep::IssueOperation(PlanAction action) {
  if (Issued(action)) return;
  std::string others_hash;
  if (!ResendsNow()) {
    action.start_allowed = false;
  } else if (absl::Status s = OthersStillHealthy(
                 action.node, action.kind == ActionKind::kRollbackNode, &others_hash);
             !s.ok()) {
    Block(s);
    action.start_allowed = false;
  } else if (!others_hash.empty()) {
    action.expected_key_id_hash = others_hash;  // this round's, not an old streak's
  }
  Issue(std::move(action));
}

// Nothing else holds the plan up, but an action it needs keeps coming
// back unanswered: say which node and since when, rather than nothing.
void PlanStep::BlockOnUnanswered() {
  if (!blocked_.ok() || m_.unanswered_.empty()) return;
  const auto& [node, u] = *m_.unanswered_.begin();
  const std::string reason =
      ReasonOf(u.status).empty() ? reason::kAgentUnreachable : ReasonOf(u.status);
  Block(MakeError(absl::StatusCode::kUnavailable, reason,
                  absl::StrCat("Waiting for ", node, " to answer (since unix_ms ",
                               u.since_unix_ms, ", ",
                               (in_.now_unix_ms - u.since_unix_ms) / 1000,
                               " s): ", std::string(u.status.message()),
                               " The action is sent again until it does."),
                  {{"node", node}}));
}

void PlanStep::DecideCompletion(bool rolling_back) {
  const std::string& version =
      rolling_back ? next_->version_before() : next_->target_version();
  if (absl::Status s = CheckCompletion(*next_, version,
                                       {.voters = m_.config_.voters, .views = Views(),
                                        .parity = Parity(), .openbao = in_.openbao,
                                        .now_unix_ms = in_.now_unix_ms});
      !s.ok()) {
    Block(s);
    return;
  }
  Become(rolling_back ? v1::PLAN_PHASE_ROLLED_BACK : v1::PLAN_PHASE_COMPLETED,
         absl::StrCat("every node runs ", version, " with key_id hash ",
                      Parity().hash()));
}

}  // namespace kmsfleet
