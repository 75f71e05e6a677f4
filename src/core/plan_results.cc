// How the results of carried-out actions change the plan (plan_step.h).
// A result that no longer fits the plan (another node state, another
// operation id) is stale and ignored: the plan moved on without it.
#include <iterator>

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/swap_machine.h"
#include "plan_step.h"

namespace kmsfleet {
namespace {

// `status` if it carries a reason, else `fallback` with its message.
absl::Status WithReason(const absl::Status& status, std::string_view fallback,
                        std::string_view node) {
  if (!ReasonOf(status).empty()) return status;
  return MakeError(absl::StatusCode::kFailedPrecondition, fallback,
                   absl::StrCat(std::string(node), ": ",
                                std::string(status.message())));
}

bool IsFenceRefusal(std::string_view reason) {
  return reason == reason::kStaleTerm || reason == reason::kStaleFence ||
         reason == reason::kNotInFlight || reason == reason::kUnknownFence ||
         reason == reason::kPlanNotMoving;
}

// A kube-apiserver restart refused before anything ran (no method, a
// command the plan does not name...), as against one that ran and failed:
// APISERVER_RESTART_FAILED, APISERVER_NOT_READY, or no reason at all. A
// journal the agent cannot read (JOURNAL_CORRUPT) does not come here: the
// shell reads it as "not now" (CommandRefusalForPlan), and the plan waits
// on that node, naming the reason, until an operator repairs it.
bool RestartWasRefused(std::string_view reason) {
  return !reason.empty() && reason != reason::kApiServerRestartFailed &&
         reason != reason::kApiServerNotReady;
}

}  // namespace

void PlanStep::ApplyResult(const ActionResult& result) {
  v1::PlanNode* node = FindNode(result.node);
  if (node == nullptr) return;
  if (result.revision != 0 && result.revision < next_->start_revision()) {
    return;  // answers an action of an earlier plan
  }
  if (result.status.code() == absl::StatusCode::kUnavailable) {
    auto [entry, added] = m_.unanswered_.try_emplace(result.node);
    if (added) entry->second.since_unix_ms = in_.now_unix_ms;
    entry->second.status = result.status;
    // The node could not be reached: let its actions be issued again
    // (found in review: a search for "/<node>/" in the keys also matched
    // another node's phase or stage when nodes are named by numbers).
    std::erase_if(m_.issued_, [&](const auto& issued) { return issued.first == result.node; });
    return;
  }
  m_.unanswered_.erase(result.node);
  switch (result.kind) {
    case ResultKind::kStaged: ApplyStaged(*node, result); break;
    case ResultKind::kPreflighted: ApplyPreflighted(*node, result); break;
    case ResultKind::kOperation: ApplyOperation(*node, result); break;
    case ResultKind::kApiServerRestarted:
      ApplyApiServerRestarted(*node, result);
      break;
    case ResultKind::kHandOff: ApplyHandOff(*node, result); break;
  }
}

void PlanStep::ApplyStaged(v1::PlanNode& node, const ActionResult& r) {
  if (node.phase() != v1::PLAN_NODE_PHASE_PENDING) return;
  if (!r.status.ok()) {
    Halt(WithReason(r.status, reason::kStageFailed, node.node()), node.node());
    return;
  }
  node.set_previous_artifact_verified(r.previous_artifact_verified);
  node.set_staged_digest(r.staged_digest);
  SetNodePhase(node, v1::PLAN_NODE_PHASE_STAGED);
  // Held only in Preflight, where the hold is bounded (PlanStep::Holds):
  // a late stage answer in another phase (after a pause and a rollback,
  // say) is committed with the Step it arrives in.
  result_holdable_ = next_->phase() == v1::PLAN_PHASE_PREFLIGHT;
}

void PlanStep::ApplyPreflighted(v1::PlanNode& node, const ActionResult& r) {
  if (node.phase() != v1::PLAN_NODE_PHASE_STAGED) return;
  absl::Status verdict = r.status.ok()
                             ? CheckDoctor({r.doctor})
                             : WithReason(r.status, reason::kDoctorFailed,
                                          node.node());
  if (verdict.ok()) {
    verdict = CheckRotation({r.rotation}, Acknowledged(next_->acknowledgements(),
                                                       reason::kAckStateCheckpointNotCurrent));
  }
  if (!verdict.ok()) {
    // Its release is gone from the node since it was staged: `resume`
    // stages it there again (StagedReleaseGone), not just preflights.
    if (StagedReleaseGone(ReasonOf(verdict))) SetNodePhase(node, v1::PLAN_NODE_PHASE_PENDING);
    Halt(verdict, node.node());
    return;
  }
  SetNodePhase(node, v1::PLAN_NODE_PHASE_PREFLIGHTED);
  result_holdable_ = next_->phase() == v1::PLAN_PHASE_PREFLIGHT;
}

void PlanStep::ApplyOperation(v1::PlanNode& node, const ActionResult& r) {
  if (next_->in_flight() != node.node() ||
      node.stage() != v1::PLAN_STEP_STAGE_SWAPPING ||
      r.operation_id != node.operation_id()) {
    return;
  }
  if (!r.status.ok() && IsFenceRefusal(ReasonOf(r.status))) {
    // The fence, not the command, was refused (the node holds another
    // record than the one sent, or one whose plan does not move on its
    // own): nothing ran; send it again under the
    // committed record's fence, if the plan still moves on its own.
    if (!ResendsNow()) return GiveSlotBackUntouched(node, FenceRefusedText(node, r.status));
    m_.issued_.clear();
    return;
  }
  if (EndedByItsAgent(r)) {
    if (!ResendsNow()) {
      return GiveSlotBackUntouched(node, EndedByItsAgentText(node, ReasonOf(r.status)));
    }
    if (node.agent_stop_retries() < kMaxAgentStopRetries) {
      return SendAgainAfterAgentStop(node, ReasonOf(r.status));
    }
  }
  if (!r.status.ok()) {
    // The agent refused the command when it was admitted, before anything
    // was stopped: the node failed its step with its provider untouched.
    // Re-sending it would only be refused again.
    node.set_reason(ReasonOf(r.status).empty() ? reason::kSwapFailedRestored
                                               : ReasonOf(r.status));
    node.set_message(absl::StrCat(node.node(), " refused the command: ",
                                  std::string(r.status.message())));
    node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
    changed_ = true;
    RestartParity();
    return;
  }
  switch (r.outcome) {
    case OperationOutcome::kNotFound:
      // The command never reached the node (e.g. the coordinator died
      // between commit and send): send it again, if the plan still moves
      // on its own (found in review: a pause or abort did not stop it).
      if (!ResendsNow()) {
        return GiveSlotBackUntouched(
            node, absl::StrCat(node.operation_id(), " never reached ", node.node()));
      }
      if (absl::Status unsafe = RollbackNoLongerAllowed(node); !unsafe.ok()) {
        // Found in review: sent again follow-only while rollback safety
        // failed (a rotation promoted since), it came back NotFound round
        // after round, the node holding the slot, and neither `resume` nor
        // `rollback` applied. As the walk-back's own gate (NodeGates), the
        // plan halts; the node, untouched, is still upgraded.
        Halt(unsafe, node.node());
        return GiveSlotBackUntouched(
            node, absl::StrCat(node.operation_id(), " never reached ", node.node()));
      }
      m_.issued_.clear();
      return;
    case OperationOutcome::kStable:
      node.set_stage(RestartRequired()
                         ? v1::PLAN_STEP_STAGE_RESTARTING_APISERVER
                         : v1::PLAN_STEP_STAGE_HANDING_OFF);
      result_holdable_ = !RestartRequired();
      break;
    case OperationOutcome::kRolledBack:
      node.set_reason(r.outcome_reason.empty() ? reason::kSwapFailedRestored
                                               : r.outcome_reason);
      node.set_message(absl::StrCat(node.node(), " failed its operation and "
                                    "was restored: ", r.outcome_message));
      node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
      break;
    case OperationOutcome::kRollbackFailed: {
      // Found in review: a target kept on purpose (CheckRestoreOnceServed)
      // read as any failed restore, its refusal at the end of a message
      // the plan may cut, and the manual steps said to restore. Its own
      // reason leads, and the steps say to fix forward.
      const bool kept = KeptTheTargetOnPurpose(r.outcome_reason);
      const bool promoted = r.outcome_reason == reason::kRollbackRefusedKeyRotated;
      node.set_reason(kept ? r.outcome_reason : std::string(reason::kRollbackFailed));
      // Once acknowledged, the node must still hand off; never swap again.
      node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
      node.set_message(
          kept ? absl::StrCat(node.node(), " failed after ", next_->target_version(),
                              promoted ? " had promoted a key rotation" : " had been ready",
                              ", and kept it (RollbackFailed, ", r.outcome_reason, "): ",
                              promoted ? "the older release never promoted that key: "
                                       : "the plan's facts forbid going back: ",
                              r.outcome_message)
               : absl::StrCat(node.node(), " failed and could not be restored (RollbackFailed): ",
                              r.outcome_message));
      EnterBreakGlass(MakeError(absl::StatusCode::kFailedPrecondition, node.reason(),
                                node.message()),
                      node.node());
      break;
    }
  }
  changed_ = true;
  if (!replaying_) RestartParity();
}

bool PlanStep::EndedByItsAgent(const ActionResult& r) const {
  // (An Unavailable answer never gets here: ApplyResult keeps it as
  // unanswered.) SetOperationResult gives these reasons only to an
  // operation that ended before the stop.
  const std::string why = ReasonOf(r.status);
  return why == reason::kAgentStopping || why == reason::kAgentRestarted;
}

// "<node> refused the fence of <operation> before it ran (<why>)", or for
// PLAN_NOT_MOVING, why the fence was right and the command still refused.
std::string PlanStep::FenceRefusedText(const v1::PlanNode& node, const absl::Status& refusal) {
  const std::string why = ReasonOf(refusal);
  if (why == reason::kPlanNotMoving) {
    // The fence was right: the node holds the pause or abort already.
    return absl::StrCat(node.node(), " refused ", node.operation_id(),
                        " before it ran: the plan record it holds does not move on its own (",
                        why, ")");
  }
  return absl::StrCat(node.node(), " refused the fence of ", node.operation_id(),
                      " before it ran (", why, ")");
}

// "<node>'s agent ended <operation> before the provider's stop (<why>)".
std::string PlanStep::EndedByItsAgentText(const v1::PlanNode& node, const std::string& why) {
  return absl::StrCat(node.node(), "'s agent ended ", node.operation_id(),
                      " before the provider's stop (", why, ")");
}

bool PlanStep::ResendsNow() const { return MovesOnItsOwn(*next_); }

// The agent stopped (SIGTERM, a restart) before the provider's stop and
// ended the operation there: nothing was touched and nothing is known
// against the release. Sent again under a new id, committed before it
// goes out; the ended id keeps answering as it ended.
void PlanStep::SendAgainAfterAgentStop(v1::PlanNode& node, const std::string& why) {
  const std::string ended = EndedByItsAgentText(node, why);
  node.set_agent_stop_retries(node.agent_stop_retries() + 1);
  SetNextOperationId(node);
  node.set_message(absl::StrCat(ended, "; sent again as ", node.operation_id(), ", retry ",
                                node.agent_stop_retries(), " of ", kMaxAgentStopRetries));
  m_.issued_.clear();
  changed_ = true;
}

// For a walk-back rollback that never ran: RollbackAllowed's refusal when
// it is for good (a one-way or wire-format release, a rotation promoted,
// records removed, a schema changed, a node on a release older than the
// version before) and the other gates pass; OK
// otherwise, and for a swap. A refusal for what cannot be read now (a
// key_id hash, a rotation state, registry facts or a version not shown:
// the in-flight node itself may be restarting) waits, as an unhealthy
// fleet does (found in review of the first version of this rule).
absl::Status PlanStep::RollbackNoLongerAllowed(const v1::PlanNode& node) {
  if (node.rollback_of().empty()) return absl::OkStatus();
  if (!OthersGates(node.node(), false, nullptr).ok()) return absl::OkStatus();
  absl::Status allowed = RollbackAllowed();
  const std::string why = ReasonOf(allowed);
  const bool for_good = why == reason::kRollbackRefusedOneWay ||
                        why == reason::kRollbackRefusedWireFormat ||
                        why == reason::kRollbackRefusedKeyRotated ||
                        why == reason::kRollbackRefusedRemoved ||
                        why == reason::kRollbackRefusedSchema ||
                        why == reason::kVersionNotHigher;
  return for_good ? allowed : absl::OkStatus();
}

// ...but not while the plan is not moving on its own: the node hands its
// slot back as it was before its step (Preflighted, or Done on the way
// back), to be taken again on resume, or the abort completes.
void PlanStep::GiveSlotBackUntouched(v1::PlanNode& node, const std::string& what) {
  node.set_message(absl::StrCat(what,
                                "; not sent again while the plan is ",
                                next_->abort_requested()
                                    ? std::string("aborting")
                                    : std::string(PlanPhaseName(next_->phase())),
                                ": the node gives its slot back untouched"));
  SetNodePhase(node, node.rollback_of().empty() ? v1::PLAN_NODE_PHASE_PREFLIGHTED
                                                : v1::PLAN_NODE_PHASE_DONE);
  node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
  node.set_given_back_untouched(true);
  changed_ = true;
}

void PlanStep::ApplyApiServerRestarted(v1::PlanNode& node,
                                       const ActionResult& r) {
  if (next_->in_flight() != node.node() ||
      node.stage() != v1::PLAN_STEP_STAGE_RESTARTING_APISERVER) {
    return;
  }
  if (!r.operation_id.empty() && r.operation_id != ApiServerRestartOperationId(node)) {
    return;  // the answer to the restart before a retry, come late
  }
  if (!r.status.ok() && IsFenceRefusal(ReasonOf(r.status))) {
    // The fence was refused, so nothing was restarted: ask again under
    // the committed record's fence.
    m_.issued_.clear();
    return;
  }
  if (!r.status.ok() && RestartWasRefused(ReasonOf(r.status))) {
    // Refused when it was admitted (a journal the agent cannot read, no
    // method, a command the plan does not name): nothing was restarted. The node still failed
    // its restart (so no auto-rollback starts, WhyNoAutoRollback), and the
    // message says it never ran, with the agent's reason and words.
    node.set_reason(reason::kApiServerRestartFailed);
    node.set_message(absl::StrCat(node.node(), " refused to restart kube-apiserver (",
                                  ReasonOf(r.status), "), so it was not restarted: ",
                                  std::string(r.status.message())));
  } else if (!r.status.ok()) {
    // Found in review: a restart that never ran (the unit's job or the
    // command failed, an agent without the RPC) read "did not come back
    // ready" too; only APISERVER_NOT_READY is that.
    const bool not_ready = ReasonOf(r.status) == reason::kApiServerNotReady;
    node.set_reason(reason::kApiServerRestartFailed);
    node.set_message(absl::StrCat("kube-apiserver on ", node.node(),
                                  not_ready ? " did not come back ready: "
                                            : " could not be restarted: ",
                                  std::string(r.status.message())));
  }
  // The node's own method and words (the plan's settings name the
  // coordinator's; found in review, the plan showed that for every node).
  if (r.status.ok()) node.set_apiserver_restart(r.apiserver_restart);
  node.set_stage(v1::PLAN_STEP_STAGE_HANDING_OFF);
  changed_ = true;
  RestartParity();
}

// Parity must be seen stable again after a node's step, over rounds that
// all began after it ended: this Step's views were asked for after its
// results arrived (PlanInput), so they are the first such round. (So a
// Step on the last round again that ends a node's step is not taken: it
// reads the views.) Counting from here rather than from the hand-off lets
// the rounds run while the result and the hand-off commit, and the slot is
// then cleared and given to the next node in one commit.
void PlanStep::RestartParity() { m_.parity_.RestartWith(Views()); }

void PlanStep::ApplyHandOff(v1::PlanNode& node, const ActionResult& r) {
  if (next_->in_flight() != node.node() ||
      node.stage() != v1::PLAN_STEP_STAGE_HANDING_OFF) {
    return;
  }
  if (!r.released) {
    // Architecture §6: a node whose operation is open, unknown or ended
    // RollbackFailed is not released; no other node may be disrupted.
    EnterBreakGlass(
        MakeError(absl::StatusCode::kFailedPrecondition,
                  reason::kNodeNotReleasable,
                  absl::StrCat(node.node(), " did not release its slot: its "
                               "operation is still open or ended "
                               "RollbackFailed.")),
        node.node());
    return;
  }
  if (node.given_back_untouched()) {
    node.set_given_back_untouched(false);
    changed_ = true;
    if (StepRanAfterAll(node, r)) {
      // Its result is known only now: the rounds before it do not count
      // toward the next slot, as after any node's result (found in
      // review: the plain give-back reset them, this path did not). Not
      // again when a held hand-off is replayed, as ApplyOperation.
      if (!replaying_) RestartParity();
      if (node.reason().empty() && RestartRequired()) {
        // Its swap ended Stable: kube-apiserver is restarted before the
        // node hands off, as after any step (found in review).
        node.set_stage(v1::PLAN_STEP_STAGE_RESTARTING_APISERVER);
        return;
      }
    }
  }
  next_->set_in_flight("");
  node.set_stage(v1::PLAN_STEP_STAGE_UNSPECIFIED);
  changed_ = true;
  if (node.phase() != v1::PLAN_NODE_PHASE_IN_FLIGHT) {
    // Released after a break-glass acknowledgement (the node was mended by
    // hand since its result), or a step given back untouched while the
    // plan was not moving on its own (GiveSlotBackUntouched): the node
    // keeps the phase it has, and parity counts again from the next round.
    m_.parity_.Reset();
    return;
  }
  node.set_done_unix_ms(in_.now_unix_ms);
  handed_off_ = true;
  result_holdable_ = node.reason().empty();
  if (!node.reason().empty()) {
    SetNodePhase(node, v1::PLAN_NODE_PHASE_FAILED);
    AfterFailure(node);
    return;
  }
  SetNodePhase(node, node.rollback_of().empty()
                         ? v1::PLAN_NODE_PHASE_DONE
                         : v1::PLAN_NODE_PHASE_ROLLED_BACK);
}

// A step given back untouched (GiveSlotBackUntouched) may have run after
// all: the lookup found nothing, then the command reached the node (a
// deposed coordinator's call still in flight, found in review; the
// simulator's adversary replaying it under its still valid fence, seed
// 1908). Released at the current record, the node can no longer start it,
// and its answer names its last operation. If that is the step, the node
// is InFlight again and its step ends as any other does: Stable, Done (or
// RolledBack on the way back), after the kube-apiserver restart if the
// plan requires one; RolledBack, Failed, with what follows a failure
// (found in review: first recorded Done without the restart, and a failure
// dropped). True when the step ran.
bool PlanStep::StepRanAfterAll(v1::PlanNode& node, const ActionResult& released) {
  if (node.operation_id().empty() || released.last_operation_id != node.operation_id()) {
    return false;
  }
  const bool stable = released.last_operation_phase == PhaseName(SwapPhase::kStable);
  // InFlight since it was first taken: in_flight_since_unix_ms is kept.
  node.set_phase(v1::PLAN_NODE_PHASE_IN_FLIGHT);
  node.set_phase_since_unix_ms(in_.now_unix_ms);
  if (!stable) node.set_reason(reason::kSwapFailedRestored);
  node.set_message(absl::StrCat(node.operation_id(), " reached ", node.node(),
                                " after the plan had given its slot back untouched, and ended ",
                                released.last_operation_phase,
                                stable ? ": it is recorded as the node's step"
                                       : ": the node failed its step and was restored"));
  Audit(Coordinator(), absl::StrCat(node.node(), "'s step ", node.operation_id(),
                                    " ran after all (", released.last_operation_phase, ")"));
  changed_ = true;
  return true;
}

namespace {

// A static-pod node's own manifest stopped its swap: it could not be
// edited, or was edited by someone since the swap read it.
bool ManifestRefused(std::string_view reason) {
  for (std::string_view code :
       {reason::kManifestChanged, reason::kManifestMalformed, reason::kManifestNotAPod,
        reason::kManifestContainerNotFound, reason::kManifestImageUneditable,
        reason::kManifestImageInvalid, reason::kManifestEditUnverified,
        reason::kManifestCrossDevice}) {
    if (reason == code) return true;
  }
  return false;
}

// Failures after which walking the fleet back would do harm or no good:
// the end of the halt's message, or nullptr.
const char* WhyNoAutoRollback(std::string_view failure_reason) {
  if (failure_reason == reason::kApiServerRestartFailed) {
    // The provider there is serving; its API server is not. Walking back
    // would take other nodes' providers down while it is.
    return "while a kube-apiserver is not ready: bring it back, then `kmsfleetctl rollback` "
           "or `resume`.";
  }
  if (failure_reason == reason::kImageRefNotPinned ||
      failure_reason == reason::kRollbackArtifactMissing ||
      failure_reason == reason::kImagePullPolicyAlways) {
    // Refused before the stop: the node could not restore the image it
    // runs. Nothing failed against the release.
    return "for a node that could not restore the image it runs: pin its manifest's image "
           "by digest, pull the image there, or set its imagePullPolicy to IfNotPresent, "
           "then `kmsfleetctl resume`.";
  }
  if (ManifestRefused(failure_reason)) {
    // Found in review: an operator's edit of one node's manifest, or a
    // line kmsfleet cannot edit, walked back nodes that had not failed.
    return "for a node whose manifest could not be edited or changed under the swap: fix "
           "the manifest as the reason says, then `kmsfleetctl resume`.";
  }
  if (failure_reason == reason::kArtifactIo) {
    // That node's disk refused a write (its journal, a capture): nothing
    // failed against the release, and the node was not touched.
    return "for a node whose disk refused a write (ARTIFACT_IO): mend the disk there, then "
           "`kmsfleetctl resume`.";
  }
  if (failure_reason == reason::kRotationInProgress ||
      failure_reason == reason::kRotationPlanUntrusted) {
    // The node's own check before its stop found a Transit rotation under
    // way, or could not judge one (rotation-plan failed or said nothing
    // trustworthy): nothing failed against the release, and a walk back
    // now would restart providers during the rotation the runbook defers
    // for (found in review).
    return "while a Transit rotation is under way or cannot be judged: wait until "
           "rotation-plan shows it settled on every node, then `kmsfleetctl resume` (or "
           "`kmsfleetctl rollback`).";
  }
  if (failure_reason == reason::kActiveKeyNotExpected) {
    // The node's own check before its stop: its registry promoted another
    // key than the fleet's parity hash. Nothing failed against the
    // release; a walk back now would restart providers during that
    // promotion, and on older releases that never promoted it.
    return "while a node's active key is not the fleet's: wait until `kmsfleetctl status` "
           "shows one key_id hash on every node, then `kmsfleetctl resume`; if it shows that "
           "already, that node's key registry names another key than its provider serves "
           "(the message says so): mend it there first.";
  }
  if (failure_reason == reason::kStateCheckpointNotCurrent) {
    // The node's own check before its stop: nothing failed against the
    // release, and a walk back would restart providers whose registry
    // checkpoint anchors nothing.
    // Found in review: once some node runs the target, a new upgrade is
    // refused FLEET_VERSIONS_MIXED, and a plan gains no acknowledgement
    // after its start.
    return "for a node whose registry checkpoint is not current: look into it as the reason "
           "says. Once its state is judged right: with no node swapped yet, `kmsfleetctl "
           "abort` and upgrade again with --acknowledge STATE_CHECKPOINT_NOT_CURRENT; with "
           "some already on the target, `kmsfleetctl abort`, then for each node left "
           "`kmsfleetctl plan commit --in-flight NODE` and `kmsfleetctl node swap ... --fence "
           "... --acknowledge STATE_CHECKPOINT_NOT_CURRENT` on it (docs/runbooks/upgrade.md); "
           "or `kmsfleetctl rollback`.";
  }
  if (StagedReleaseGone(failure_reason)) {
    // Nothing failed on the node: its release was staged again or removed.
    return "for a release staged again or removed by hand: `kmsfleetctl resume` stages the "
           "plan's release there again, `kmsfleetctl rollback` walks the fleet back.";
  }
  return nullptr;
}

}  // namespace

bool StagedReleaseGone(std::string_view reason) {
  return reason == reason::kStagedArtifactChanged || reason == reason::kNotStaged;
}

void PlanStep::AfterFailure(const v1::PlanNode& node) {
  const absl::Status failure = MakeError(absl::StatusCode::kFailedPrecondition,
                                         node.reason(), node.message());
  // An abort requested meanwhile ends the plan: it halts, so the abort
  // keeps the failure in its record (found in review: auto-rollback began
  // and the abort then ended it, the failure dropped from the record).
  const bool rolling = !next_->abort_requested() &&
                       (next_->phase() == v1::PLAN_PHASE_ROLLING ||
                        (next_->phase() == v1::PLAN_PHASE_PAUSED &&
                         next_->resume_phase() == v1::PLAN_PHASE_ROLLING));
  if (!rolling || !next_->settings().auto_rollback()) {
    Halt(failure, node.node());
    return;
  }
  if (const char* why_not = WhyNoAutoRollback(node.reason()); why_not != nullptr) {
    Halt(MakeError(absl::StatusCode::kFailedPrecondition, node.reason(),
                   absl::StrCat(failure.message(), " Auto-rollback is not started ", why_not)),
         node.node());
    return;
  }
  if (absl::Status allowed = RollbackAllowed(); !allowed.ok()) {
    Halt(MakeError(absl::StatusCode::kFailedPrecondition, ReasonOf(allowed),
                   absl::StrCat(failure.message(), " Auto-rollback refused: ",
                                allowed.message())),
         node.node());
    return;
  }
  const std::string why = absl::StrCat("auto-rollback after ", node.node(),
                                      " failed (", node.reason(), ")");
  ReclaimFailedNodes(true);
  if (next_->phase() == v1::PLAN_PHASE_PAUSED) {
    // An operator's pause holds: the walk back starts on resume.
    next_->set_resume_phase(v1::PLAN_PHASE_ROLLING_BACK);
    Audit(Coordinator(), absl::StrCat(why, "; starts on resume"));
    return;
  }
  Become(v1::PLAN_PHASE_ROLLING_BACK, why);
}

}  // namespace kmsfleet
