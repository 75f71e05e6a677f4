// The fleet plan (architecture.md §5) as a pure state machine, in the style
// of ElectionMachine: the coordinator's shell feeds it observations, action
// results, operator commands and the time (Step), and carries out the
// returned PlanReady. It reads no clock and draws no random number: both
// are inputs. docs/fleet-plan.md describes phases, actions and gates.
//
// Plan changes are proposed, never assumed: the machine keeps deciding
// from the last plan the shell reported committed (Committed), and while a
// proposal is outstanding it proposes nothing else.
//
// Thread-compatible: callers serialise access.
#ifndef KMSFLEET_CORE_PLAN_MACHINE_H_
#define KMSFLEET_CORE_PLAN_MACHINE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/plan_types.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

// Largest serialised plan; EncodePlan refuses more (PLAN_TOO_LARGE).
inline constexpr size_t kMaxPlanBytes = 64 << 10;
// Audit entries kept in the plan: the first (the start) and the newest;
// those between are counted, then dropped.
inline constexpr int kMaxAuditEntries = 64;
// Text that reaches the plan from agents and operators (a node's or the
// halt's message, a break-glass failure, a guard's message, an audit
// entry) is cut to this many bytes when a change is proposed, and a reason
// code to kMaxPlanReasonBytes, so that long answers cannot push a plan
// over kMaxPlanBytes and stop it from committing.
inline constexpr size_t kMaxPlanTextBytes = 1024;
inline constexpr size_t kMaxPlanReasonBytes = 64;
// An audit entry's caller identity (a certificate's URI or name): 64
// entries of it must fit beside everything else.
inline constexpr size_t kMaxPlanWhoBytes = 256;
// Stage and preflight results are held uncommitted while other nodes'
// are awaited (PlanStep::Holds), but not for longer than this: a slow
// stage or doctor still shows in `plan` within about a second.
inline constexpr int64_t kMaxPreflightHoldMs = 1000;
// A Stable result and its released hand-off are held while parity is not
// yet stable, for the rounds the next slot waits for anyway; parity that
// takes longer than this (slow settings, or rounds that stop counting as
// new) commits them, so that `plan` shows the node done.
inline constexpr int64_t kMaxHandOffHoldMs = 10'000;
// A swap, rollback or kube-apiserver restart is started only on a round of
// views asked for at most this long before it is sent, on the shell's
// monotonic clock (PlanInput::views_asked_mono_ms): a round a slow voter
// held up, or a commit that took long (followers slow or cut off: up to
// the commit's 5 s timeout), leaves views too old to start a disruption
// on; the plan then waits for a quicker round (OBSERVATIONS_TOO_OLD).
inline constexpr int64_t kMaxViewsAgeAtSendMs = 1000;
// A swap or rollback that ended before the provider's stop because the
// node's agent stopped or restarted (AGENT_STOPPING, AGENT_RESTARTED) left
// the provider untouched and says nothing of the release: it is sent again
// under a new operation id, up to this many times per node step. An agent
// that keeps stopping then fails the step as any other refusal does.
inline constexpr int kMaxAgentStopRetries = 3;
// The next node's warm-up (PlanMachine::WarmUp) is due this long before
// the in-flight node's stabilisation window can end, counted from when its
// new release was first seen ready: early enough to run while the fleet
// idles in that window, late enough that its checks are still fresh
// (kChecksFreshForMs) when that node's swap asks, a poll and the parity
// rounds after the window's end.
inline constexpr int64_t kWarmUpLeadMs = 300;

// A node's name (`node` and `peers[].name` in kmsfleetd's config) names
// its plan steps, `<plan id>.<node>.rollback.<revision>`, which agents
// keep as file names of at most 128 characters of [A-Za-z0-9._+-]; it is
// also the SAN of the node's certificate. With a plan id of at most 33
// characters ("plan-", an int64, "-", 8 hex digits) and a revision of at
// most 20 digits, a name of up to 64 characters always fits.
inline constexpr size_t kMaxNodeNameBytes = 64;
// 1-64 characters of [A-Za-z0-9._-], starting and ending with a letter or
// a digit.
bool IsValidNodeName(std::string_view name);

// "Draft", "Preflight", "Rolling", ... as architecture.md spells them.
std::string_view PlanPhaseName(v1::PlanPhase phase);
// "Pending", "Staged", "Preflighted", "InFlight", ...
std::string_view PlanNodePhaseName(v1::PlanNodePhase phase);
// Whether a plan blocked for `reason` waits in the normal course of
// progress (fresh parity rounds, the soak, a round or commit that was
// slow a moment: OBSERVATIONS_TOO_OLD) or in a state counted where it
// began (paused, halted, break-glass), rather than being held by a guard:
// kmsfleet_guard_refusals_total counts only the latter.
bool IsProgressWait(std::string_view reason);
// Rolling or RollingBack with no abort requested: only such a plan starts
// a new disruption (the coordinator's sends, a node's admission of them).
// Paused, halted, in break-glass or aborting, the operator asked for none.
bool MovesOnItsOwn(const v1::FleetPlan& plan);
// Completed, RolledBack and Aborted end a plan; Halted and BreakGlass wait
// for an operator.
bool IsFinished(v1::PlanPhase phase);

// The bounds a plan's settings are held to at its start (a real run and a
// dry run alike): stabilization_ms as every agent takes it (0 for the
// agent's default, up to an hour), soak_ms up to kMaxSoakMs, and
// parity_observations up to kMaxParityObservations (0 for the default),
// each string setting up to kMaxPlanSettingBytes.
// Past them a node would refuse its swap after every node was staged and
// preflighted, or the plan would wait for good. InvalidArgument
// INVALID_ARGUMENT naming the setting and the value.
// FailedPrecondition PLAN_ACTIVE when `current` is a plan that has not
// finished: a new one may start only once it has (a real run and a dry
// run alike).
absl::Status CheckNoActivePlan(const std::optional<v1::FleetPlan>& current);

inline constexpr int64_t kMaxSoakMs = int64_t{7} * 24 * 3600 * 1000;
inline constexpr int32_t kMaxParityObservations = 100;
// Each string setting (a source path or URL, the image, the restart
// method): a path's PATH_MAX is 4096, a URL this long is not a release's.
inline constexpr size_t kMaxPlanSettingBytes = 2048;
absl::Status CheckPlanSettings(const v1::PlanSettings& settings);

// Serialises `plan` for PlanRecord.payload. Errors: FailedPrecondition
// PLAN_TOO_LARGE when over kMaxPlanBytes (naming the size).
absl::StatusOr<std::string> EncodePlan(const v1::FleetPlan& plan);
// Errors: InvalidArgument PLAN_TOO_LARGE or MALFORMED_PLAN.
absl::StatusOr<v1::FleetPlan> DecodePlan(std::string_view payload);
// The fleet plan a committed payload holds: one that decodes and has a
// plan id. A raw record (`kmsfleetctl plan commit`) carries text, some of
// which decodes as a FleetPlan with no id; that is no plan to adopt,
// drive, show or count (nullopt).
std::optional<v1::FleetPlan> FleetPlanIn(std::string_view payload);

struct PlanMachineConfig {
  std::string self;                 // the coordinator's node
  std::vector<std::string> voters;  // every node the plan covers
};

// The node order of a new plan: `requested` when given (it must name every
// voter exactly once; else InvalidArgument UNKNOWN_NODE), otherwise sorted
// by name with the coordinator's own node last.
absl::StatusOr<std::vector<std::string>> PlanNodeOrder(
    const PlanMachineConfig& config, const std::vector<std::string>& requested);

struct PlanReady {
  // The plan change to commit FIRST (through ElectionMachine::Propose with
  // in_flight = plan->in_flight()). Unset when nothing changed.
  std::optional<v1::FleetPlan> plan;
  // Carry out only once `plan` (if set) is committed; each names the
  // revision that authorises it. Order within the vector is irrelevant.
  std::vector<PlanAction> actions;
  // The operator command was refused (nothing changed): reason and why.
  absl::Status refusal;
  // Why the plan is not moving now (a gate's refusal); OK when it is.
  absl::Status blocked;
  // Only from a Step on the last round again (PlanInput::views_fresh
  // false): the Step would have read the views (a gate, the hash a swap
  // expects, a node's result opening the parity streak), so it was not
  // taken; nothing changed. Step again with the same input and a fresh
  // round.
  bool needs_fresh_views = false;
  // The plan waits on parity rounds it is counting (a streak short of the
  // plan's observations, with no problem in it), before the next slot or
  // the completion, or beside a hand-off (all but the last round, which
  // waits for its answer): ask the next round at once rather than at the
  // next tick. Never set while a round finds a problem
  // (an agent that does not answer, hashes that differ), which the tick
  // paces.
  bool observe_at_once = false;
};

// An action that came back Unavailable (the node could not be reached, or
// could not answer yet) and when the first of a run of them did.
struct UnansweredAction {
  absl::Status status;
  int64_t since_unix_ms = 0;
};

// The in-flight swap whose new release a round first saw ready, when, and
// its stabilisation window (PlanMachine::WarmUp times the next node's
// warm-up from it).
struct InFlightReady {
  std::string operation_id;
  int64_t seen_unix_ms = 0;
  int64_t window_ms = 0;
};

class PlanMachine {
 public:
  // `committed` is the plan of the committed election record, if any.
  PlanMachine(PlanMachineConfig config, std::optional<v1::FleetPlan> committed);

  // Applies the operator command (if any), then the results, then decides
  // what the committed plan's phase calls for next. While a proposal is
  // outstanding it decides nothing: results are kept for the next Step,
  // a command is refused (Unavailable, PLAN_CHANGE_PENDING).
  // Command refusals (ready.refusal, nothing changed): NO_PLAN,
  // PLAN_ACTIVE, COMMAND_NOT_APPLICABLE, BREAK_GLASS_ACTIVE,
  // BREAK_GLASS_NONCE_MISMATCH, HANDOFF_PENDING, UNKNOWN_NODE, and any
  // start or rollback guard's refusal (fleet_guards.h, release_guards.h).
  // A proposal over kMaxPlanBytes is not made: ready.refusal is
  // PLAN_TOO_LARGE and no action is returned. On the last round again
  // (input.views_fresh false), only a Step that reads no view is taken:
  // recording results and issuing what they call for needs no
  // observation, but a gate or a swap does (ready.needs_fresh_views).
  PlanReady Step(const PlanInput& input);

  // The shell committed `plan` (or adopted it from the election). Clears the
  // outstanding proposal when it is this revision or newer.
  void Committed(const v1::FleetPlan& plan);
  // The outstanding proposal will not commit (leadership lost, too large):
  // forget it and decide again from the committed plan.
  void Abandon();
  // An action ReleaseCommitted withdrew, and the check that withdrew it.
  struct Withdrawn {
    PlanAction action;
    absl::Status why;
  };
  // The actions of the change just committed, to carry out at
  // `now_unix_ms` (`now_mono_ms` on the clock of PlanInput::now_mono_ms).
  // A swap or rollback that may start is withdrawn, and issued again by the
  // next Step on a fresh round, when the newest round this machine was
  // given fails the gates a step sent anew must pass (another node seen
  // down or out of parity while the change committed), shows another
  // key_id hash than the action expects (a rotation promoted meanwhile),
  // or was asked for more than kMaxViewsAgeAtSendMs ago (a slow round or
  // commit): it would start a disruption on what the coordinator knows to
  // be false or stale. Each withdrawal is added to `withdrawn` when given.
  std::vector<PlanAction> ReleaseCommitted(std::vector<PlanAction> actions,
                                           int64_t now_unix_ms, int64_t now_mono_ms,
                                           std::vector<Withdrawn>* withdrawn = nullptr);

  const std::optional<v1::FleetPlan>& committed() const { return committed_; }
  // Parity over the rounds this machine stepped on (a dry run reads it).
  const ParityStreak& parity() const { return parity_; }
  bool proposal_pending() const { return pending_.has_value(); }
  // A read-only preflight of the node the committed plan swaps next, so
  // that its swap finds its doctor and rotation-plan fresh instead of
  // running them on its way to the stop (Executor::CheckAndKeep): due
  // kWarmUpLeadMs before the in-flight node's stabilisation window can end
  // (the plan's stabilization_ms, or the one its agent reports, counted
  // from when a round first saw its new release ready), or else once its
  // Stable result is held for its parity rounds and hand-off. Its answer
  // is not the machine's: the swap judges the checks it reuses or runs.
  // nullopt otherwise, and for a plan rolling back, paused or aborting.
  std::optional<PlanAction> WarmUp(int64_t now_unix_ms) const;

 private:
  friend class PlanStep;
  // Step on `input` whatever its views; `read_views` says whether the
  // decisions read them.
  PlanReady StepOn(const PlanInput& input, bool& read_views);
  // Notes when a round first saw the in-flight node's new release ready
  // (WarmUp times the next node's warm-up from it). Not a decision.
  void NoteInFlightReady(const PlanInput& input);

  PlanMachineConfig config_;
  std::optional<v1::FleetPlan> committed_;
  // The newest fresh round given to Step (while a change is pending too),
  // for ReleaseCommitted.
  std::vector<NodeView> last_views_;
  std::optional<OpenBaoProbe> last_openbao_;
  int64_t last_views_asked_mono_ms_ = 0;
  std::optional<uint64_t> pending_;  // revision proposed, not yet committed
  ParityStreak parity_;
  // Actions issued, by node: "plan|kind/node/phase/stage/operation". An
  // action is issued once per state of its node, again after an
  // Unavailable result from that node.
  std::set<std::pair<std::string, std::string>> issued_;
  // Results that arrived while a proposal was outstanding.
  std::vector<ActionResult> deferred_;
  // Results held uncommitted (PlanStep::Holds): the in-flight node's
  // Stable result and its released hand-off, or stage and preflight
  // results while others are awaited. Applied again in every Step (after
  // the operator's command, before the new results) until one commits
  // them, with the next node's slot when it can.
  std::vector<ActionResult> held_;
  // When the oldest of held_ was first held; nullopt while none is.
  std::optional<int64_t> held_since_unix_ms_;
  // NoteInFlightReady; nullopt while unknown.
  std::optional<InFlightReady> in_flight_ready_;
  // Per node, the last action that came back unanswered, until the node
  // answers one: what the plan waits for.
  std::map<std::string, UnansweredAction> unanswered_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PLAN_MACHINE_H_
