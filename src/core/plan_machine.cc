// The plan machine's entry points, names and codec (plan_machine.h). The
// decisions live in plan_step.cc and plan_commands_core.cc.
#include "kmsfleet/core/plan_machine.h"

#include <algorithm>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "plan_step.h"

namespace kmsfleet {

bool IsProgressWait(std::string_view reason) {
  // HANDOFF_PENDING, UNKNOWN_FENCE and PLAN_CHANGE_PENDING: a node still
  // finishing its operation, or a node (or the coordinator) not yet
  // holding the commit a command needs.
  static constexpr std::string_view kWaits[] = {
      reason::kParityNotStable, reason::kSoakInProgress,    reason::kPlanPaused,
      reason::kPlanHalted,      reason::kBreakGlassActive,  reason::kHandoffPending,
      reason::kUnknownFence,    reason::kPlanChangePending, reason::kObservationsTooOld};
  for (std::string_view wait : kWaits) {
    if (reason == wait) return true;
  }
  return false;
}

bool MovesOnItsOwn(const v1::FleetPlan& plan) {
  return (plan.phase() == v1::PLAN_PHASE_ROLLING ||
          plan.phase() == v1::PLAN_PHASE_ROLLING_BACK) &&
         !plan.abort_requested();
}

std::string_view PlanPhaseName(v1::PlanPhase phase) {
  switch (phase) {
    case v1::PLAN_PHASE_DRAFT: return "Draft";
    case v1::PLAN_PHASE_PREFLIGHT: return "Preflight";
    case v1::PLAN_PHASE_ROLLING: return "Rolling";
    case v1::PLAN_PHASE_COMPLETED: return "Completed";
    case v1::PLAN_PHASE_PAUSED: return "Paused";
    case v1::PLAN_PHASE_HALTED: return "Halted";
    case v1::PLAN_PHASE_ROLLING_BACK: return "RollingBack";
    case v1::PLAN_PHASE_ROLLED_BACK: return "RolledBack";
    case v1::PLAN_PHASE_BREAK_GLASS: return "BreakGlass";
    case v1::PLAN_PHASE_ABORTED: return "Aborted";
    default: return "Unspecified";
  }
}

std::string_view PlanNodePhaseName(v1::PlanNodePhase phase) {
  switch (phase) {
    case v1::PLAN_NODE_PHASE_PENDING: return "Pending";
    case v1::PLAN_NODE_PHASE_STAGED: return "Staged";
    case v1::PLAN_NODE_PHASE_PREFLIGHTED: return "Preflighted";
    case v1::PLAN_NODE_PHASE_IN_FLIGHT: return "InFlight";
    case v1::PLAN_NODE_PHASE_DONE: return "Done";
    case v1::PLAN_NODE_PHASE_ROLLED_BACK: return "RolledBack";
    case v1::PLAN_NODE_PHASE_FAILED: return "Failed";
    default: return "Unspecified";
  }
}

std::string_view ActionKindName(ActionKind kind) {
  switch (kind) {
    case ActionKind::kStage: return "stage";
    case ActionKind::kPreflight: return "preflight";
    case ActionKind::kSwap: return "swap";
    case ActionKind::kRollbackNode: return "rollback";
    case ActionKind::kRestartApiServer: return "restart-apiserver";
    case ActionKind::kHandOff: return "hand-off";
    case ActionKind::kHalt: return "halt";
    case ActionKind::kBreakGlass: return "break-glass";
  }
  return "unknown";
}

ResultKind ResultKindOf(ActionKind kind) {
  switch (kind) {
    case ActionKind::kStage: return ResultKind::kStaged;
    case ActionKind::kPreflight: return ResultKind::kPreflighted;
    case ActionKind::kRestartApiServer: return ResultKind::kApiServerRestarted;
    case ActionKind::kHandOff: return ResultKind::kHandOff;
    default: return ResultKind::kOperation;
  }
}

std::optional<PlanAction> PlanMachine::WarmUp(int64_t now_unix_ms) const {
  if (!committed_ || committed_->phase() != v1::PLAN_PHASE_ROLLING ||
      committed_->abort_requested() || committed_->in_flight().empty()) {
    return std::nullopt;
  }
  const bool finished_in_flight =
      std::any_of(held_.begin(), held_.end(), [this](const ActionResult& r) {
        return r.kind == ResultKind::kOperation && r.node == committed_->in_flight() &&
               r.outcome == OperationOutcome::kStable && r.status.ok();
      });
  const v1::PlanNode* in_flight = nullptr;
  for (const v1::PlanNode& n : committed_->nodes()) {
    if (n.node() == committed_->in_flight()) in_flight = &n;
  }
  const bool window_ending =
      in_flight != nullptr && in_flight->stage() == v1::PLAN_STEP_STAGE_SWAPPING &&
      in_flight_ready_ &&
      in_flight_ready_->operation_id == in_flight->operation_id() &&
      now_unix_ms >=
          in_flight_ready_->seen_unix_ms + in_flight_ready_->window_ms - kWarmUpLeadMs;
  if (!finished_in_flight && !window_ending) return std::nullopt;
  for (const v1::PlanNode& n : committed_->nodes()) {
    // The order DecideNextNode takes: the first node preflighted.
    if (n.phase() != v1::PLAN_NODE_PHASE_PREFLIGHTED) continue;
    PlanAction a;
    a.kind = ActionKind::kPreflight;
    a.node = n.node();
    a.revision = committed_->revision();
    a.version = committed_->target_version();
    return a;
  }
  return std::nullopt;
}

void PlanMachine::NoteInFlightReady(const PlanInput& input) {
  if (!committed_ || committed_->phase() != v1::PLAN_PHASE_ROLLING) return;
  for (const v1::PlanNode& n : committed_->nodes()) {
    if (n.node() != committed_->in_flight() || n.stage() != v1::PLAN_STEP_STAGE_SWAPPING ||
        !n.rollback_of().empty()) {
      continue;
    }
    if (in_flight_ready_ && in_flight_ready_->operation_id == n.operation_id()) return;
    for (const NodeView& v : input.views) {
      if (v.node != n.node() || !v.state || !v.state->ready() ||
          v.state->provider_version() != committed_->target_version()) {
        continue;
      }
      const int64_t window = committed_->settings().stabilization_ms() > 0
                                 ? committed_->settings().stabilization_ms()
                                 : v.state->default_stabilization_ms();
      if (window > 0) in_flight_ready_ = InFlightReady{n.operation_id(), input.now_unix_ms, window};
    }
  }
}

bool SendsAnAction(const std::vector<PlanAction>& actions) {
  return std::any_of(actions.begin(), actions.end(), [](const PlanAction& a) {
    return a.kind != ActionKind::kHalt && a.kind != ActionKind::kBreakGlass;
  });
}

bool IsFinished(v1::PlanPhase phase) {
  return phase == v1::PLAN_PHASE_COMPLETED ||
         phase == v1::PLAN_PHASE_ROLLED_BACK ||
         phase == v1::PLAN_PHASE_ABORTED;
}

absl::StatusOr<std::string> EncodePlan(const v1::FleetPlan& plan) {
  const size_t size = plan.ByteSizeLong();
  if (size > kMaxPlanBytes) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kPlanTooLarge,
                     absl::StrCat("Plan ", plan.plan_id(), " serialises to ",
                                  size, " bytes, more than the limit of ",
                                  kMaxPlanBytes, "."),
                     {{"size_bytes", std::to_string(size)},
                      {"limit_bytes", std::to_string(kMaxPlanBytes)}});
  }
  return plan.SerializeAsString();
}

absl::StatusOr<v1::FleetPlan> DecodePlan(std::string_view payload) {
  if (payload.size() > kMaxPlanBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kPlanTooLarge,
                     absl::StrCat("Plan payload is ", payload.size(),
                                  " bytes, more than the limit of ",
                                  kMaxPlanBytes, "."),
                     {{"size_bytes", std::to_string(payload.size())}});
  }
  v1::FleetPlan plan;
  if (!plan.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedPlan,
                     absl::StrCat("Plan payload of ", payload.size(),
                                  " bytes does not parse as kmsfleet.v1."
                                  "FleetPlan."));
  }
  return plan;
}

std::optional<v1::FleetPlan> FleetPlanIn(std::string_view payload) {
  if (payload.empty()) return std::nullopt;
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(payload);
  if (!plan.ok() || plan->plan_id().empty()) return std::nullopt;
  return *std::move(plan);
}

PlanMachine::PlanMachine(PlanMachineConfig config,
                         std::optional<v1::FleetPlan> committed)
    : config_(std::move(config)), committed_(std::move(committed)) {}

PlanReady PlanMachine::Step(const PlanInput& input) {
  bool read_views = false;
  if (input.views_fresh) return StepOn(input, read_views);
  // Tried on a copy: a Step that would decide on views older than its
  // results is not taken at all.
  PlanMachine trial = *this;
  PlanReady ready = trial.StepOn(input, read_views);
  if (read_views) {
    PlanReady again;
    again.needs_fresh_views = true;
    return again;
  }
  *this = std::move(trial);
  return ready;
}

PlanReady PlanMachine::StepOn(const PlanInput& input, bool& read_views) {
  if (input.views_fresh) {
    last_views_ = input.views;
    last_openbao_ = input.openbao;
    last_views_asked_mono_ms_ = input.views_asked_mono_ms;
  }
  // Counting a round is no decision: on the last round again it is a
  // round counted already, and Observe skips it.
  parity_.Observe(input.views);
  NoteInFlightReady(input);
  if (pending_) {
    // Results must not be lost while a change is outstanding: keep them for
    // the first Step that decides again.
    deferred_.insert(deferred_.end(), input.results.begin(),
                     input.results.end());
    PlanReady ready;
    if (input.command) {
      ready.refusal = MakeError(
          absl::StatusCode::kUnavailable, reason::kPlanChangePending,
          "A plan change is still being committed; retry the command.");
    }
    ready.blocked = MakeError(absl::StatusCode::kUnavailable,
                              reason::kPlanChangePending,
                              "Waiting for the last plan change to commit.");
    return ready;
  }
  const bool was_holding = !held_.empty();
  PlanStep step(*this, input);
  step.Run();
  read_views = step.read_views();
  const bool hold = step.Holds();
  PlanReady ready = step.TakeReady();
  if (hold) {
    // Not proposed: the results are applied again next Step. What this
    // Step issued (the hand-off) stands under the committed record.
    held_ = step.TakeHeld();
    if (!was_holding) held_since_unix_ms_ = input.now_unix_ms;
    ready.plan.reset();
    for (PlanAction& a : ready.actions) a.revision = committed_ ? committed_->revision() : 0;
    if (!ready.blocked.ok() && committed_) {
      // `plan` still shows the node in flight: say why.
      absl::Status said(ready.blocked.code(),
                        absl::StrCat(ready.blocked.message(), " ", committed_->in_flight(),
                                     " ended Stable and released its slot; that is recorded "
                                     "with the next plan change."));
      ready.blocked.ForEachPayload(
          [&said](absl::string_view url, const absl::Cord& payload) {
            said.SetPayload(url, payload);
          });
      ready.blocked = said;
    }
    return ready;
  }
  held_since_unix_ms_.reset();
  if (ready.plan) {
    pending_ = ready.plan->revision();
    step.WithdrawApiServerRestarts(ready.actions);
  }
  return ready;
}

void PlanMachine::Committed(const v1::FleetPlan& plan) {
  // Revisions increase across plans too (a new plan continues from the
  // last one), so an older record cannot clear a newer proposal.
  if (pending_ && plan.revision() < *pending_) return;
  committed_ = plan;
  pending_.reset();
}

std::vector<PlanAction> PlanMachine::ReleaseCommitted(std::vector<PlanAction> actions,
                                                      int64_t now_unix_ms, int64_t now_mono_ms,
                                                      std::vector<Withdrawn>* withdrawn) {
  if (!committed_) return actions;
  PlanInput round;
  round.now_unix_ms = now_unix_ms;
  round.now_mono_ms = now_mono_ms;
  round.views = last_views_;
  round.views_asked_mono_ms = last_views_asked_mono_ms_;
  round.openbao = last_openbao_;
  PlanStep step(*this, round);
  std::erase_if(actions, [&](const PlanAction& a) {
    const bool starts = a.start_allowed &&
                        (a.kind == ActionKind::kSwap || a.kind == ActionKind::kRollbackNode);
    if (!starts) return false;
    absl::Status why = step.OthersStillPass(a);
    if (why.ok()) return false;
    step.Unissue(a);
    if (withdrawn != nullptr) withdrawn->push_back({a, std::move(why)});
    return true;
  });
  return actions;
}

void PlanMachine::Abandon() {
  pending_.reset();
  // Results consumed by the abandoned proposal are gone, and so are the
  // actions it issued: issue again from the committed plan (actions are
  // idempotent), so that their results come back.
  issued_.clear();
}

}  // namespace kmsfleet
