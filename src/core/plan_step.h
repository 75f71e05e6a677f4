// One Step of the plan machine (not a public header): a working copy of the
// committed plan that results, commands and gates change, and the actions
// the changed (or unchanged) plan authorises. PlanMachine::Step builds one,
// runs it, and turns it into a PlanReady.
// Thread-compatible: lives for one Step.
#ifndef KMSFLEET_SRC_CORE_PLAN_STEP_H_
#define KMSFLEET_SRC_CORE_PLAN_STEP_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet {

// Whether a node refused its swap because the release the plan staged and
// preflighted there is no longer what is staged: staged again since
// (STAGED_ARTIFACT_CHANGED) or removed (NOT_STAGED, e.g. a folder cleaned
// up by hand). Nothing failed on the node: `resume` stages it again, and
// no auto-rollback walks the fleet back for it.
bool StagedReleaseGone(std::string_view reason);

class PlanStep {
 public:
  PlanStep(PlanMachine& machine, const PlanInput& input);

  // Runs the command (if any), the results, then the phase's decisions.
  void Run();
  PlanReady TakeReady();
  // Whether a decision read the views or the parity streak they feed.
  bool read_views() const { return read_views_; }
  // Whether this Step's change is best not committed yet: it only records
  // results, and the decisions after them changed nothing. Either the
  // in-flight node's Stable result (its hand-off goes out now, under the
  // fence the swap ran under), or that and the node's released hand-off
  // while fresh parity rounds are still counted; or stage and preflight
  // results while other nodes' are awaited (their preflight goes out now),
  // for up to kMaxPreflightHoldMs. The change is then made again in later
  // Steps (TakeHeld) and committed with the next node's slot, or with
  // whatever else changes: one commit per node instead of two or three,
  // and one for the whole preflight. docs/fleet-plan.md §1.
  bool Holds() const;
  std::vector<ActionResult> TakeHeld() { return std::move(holdable_); }
  // Takes the kube-apiserver restarts out of `actions`, those of a Step
  // whose change is proposed, and forgets they were issued: the first Step
  // after the commit that changes nothing issues them again.
  void WithdrawApiServerRestarts(std::vector<PlanAction>& actions);
  // For PlanMachine::ReleaseCommitted, on the committed plan: whether the
  // gates a step sent anew must pass (OthersGates) pass for `action` (OK,
  // or the first that fails), and forgetting it was issued, so that the
  // next Step issues it again.
  absl::Status OthersStillPass(const PlanAction& action);
  void Unissue(const PlanAction& action);

 private:
  // ---- plan_commands_core.cc: operator commands ----
  void HandleCommand(const OperatorCommand& command);
  absl::Status HandleStart(const OperatorCommand& command);
  // The Draft plan for an accepted start: order, settings, facts, baseline.
  // REQUIRES: every view holds a state; `views` is not empty.
  v1::FleetPlan NewPlan(const PlanRequest& request,
                        const std::vector<std::string>& order,
                        const std::vector<const NodeView*>& views,
                        const std::vector<std::string>& required_acks) const;
  absl::Status HandlePause();
  absl::Status HandleResume();
  void RestageUnverifiedNodes();
  absl::Status HandleAbort();
  absl::Status HandleRollback();
  absl::Status HandleAckBreakGlass(const std::string& nonce);
  absl::Status RollbackAllowed();
  // RollbackAllowed's version policy alone.
  absl::Status RollbackVersionAllowed();
  bool NothingSwapped() const;
  absl::Status FailedRestartsSeen(bool walk_back);
  const v1::NodeState* StateAnsweringNow(std::string_view node);
  // Failed nodes are tried again: walked back (unless they already run the
  // version before the plan) or, forward, preflighted again; a node whose
  // release was staged again since its preflight goes back to Pending, to
  // be staged and preflighted again. Returns whether one did.
  bool ReclaimFailedNodes(bool walk_back);
  bool RetryApiServerRestart(v1::PlanNode& node, bool walk_back);

  // ---- plan_step.cc: results and phases ----
  void ApplyResult(const ActionResult& result);
  // ApplyResult, noting whether the result is one Holds() may keep.
  void ApplyAndSortResult(const ActionResult& result);
  void ApplyStaged(v1::PlanNode& node, const ActionResult& result);
  void ApplyPreflighted(v1::PlanNode& node, const ActionResult& result);
  void ApplyOperation(v1::PlanNode& node, const ActionResult& result);
  // Whether `result` ended the node's operation before the provider's stop
  // because its agent stopped or restarted; whether the plan may send it
  // again now; doing so, or giving the node's slot back untouched.
  bool EndedByItsAgent(const ActionResult& result) const;
  bool ResendsNow() const;
  void SendAgainAfterAgentStop(v1::PlanNode& node, const std::string& why);
  // `what`: what ended the step before anything was touched.
  void GiveSlotBackUntouched(v1::PlanNode& node, const std::string& what);
  static std::string EndedByItsAgentText(const v1::PlanNode& node, const std::string& why);
  static std::string FenceRefusedText(const v1::PlanNode& node, const absl::Status& refusal);
  // Names the node's next operation: "<plan>.<node>.swap.<revision>" (or
  // .rollback.), the revision being that of the change that authorises it.
  void SetNextOperationId(v1::PlanNode& node) const;
  void ApplyApiServerRestarted(v1::PlanNode& node, const ActionResult& result);
  void ApplyHandOff(v1::PlanNode& node, const ActionResult& result);
  bool StepRanAfterAll(v1::PlanNode& node, const ActionResult& released);
  void RestartParity();
  void AfterFailure(const v1::PlanNode& node);
  void DecidePhase();
  void DecidePreflight();
  void DecideInFlight();
  void DecideNextNode();
  void DecideCompletion(bool rolling_back);
  absl::Status NodeGates(bool rolling_back);
  // OpenBao's health in this round: a start refuses on it, a gate waits.
  absl::Status OpenBaoGate();
  // PLAN_MEMBERS_CHANGED unless the plan's nodes are this coordinator's
  // voters.
  absl::Status MembersUnchanged() const;
  // Records every node's facts again, from the round the gates just passed.
  void RetakeBaseline();
  // The gates a swap or rollback must pass again when it is sent anew.
  absl::Status OthersStillHealthy(std::string_view in_flight, bool rollback, std::string* hash);
  absl::Status OthersGates(std::string_view in_flight, bool rollback, std::string* hash);
  // OBSERVATIONS_TOO_OLD when the round in `views` was asked for more than
  // kMaxViewsAgeAtSendMs ago (PlanInput::views_asked_mono_ms): checked
  // after every other gate of a start (OthersStillHealthy, a restart's,
  // OthersStillPass), not in OthersGates.
  absl::Status ViewsFreshEnough() const;
  absl::Status RollbackNoLongerAllowed(const v1::PlanNode& node);
  // Issues the in-flight node's kube-apiserver restart once OthersGates
  // pass; blocks on them until then, unless the plan is aborting: then the
  // node gives its slot back, its restart not confirmed.
  void IssueApiServerRestart(v1::PlanNode& node);
  // Issues a swap or rollback of the in-flight node: follow-only while
  // OthersStillHealthy fails.
  void IssueOperation(PlanAction action);
  void BlockOnUnanswered();

  // ---- helpers (plan_step.cc) ----
  v1::PlanNode* FindNode(std::string_view name);
  void Become(v1::PlanPhase phase, std::string_view why);
  void Halt(const absl::Status& why, std::string_view node);
  // Ends the plan as Aborted (no node in flight), saying so in `halt`.
  void AbortNow();
  void EnterBreakGlass(const absl::Status& why, std::string_view node);
  void SetNodePhase(v1::PlanNode& node, v1::PlanNodePhase phase);
  void Audit(std::string_view who, std::string_view what,
             const std::vector<std::string>& acks = {});
  static PlanAction MakeAction(ActionKind kind, std::string_view node);
  // Queues `action` unless already issued for the node's current state.
  void Issue(PlanAction action);
  bool Issued(const PlanAction& action);
  void Block(const absl::Status& why);
  // Records `guard`'s verdict in the plan, replacing an older one.
  void RecordGuard(std::string_view guard, const absl::Status& result);
  bool RestartRequired() const;
  // Cuts the texts of next_ to kMaxPlanTextBytes / kMaxPlanReasonBytes.
  void BoundTexts();
  std::string Coordinator() const;
  // What decisions read of the observations; each use is noted (a Step on
  // the last round again that reads them is not taken).
  const std::vector<NodeView>& Views();
  const ParityStreak& Parity();
  const std::optional<OpenBaoProbe>& OpenBao();  // part of the round, as the views

  PlanMachine& m_;
  const PlanInput& in_;
  std::optional<v1::FleetPlan> next_;  // working copy; nullopt = no plan
  bool changed_ = false;
  // Whether the phase's decisions (not the command or the results)
  // changed the plan.
  bool decided_change_ = false;
  bool read_views_ = false;
  // Results applied again from PlanMachine::held_: their parity streak was
  // restarted when they first arrived.
  bool replaying_ = false;
  // Set by the Apply* of a result that Holds() may keep uncommitted.
  bool result_holdable_ = false;
  bool handed_off_ = false;
  // A hand-off is asked while the parity rounds counted from the node's
  // result are still short (PlanReady::observe_at_once).
  bool rounds_beside_hand_off_ = false;
  bool only_holdable_ = true;
  std::vector<ActionResult> holdable_;
  std::vector<PlanAction> actions_;
  absl::Status refusal_;
  absl::Status blocked_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_SRC_CORE_PLAN_STEP_H_
