// Pause, resume, abort, rollback and break-glass acknowledgement
// (plan_step.h). Abort and pause stop before the next node: a swap in
// progress is never interrupted, its outcome is still handled.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "plan_step.h"

namespace kmsfleet {
namespace {

absl::Status NotApplicable(std::string_view command, v1::PlanPhase phase) {
  return MakeError(absl::StatusCode::kFailedPrecondition,
                   reason::kCommandNotApplicable,
                   absl::StrCat("`", std::string(command),
                                "` does not apply to a plan in ",
                                std::string(PlanPhaseName(phase)), "."),
                   {{"phase", std::string(PlanPhaseName(phase))}});
}

absl::Status BreakGlassActive(const v1::FleetPlan& plan) {
  return MakeError(absl::StatusCode::kFailedPrecondition,
                   reason::kBreakGlassActive,
                   absl::StrCat("The plan is in BreakGlass on ",
                                plan.break_glass().node(),
                                "; automation stays stopped until its nonce "
                                "is acknowledged."));
}

}  // namespace

absl::Status PlanStep::HandlePause() {
  const v1::PlanPhase phase = next_->phase();
  if (phase != v1::PLAN_PHASE_PREFLIGHT && phase != v1::PLAN_PHASE_ROLLING &&
      phase != v1::PLAN_PHASE_ROLLING_BACK) {
    return NotApplicable("pause", phase);
  }
  Become(v1::PLAN_PHASE_PAUSED, "paused by operator");
  return absl::OkStatus();
}

absl::Status PlanStep::HandleResume() {
  const v1::PlanPhase phase = next_->phase();
  if (phase == v1::PLAN_PHASE_BREAK_GLASS) return BreakGlassActive(*next_);
  if (phase != v1::PLAN_PHASE_PAUSED && phase != v1::PLAN_PHASE_HALTED) {
    return NotApplicable("resume", phase);
  }
  v1::PlanPhase to = next_->resume_phase();
  if (phase == v1::PLAN_PHASE_HALTED) {
    KMSFLEET_RETURN_IF_ERROR(FailedRestartsSeen(to == v1::PLAN_PHASE_ROLLING_BACK));
    // A node whose release was staged again since its preflight is staged
    // and preflighted once more: the plan goes back through Preflight.
    if (ReclaimFailedNodes(to == v1::PLAN_PHASE_ROLLING_BACK) &&
        to == v1::PLAN_PHASE_ROLLING) {
      to = v1::PLAN_PHASE_PREFLIGHT;
    }
    if (to == v1::PLAN_PHASE_PREFLIGHT) RestageUnverifiedNodes();
    next_->clear_halt();
    m_.issued_.clear();
  }
  Become(to, "resumed by operator");
  return absl::OkStatus();
}

// ROLLBACK_ARTIFACT_MISSING's remedy is staging the previous release on
// the node: only a new stage looks for it again, so such nodes are staged
// again rather than halting on the answer of their first stage.
void PlanStep::RestageUnverifiedNodes() {
  for (v1::PlanNode& n : *next_->mutable_nodes()) {
    if (n.previous_artifact_verified() || n.phase() == v1::PLAN_NODE_PHASE_PENDING) continue;
    n.set_phase(v1::PLAN_NODE_PHASE_PENDING);
    n.set_phase_since_unix_ms(in_.now_unix_ms);
    changed_ = true;
  }
}

absl::Status PlanStep::HandleAbort() {
  const v1::PlanPhase phase = next_->phase();
  if (phase == v1::PLAN_PHASE_BREAK_GLASS) return BreakGlassActive(*next_);
  if (IsFinished(phase)) return NotApplicable("abort", phase);
  next_->set_abort_requested(true);
  changed_ = true;
  if (next_->in_flight().empty() &&
      (phase == v1::PLAN_PHASE_HALTED || phase == v1::PLAN_PHASE_DRAFT)) {
    AbortNow();
  }
  return absl::OkStatus();
}

absl::Status PlanStep::RollbackVersionAllowed() {
  VersionPolicyInput policy;
  policy.direction = PlanDirection::kRollback;
  policy.target = next_->version_before();
  policy.recorded_before = next_->version_before();
  for (const NodeView& v : Views()) {
    if (v.state) policy.running.push_back({v.node, v.state->provider_version()});
  }
  return CheckVersionPolicy(policy);
}

absl::Status PlanStep::RollbackAllowed() {
  if (absl::Status s = RollbackVersionAllowed(); !s.ok()) return s;
  RollbackSafetyInput safety;
  safety.facts = next_->compat();
  safety.baseline.assign(next_->baseline().begin(), next_->baseline().end());
  safety.views = Views();
  return CheckRollbackSafety(safety);
}

absl::Status PlanStep::HandleRollback() {
  const v1::PlanPhase phase = next_->phase();
  if (phase == v1::PLAN_PHASE_BREAK_GLASS) return BreakGlassActive(*next_);
  if (phase != v1::PLAN_PHASE_COMPLETED && phase != v1::PLAN_PHASE_HALTED &&
      phase != v1::PLAN_PHASE_ABORTED && phase != v1::PLAN_PHASE_PAUSED) {
    return NotApplicable("rollback", phase);
  }
  if (!next_->in_flight().empty()) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kHandoffPending,
                     absl::StrCat(next_->in_flight(), " is still in flight; "
                                  "retry once it has handed off."));
  }
  if (absl::Status s = NothingSwapped() ? RollbackVersionAllowed() : RollbackAllowed();
      !s.ok()) {
    return s;
  }
  KMSFLEET_RETURN_IF_ERROR(FailedRestartsSeen(true));
  ReclaimFailedNodes(true);
  next_->clear_halt();
  next_->set_abort_requested(false);
  m_.issued_.clear();
  Become(v1::PLAN_PHASE_ROLLING_BACK, "rollback requested");
  return absl::OkStatus();
}

// Whether no node was ever given its swap in this plan: none took a slot
// (every node still Pending, Staged or Preflighted) and the first swap was
// never authorised. Then nothing is undone, and what makes a walk back
// unsafe (a one-way or wire-format release, a rotation or a registry
// change under it) is what the new release could have written, where
// none ran: a `rollback` of a plan halted in its preflight was refused
// with "fix forward" (found in review); it takes the version policy alone
// and ends the plan RolledBack once the fleet is healthy on the version
// before.
bool PlanStep::NothingSwapped() const {
  if (next_->first_swap_authorised()) return false;
  return std::all_of(next_->nodes().begin(), next_->nodes().end(), [](const v1::PlanNode& n) {
    return n.phase() == v1::PLAN_NODE_PHASE_PENDING || n.phase() == v1::PLAN_NODE_PHASE_STAGED ||
           n.phase() == v1::PLAN_NODE_PHASE_PREFLIGHTED;
  });
}

// `node`'s state in this round if its agent answers now; nullptr when it
// does not. The coordinator keeps a silent agent's last state, which may
// predate that node's step (found in review).
const v1::NodeState* PlanStep::StateAnsweringNow(std::string_view node) {
  const NodeView* v = FindView(Views(), std::string(node));
  return v != nullptr && v->state && v->unreachable_since_unix_ms == 0 ? &*v->state : nullptr;
}

bool PlanStep::ReclaimFailedNodes(bool walk_back) {
  bool restage = false;
  bool retrying = false;
  for (v1::PlanNode& n : *next_->mutable_nodes()) {
    if (n.phase() != v1::PLAN_NODE_PHASE_FAILED) continue;
    if (!retrying && RetryApiServerRestart(n, walk_back)) {
      retrying = true;
      continue;
    }
    if (!walk_back && StagedReleaseGone(n.reason())) {
      n.clear_reason();
      n.clear_message();
      SetNodePhase(n, v1::PLAN_NODE_PHASE_PENDING);
      restage = true;
      continue;
    }
    if (walk_back) {
      // Walk back only a node that does not already run the old version
      // (a failed swap restored it; a failed API server restart did not).
      // Without a state, walk it back: a needless rollback is refused by
      // the node and halts; a missed one would leave the fleet mixed.
      const v1::NodeState* state = StateAnsweringNow(n.node());
      if (state != nullptr && state->provider_version() == next_->version_before()) continue;
    }
    n.clear_reason();
    n.clear_message();
    SetNodePhase(n, walk_back ? v1::PLAN_NODE_PHASE_DONE
                              : v1::PLAN_NODE_PHASE_PREFLIGHTED);
  }
  return restage;
}

// A node whose kube-apiserver restart failed after a step of this
// direction is given the restart alone when seen running the release its
// step installed, and stepped again otherwise (RetryApiServerRestart).
// Not seen at all (its agent not answering this term, or no version
// reported), neither is known to be right (found in review: the node was
// stepped again, a second swap to what it runs, its restart never asked
// again): `resume` or `rollback` is refused until it is.
absl::Status PlanStep::FailedRestartsSeen(bool walk_back) {
  for (const v1::PlanNode& n : next_->nodes()) {
    if (n.phase() != v1::PLAN_NODE_PHASE_FAILED || n.reason() != reason::kApiServerRestartFailed ||
        n.rollback_of().empty() == walk_back) {
      continue;
    }
    const v1::NodeState* state = StateAnsweringNow(n.node());
    const bool seen = state != nullptr;
    if (seen && !state->provider_version().empty()) continue;
    return MakeError(
        absl::StatusCode::kUnavailable, seen ? reason::kVersionUnknown : reason::kAgentUnreachable,
        absl::StrCat(n.node(), "'s kube-apiserver restart failed, and which release ", n.node(),
                     " runs is not known now (", seen ? "its agent reports no provider version"
                                                       : "its agent does not answer",
                     "): it is given the restart again if it runs the release its step "
                     "installed, stepped again otherwise. Retry once `kmsfleetctl status` shows "
                     "its version."),
        {{"node", n.node()}});
  }
  return absl::OkStatus();
}

// A node whose step ran but whose kube-apiserver did not come back ready
// runs the release its step installed: it is not stepped again (forward, a
// second swap to what it runs; back, left Failed while the walk went on
// to the others, found in review). It takes the slot back for its restart
// alone, under an id of its own, so that no other node is disrupted before
// its kube-apiserver answers ready again. One that failed the other way
// (a forward step's node when rolling back) is walked back as before.
bool PlanStep::RetryApiServerRestart(v1::PlanNode& n, bool walk_back) {
  const bool step_was_rollback = !n.rollback_of().empty();
  if (n.reason() != reason::kApiServerRestartFailed || step_was_rollback != walk_back ||
      !next_->in_flight().empty()) {
    return false;
  }
  const std::string& installed =
      step_was_rollback ? next_->version_before() : next_->target_version();
  // Not known to run it: stepped again, as any failed node.
  const v1::NodeState* state = StateAnsweringNow(n.node());
  if (state == nullptr || state->provider_version() != installed) return false;
  n.set_apiserver_restart_retries(n.apiserver_restart_retries() + 1);
  n.clear_reason();
  n.clear_message();
  SetNodePhase(n, v1::PLAN_NODE_PHASE_IN_FLIGHT);
  n.set_stage(v1::PLAN_STEP_STAGE_RESTARTING_APISERVER);
  next_->set_in_flight(n.node());
  Audit(Coordinator(), absl::StrCat(n.node(), "'s kube-apiserver restart asked again (",
                                    ApiServerRestartOperationId(n), ")"));
  return true;
}

absl::Status PlanStep::HandleAckBreakGlass(const std::string& nonce) {
  if (next_->phase() != v1::PLAN_PHASE_BREAK_GLASS) {
    return NotApplicable("ack-break-glass", next_->phase());
  }
  if (nonce != next_->break_glass().nonce()) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kBreakGlassNonceMismatch,
                     absl::StrCat("Nonce ", nonce, " is not the current "
                                  "break-glass nonce; read it with "
                                  "`kmsfleetctl plan`."));
  }
  v1::PlanHalt* halt = next_->mutable_halt();
  halt->set_reason(next_->break_glass().reason());
  halt->set_message(absl::StrCat("Break-glass acknowledged: ",
                                 next_->break_glass().failure()));
  halt->set_node(next_->break_glass().node());
  m_.issued_.clear();
  // Halted keeps the break-glass resume phase; the node in flight must
  // still hand off before any other node is touched.
  const v1::PlanPhase resume = next_->resume_phase();
  next_->set_phase(v1::PLAN_PHASE_HALTED);
  next_->set_resume_phase(resume);
  changed_ = true;
  return absl::OkStatus();
}

}  // namespace kmsfleet
