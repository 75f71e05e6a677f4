#include "kmsfleet/core/plan_command_guard.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/message.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

std::string Describe(const NodeCommand& c) {
  switch (c.kind) {
    case NodeCommand::Kind::kSwap:
      return absl::StrCat("swap ", c.operation_id, " to ", c.version, " (stabilization ",
                          c.stabilization_ms, " ms, staged digest ",
                          c.expected_staged_digest.empty() ? "none" : c.expected_staged_digest,
                          ")");
    case NodeCommand::Kind::kRollback:
      return absl::StrCat("rollback ", c.operation_id, " of ", c.of_operation_id,
                          " (stabilization ", c.stabilization_ms, " ms)");
    case NodeCommand::Kind::kRestartApiServer:
      return absl::StrCat("kube-apiserver restart ", c.operation_id);
  }
  return "unknown command";
}

// The restart id the coordinator sends after a node's swap (fleet_actions.cc).
std::string RestartIdOf(const v1::PlanNode& step) {
  return absl::StrCat(ApiServerRestartOperationId(step), ".apiserver");
}

// COMMAND_NOT_IN_PLAN: what the plan asks of `self` and what was sent
// (`what`), then what a member certificate may do (`only`).
absl::Status NotInPlanError(std::string_view self, const std::string& plan_id,
                            const std::string& expected, const std::string& what,
                            const char* only) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kCommandNotInPlan,
                   absl::StrCat("the committed plan ",
                                plan_id.empty() ? std::string("(none)") : plan_id, " asks ",
                                std::string(self), " for ", expected, ", not ", what,
                                ": a member certificate may only ", only),
                   {{"plan", plan_id}, {"expected", expected}, {"sent", what}});
}

absl::Status NotInPlan(std::string_view self, const std::string& plan_id,
                       const std::string& expected, const NodeCommand& sent) {
  return NotInPlanError(self, plan_id, expected, Describe(sent), "carry out the plan's step");
}

absl::Status PlanNotMoving(std::string_view self, const v1::FleetPlan& plan,
                           const NodeCommand& sent) {
  const std::string state = plan.abort_requested()
                                ? std::string("has an abort requested")
                                : absl::StrCat("is ", std::string(PlanPhaseName(plan.phase())));
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kPlanNotMoving,
                   absl::StrCat("the committed plan ", plan.plan_id(), " ", state,
                                ": no new swap or rollback starts on ", std::string(self),
                                " until it moves on its own again (not ", Describe(sent),
                                "); nothing ran"),
                   {{"plan", plan.plan_id()}, {"sent", Describe(sent)}});
}

std::string Describe(const ReleaseCommand& c) {
  if (c.kind == ReleaseCommand::Kind::kPreflight) return "preflight of " + c.version;
  std::string what = absl::StrCat("stage of ", c.version, " from ", c.source, ", checksums ",
                                  c.checksums, ", signature ",
                                  c.signature.empty() ? std::string("none") : c.signature);
  if (!c.artifact_name.empty()) absl::StrAppend(&what, ", artifact name ", c.artifact_name);
  if (!c.image.empty()) absl::StrAppend(&what, ", image ", c.image);
  if (!c.image_ref.empty()) absl::StrAppend(&what, ", kit ", c.image_ref);
  return what;
}

absl::Status ReleaseNotInPlan(std::string_view self, const std::string& plan_id,
                              const std::string& expected, const ReleaseCommand& sent) {
  return NotInPlanError(self, plan_id, expected, Describe(sent),
                        "stage and preflight the plan's release");
}

}  // namespace

absl::Status CheckReleaseAgainstPlan(const v1::PlanRecord& committed, std::string_view self,
                                     const ReleaseCommand& command,
                                     const std::optional<v1::Fence>& fence) {
  const std::string held = absl::StrCat(committed.term(), "/", committed.index());
  if (fence && FenceUnseen(*fence, committed)) {
    const std::string sent = absl::StrCat(fence->term(), "/", fence->index());
    return MakeError(absl::StatusCode::kUnavailable, reason::kUnknownFence,
                     absl::StrCat("node ", std::string(self), " has not seen plan record ", sent,
                                  " committed (it holds ", held,
                                  "); retry after the coordinator's next heartbeat."),
                     {{"fence", sent}, {"committed", held}});
  }
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan || IsFinished(plan->phase())) {
    if (fence) {
      return ReleaseNotInPlan(self, plan ? plan->plan_id() : "",
                              "no release (no fleet plan is under way)", command);
    }
    return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                     absl::StrCat("node ", std::string(self),
                                  " holds no fleet plan under way (record ", held,
                                  "): a coordinator's ", Describe(command),
                                  " is taken once its plan's record is committed here."),
                     {{"committed", held}});
  }
  const bool named = std::any_of(plan->nodes().begin(), plan->nodes().end(),
                                 [&](const v1::PlanNode& n) { return n.node() == self; });
  if (!named) return ReleaseNotInPlan(self, plan->plan_id(), "no release (not its node)", command);
  const v1::PlanSettings& settings = plan->settings();
  ReleaseCommand expected{.kind = command.kind, .version = plan->target_version()};
  if (command.kind == ReleaseCommand::Kind::kStage) {
    expected.source = settings.artifact_source();
    expected.checksums = settings.checksums_source();
    expected.signature = settings.signature_source();
    expected.image = settings.image();
    expected.image_ref = settings.image_ref_source();
  }
  const bool same = command.version == expected.version && command.source == expected.source &&
                    command.checksums == expected.checksums &&
                    command.signature == expected.signature &&
                    command.artifact_name == expected.artifact_name &&
                    command.image == expected.image && command.image_ref == expected.image_ref;
  if (!same) return ReleaseNotInPlan(self, plan->plan_id(), Describe(expected), command);
  return absl::OkStatus();
}

absl::Status CheckCommandAgainstPlan(const v1::PlanRecord& committed, std::string_view self,
                                     const NodeCommand& command) {
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan) return NotInPlan(self, "", "no command (the record holds no fleet plan)", command);
  const v1::PlanNode* step = nullptr;
  for (const v1::PlanNode& n : plan->nodes()) {
    if (n.node() == self) step = &n;
  }
  if (plan->in_flight() == self && step != nullptr &&
      step->stage() == v1::PLAN_STEP_STAGE_RESTARTING_APISERVER) {
    NodeCommand restart{.kind = NodeCommand::Kind::kRestartApiServer,
                        .operation_id = RestartIdOf(*step)};
    if (command.kind == restart.kind && command.operation_id == restart.operation_id) {
      return absl::OkStatus();
    }
    return NotInPlan(self, plan->plan_id(), Describe(restart), command);
  }
  if (plan->in_flight() != self || step == nullptr ||
      step->stage() != v1::PLAN_STEP_STAGE_SWAPPING) {
    return NotInPlan(self, plan->plan_id(), "no swap, rollback or restart now", command);
  }
  // Found in review: a coordinator that decided on a Rolling record sent
  // the swap under the fence of a pause committed meanwhile, and the node
  // took it. Only a plan moving on its own starts a disruption, by the
  // rule the coordinator sends by; the same operation id sent again is answered
  // from its journal before this check.
  if (!MovesOnItsOwn(*plan)) return PlanNotMoving(self, *plan, command);
  // The settings too, as the coordinator sends them (PlanStep::
  // DecideInFlight): a member that front-ran the coordinator with the
  // step's id could otherwise pick its own window or drop the digest.
  NodeCommand expected;
  expected.operation_id = step->operation_id();
  expected.stabilization_ms = plan->settings().stabilization_ms();
  if (step->rollback_of().empty()) {
    expected.kind = NodeCommand::Kind::kSwap;
    expected.version = plan->target_version();
    expected.expected_staged_digest = step->staged_digest();
  } else {
    expected.kind = NodeCommand::Kind::kRollback;
    expected.of_operation_id = step->rollback_of();
  }
  const bool same = command.kind == expected.kind &&
                    command.operation_id == expected.operation_id &&
                    command.stabilization_ms == expected.stabilization_ms &&
                    (expected.kind == NodeCommand::Kind::kSwap
                         ? command.version == expected.version &&
                               command.expected_staged_digest == expected.expected_staged_digest
                         : command.of_operation_id == expected.of_operation_id);
  if (!same) return NotInPlan(self, plan->plan_id(), Describe(expected), command);
  return absl::OkStatus();
}

namespace {

// CheckSentByLeader's rule for a command described as `what`.
absl::Status SentByLeader(const v1::PlanRecord& committed, std::string_view self,
                          const std::string& what, const std::string& sent_by,
                          const LeaderOfTerm& following) {
  // The fence guard has already held a swap's fence to the committed
  // record and to every term this node has seen, so a record of an older
  // term than the node's is refused there; checked again here all the same.
  if (!following.leader.empty() && following.term == committed.term() &&
      sent_by == following.leader) {
    return absl::OkStatus();
  }
  const std::string term = std::to_string(following.term);
  const std::string leader = following.leader.empty()
                                 ? "has heard from no leader in term " + term
                                 : "follows " + following.leader + " in term " + term;
  return MakeError(
      absl::StatusCode::kUnavailable, reason::kCommandNotFromLeader,
      absl::StrCat("node ", std::string(self), " takes a coordinator's ", what,
                   " only from the leader it follows in the term of its committed record ",
                   committed.term(), "/", committed.index(), ": it ", leader, ", and ",
                   sent_by.empty() ? std::string("no member") : sent_by,
                   " sent it; nothing ran (the leader's own command is taken once this node "
                   "has heard from it)"),
      {{"sent_by", sent_by}, {"leader", following.leader}, {"term", term}});
}

}  // namespace

absl::Status CheckSentByLeader(const v1::PlanRecord& committed, std::string_view self,
                               const NodeCommand& command, const LeaderOfTerm& following) {
  return SentByLeader(committed, self, Describe(command), command.sent_by, following);
}

absl::Status BindReleaseToPlan(const v1::PlanRecord& committed, std::string_view self,
                               const ReleaseCommand& command,
                               const std::optional<v1::Fence>& fence,
                               const LeaderOfTerm& following) {
  // A fence not seen yet first: its commit, when it comes, also names the
  // leader this node then follows.
  if (fence && FenceUnseen(*fence, committed)) {
    return CheckReleaseAgainstPlan(committed, self, command, fence);
  }
  KMSFLEET_RETURN_IF_ERROR(
      SentByLeader(committed, self, Describe(command), command.sent_by, following));
  return CheckReleaseAgainstPlan(committed, self, command, fence);
}

absl::StatusOr<PlanBinding> BindCommandToPlan(const v1::PlanRecord& committed,
                                              std::string_view self, const NodeCommand& command,
                                              const LeaderOfTerm& following) {
  KMSFLEET_RETURN_IF_ERROR(CheckSentByLeader(committed, self, command, following));
  KMSFLEET_RETURN_IF_ERROR(CheckCommandAgainstPlan(committed, self, command));
  PlanBinding binding;
  if (command.kind != NodeCommand::Kind::kSwap) return binding;
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan) return binding;  // CheckCommandAgainstPlan refuses a record without one
  binding.restore_refused_once_served = ReasonOf(CheckRollbackAcrossRelease(plan->compat()));
  binding.checkpoint_acknowledged =
      Acknowledged(plan->acknowledgements(), reason::kAckStateCheckpointNotCurrent);
  return binding;
}

namespace {

// Refuses a raw payload the coordinator would take for a fleet plan: it
// adopts whatever decodes (Coordinator::AdoptCommitted), and treats a plan
// with no finished phase as one to drive.
absl::Status CheckRawPayload(std::string_view payload) {
  if (payload.empty()) return absl::OkStatus();
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(payload);
  // Plain text, such as the election's own tests replicate.
  if (!plan.ok()) return absl::OkStatus();
  // Any field of a plan set (a revision alone could outrun the plans to
  // come); text that decodes only as unknown fields is no plan.
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  plan->GetReflection()->ListFields(*plan, &fields);
  if (fields.empty()) return absl::OkStatus();
  const std::string phase(PlanPhaseName(plan->phase()));
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kRawFleetPlanRefused,
                   "the raw plan record's payload is a fleet plan (id \"" + plan->plan_id() +
                       "\", phase " + phase +
                       "); a fleet plan starts only with kmsfleetctl upgrade or rollback, "
                       "whose guards a raw record would skip",
                   {{"plan", plan->plan_id()}, {"phase", phase}});
}

}  // namespace

absl::Status CheckRawProposal(const v1::PlanRecord& committed, std::string_view payload) {
  KMSFLEET_RETURN_IF_ERROR(CheckRawPayload(payload));
  // Not a fleet plan (the election's own tests replicate plain text).
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan || IsFinished(plan->phase())) return absl::OkStatus();
  const std::string phase(PlanPhaseName(plan->phase()));
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kPlanActive,
                   "fleet plan " + plan->plan_id() + " is " + phase +
                       "; a raw plan record would replace it and forget its state. Use "
                       "kmsfleetctl resume, rollback, abort or ack-break-glass",
                   {{"plan", plan->plan_id()}, {"phase", phase}});
}

absl::Status CheckChangeBase(const v1::PlanRecord& committed,
                             const std::optional<v1::FleetPlan>& base) {
  std::optional<v1::FleetPlan> now = FleetPlanIn(committed.payload());
  if (!now || (base && base->revision() == now->revision())) return absl::OkStatus();
  const std::string base_revision = base ? std::to_string(base->revision()) : "none";
  return MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending,
                   "fleet plan " + now->plan_id() + " is committed at revision " +
                       std::to_string(now->revision()) + ", not at revision " + base_revision +
                       " this change was decided on: an earlier change committed late; "
                       "the coordinator decides again on it",
                   {{"plan", now->plan_id()},
                    {"committed_revision", std::to_string(now->revision())},
                    {"base_revision", base_revision}});
}

absl::Status CommandAnswerFor(const absl::Status& not_committed) {
  const std::string base = MetadataOf(not_committed, "base_revision");
  if (base.empty()) return not_committed;
  const std::string committed = MetadataOf(not_committed, "committed_revision");
  return MakeError(absl::StatusCode::kUnavailable, reason::kCommandNotTaken,
                   "the command was decided on plan revision " + base + ", but revision " +
                       committed +
                       " committed meanwhile (an earlier change committed late); "
                       "nothing changed: send it again",
                   {{"committed_revision", committed}, {"base_revision", base}});
}

std::string ApiServerRestartOperationId(const v1::PlanNode& step) {
  if (step.apiserver_restart_retries() <= 0) return step.operation_id();
  return absl::StrCat(step.operation_id(), ".retry-", step.apiserver_restart_retries());
}

}  // namespace kmsfleet
