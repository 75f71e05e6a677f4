// What a coordinator may ask of a node under a fence (architecture.md §6,
// issue 9; found by the simulator's adversary): a fence says which node may
// be disrupted, not which command. A caller with a member certificate
// speaks for a coordinator, so its swap or rollback must be the one the
// committed plan asks of this node: the plan's operation id, and the
// plan's target (or, walking back, the swap being undone). Operators and
// local root act on their own authority (break-glass) and are not bound.
//
// Pure. Thread-safe: a free function over values.
#ifndef KMSFLEET_CORE_PLAN_COMMAND_GUARD_H_
#define KMSFLEET_CORE_PLAN_COMMAND_GUARD_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/v1/peer.pb.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

// A disruptive command as the agent received it.
struct NodeCommand {
  enum class Kind { kSwap, kRollback, kRestartApiServer };
  Kind kind = Kind::kSwap;
  // kRestartApiServer: the restart id, "<the swap's operation id>.apiserver".
  std::string operation_id{};
  std::string version{};          // kSwap: the version to install
  std::string of_operation_id{};  // kRollback: the swap to undo
  // kSwap, kRollback: the settings the command carries, which a member's
  // command must take from the plan (a shorter window releases the node
  // before it is known stable; no digest skips STAGED_ARTIFACT_CHANGED).
  int64_t stabilization_ms = 0;
  std::string expected_staged_digest{};  // kSwap only
  // A member's command: the member whose certificate sent it.
  std::string sent_by{};
};

// Who leads the term this node is in, as its election knows it ("" when
// it has heard from no leader in `term`).
struct LeaderOfTerm {
  std::string leader{};
  uint64_t term = 0;
};

// OK when `command` was sent by the leader this node follows, in the term
// of its committed record. Found in review: any member's certificate
// passed the plan check, so a learner or another voter could send the
// in-flight node the plan's own step while the coordinator held it back
// (another node's provider down, OpenBao sealed, parity lost: a
// follow-only send, PlanStep::IssueOperation), and take two providers down.
// Only the leader weighs those gates. Refused Unavailable
// COMMAND_NOT_FROM_LEADER (metadata sent_by, leader, term): a node that has
// not yet heard from its term's leader (just restarted) refuses the leader
// too, which asks again.
absl::Status CheckSentByLeader(const v1::PlanRecord& committed, std::string_view self,
                               const NodeCommand& command, const LeaderOfTerm& following);

// OK when `committed` holds a fleet plan that names `self` in flight with
// a step in progress and `command` is exactly that step (a swap or
// rollback while SWAPPING, with the plan's stabilization_ms and, for a
// swap, the node's staged digest; the restart of kube-apiserver that
// follows the node's swap while RESTARTING_APISERVER). Refusals:
// FailedPrecondition COMMAND_NOT_IN_PLAN naming the plan's step and what was
// sent (metadata plan, expected, sent), also when the record holds no fleet
// plan (a raw record from `kmsfleetctl plan commit` binds operators only).
// A swap or rollback while the plan does not move on its own (not Rolling
// or RollingBack, or an abort requested): FailedPrecondition
// PLAN_NOT_MOVING.
absl::Status CheckCommandAgainstPlan(const v1::PlanRecord& committed, std::string_view self,
                                     const NodeCommand& command);

// The id the plan's kube-apiserver restart of `step` is sent under: the
// operation id of the swap it follows, and ".retry-<n>" once `resume` or
// `rollback` asked for it again (PlanNode.apiserver_restart_retries). The
// agent's restart id adds ".apiserver".
std::string ApiServerRestartOperationId(const v1::PlanNode& step);

// A member's Stage, or its Preflight of a staged release (a dry run's
// installed-only preflight runs the installed release and is not bound).
struct ReleaseCommand {
  enum class Kind { kStage, kPreflight };
  Kind kind = Kind::kStage;
  std::string version{};
  // kStage: the sources as sent (StageRequest).
  std::string source{}, checksums{}, signature{}, artifact_name{}, image{}, image_ref{};
  // The member whose certificate sent it.
  std::string sent_by{};
};

// OK when `committed` holds a fleet plan, not finished, that names `self`
// among its nodes and whose target is the command's version; a stage must
// also name exactly the plan's sources (artifact, checksums, signature,
// image, kit), as the coordinator sends them (no artifact name). Found in
// review: unbound, a member's certificate could have every node stage a
// release of its choosing from any source it names (unsigned where
// executor.allow_unsigned), then run it as root in a preflight. Refusals:
// - Unavailable UNKNOWN_FENCE when `fence` (the record the coordinator
//   sent under) is not yet committed here, and Unavailable
//   PLAN_CHANGE_PENDING when none was sent and no plan is under way here:
//   this node's record may lag the coordinator's, which sends the command
//   again (a refusal that halted the plan would stop it for a lost
//   message; found in review);
// - FailedPrecondition COMMAND_NOT_IN_PLAN (metadata plan, expected,
//   sent) otherwise.
absl::Status CheckReleaseAgainstPlan(const v1::PlanRecord& committed, std::string_view self,
                                     const ReleaseCommand& command,
                                     const std::optional<v1::Fence>& fence);

// CheckReleaseAgainstPlan once the fence is seen, after the rule of
// CheckSentByLeader: found in review, another member's key could have the
// in-flight node stage the plan's release again, in place, and so hold
// the coordinator's swap of it off (OPERATION_IN_PROGRESS), or run its
// doctor again and again. Refusals as those two functions'.
absl::Status BindReleaseToPlan(const v1::PlanRecord& committed, std::string_view self,
                               const ReleaseCommand& command,
                               const std::optional<v1::Fence>& fence,
                               const LeaderOfTerm& following);

// What the committed plan binds a member's command to beyond its step.
struct PlanBinding {
  // A swap: why the release it replaces must not come back on this node
  // once the plan's target has been ready there, as a reason code
  // (ROLLBACK_REFUSED_ONE_WAY, ROLLBACK_REFUSED_WIRE_FORMAT), or "" when
  // it may. From the plan's compatibility facts (CheckRollbackAcrossRelease):
  // the runbook never rolls back once the newer release may have written
  // what the older cannot read (reference §8.1), and a node's own restore
  // after a failed check window is such a rollback.
  std::string restore_refused_once_served{};
  // A swap: the plan acknowledged STATE_CHECKPOINT_NOT_CURRENT, so the
  // node's own check before the stop does not refuse on the checkpoint.
  bool checkpoint_acknowledged = false;
};

// CheckSentByLeader and CheckCommandAgainstPlan, then the binding the same
// record gives.
absl::StatusOr<PlanBinding> BindCommandToPlan(const v1::PlanRecord& committed,
                                              std::string_view self, const NodeCommand& command,
                                              const LeaderOfTerm& following);

// Whether a raw record (Fleet.ProposePlan: `kmsfleetctl plan commit`) may
// be proposed with `payload` over `committed`. Refusals:
// - FailedPrecondition PLAN_ACTIVE naming the plan and its phase (metadata
//   plan, phase) when `committed` holds a fleet plan that has not finished:
//   the raw record would replace it, and its in-flight node, halt or
//   break-glass nonce would be forgotten with it;
// - InvalidArgument RAW_FLEET_PLAN_REFUSED (metadata plan, phase) when
//   `payload` itself decodes as a FleetPlan with any of its fields set: with
//   an id the coordinator would adopt and drive it, none of the start
//   guards (versions, compatibility, rotation, signatures) having run.
//   Fleet plans start only through Fleet.StartUpgrade. (The coordinator
//   takes no payload without an id for a plan: FleetPlanIn.)
absl::Status CheckRawProposal(const v1::PlanRecord& committed, std::string_view payload);

// Whether the coordinator may propose a change it decided on `base`, the
// fleet plan it holds as committed (nullopt: none), over `committed`, the
// record the election holds now. A change whose commit the coordinator
// stopped waiting for may still commit; the next change, decided on the
// older revision, would replace it and forget what it recorded (an abort,
// a halt, a step). Refusal: Unavailable PLAN_CHANGE_PENDING naming both
// revisions (metadata plan, committed_revision, base_revision); the
// coordinator adopts the committed plan and decides again. A record that
// holds no fleet plan (a raw one) is no change of the coordinator's: OK.
absl::Status CheckChangeBase(const v1::PlanRecord& committed,
                             const std::optional<v1::FleetPlan>& base);

// What an operator's command is answered when the change it made was not
// committed (`not_committed`). A change CheckChangeBase refused was never
// proposed and never will be: the command changed nothing, and is decided
// on the newer plan only if sent again: Unavailable COMMAND_NOT_TAKEN
// (metadata committed_revision, base_revision). Any other failure may
// still commit, and is answered as it is (PLAN_CHANGE_PENDING: check
// `kmsfleetctl plan`).
absl::Status CommandAnswerFor(const absl::Status& not_committed);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PLAN_COMMAND_GUARD_H_
