// Results and phase decisions of one plan machine Step (plan_step.h).
#include "plan_step.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/swap_machine.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

// The phase whose work continues underneath Paused, Halted or BreakGlass.
v1::PlanPhase Walk(const v1::FleetPlan& plan) {
  switch (plan.phase()) {
    case v1::PLAN_PHASE_PAUSED:
    case v1::PLAN_PHASE_HALTED:
    case v1::PLAN_PHASE_BREAK_GLASS:
      return plan.resume_phase();
    default:
      return plan.phase();
  }
}

constexpr char kMoreFailures[] =
    " More failures followed; the coordinator logs each (`plan halted`).";

// Adds a later failure to the halt's message, within the bound every
// text of the plan record is cut to (kMaxPlanTextBytes), keeping room for
// the line that says more followed. True when the message changed.
bool AddToHalt(v1::PlanHalt& halt, const absl::Status& why, std::string_view node) {
  std::string more = absl::StrCat(" Also on ", node.empty() ? "the fleet" : std::string(node),
                                  ": ", ReasonOf(why), ": ", why.message());
  const std::string& message = halt.message();
  if (absl::StrContains(message, more) || absl::StrContains(message, kMoreFailures)) return false;
  const size_t room = kMaxPlanTextBytes - (sizeof(kMoreFailures) - 1);
  if (message.size() + more.size() > room) {
    if (message.size() + sizeof(kMoreFailures) - 1 > kMaxPlanTextBytes) return false;
    more = kMoreFailures;
  }
  halt.set_message(message + more);
  return true;
}

}  // namespace

PlanStep::PlanStep(PlanMachine& machine, const PlanInput& input)
    : m_(machine), in_(input), next_(machine.committed_) {}

void PlanStep::Run() {
  if (in_.command) HandleCommand(*in_.command);
  // A new plan (order, baseline, facts, who asked) goes on at once from
  // Draft to Preflight: the record that commits it also authorises its
  // stages, and nothing is sent before that commit. One commit per plan
  // fewer than a Draft committed alone, and the same record on disk.
  std::vector<ActionResult> held = std::move(m_.held_);
  m_.held_.clear();
  std::vector<ActionResult> results = std::move(m_.deferred_);
  m_.deferred_.clear();
  results.insert(results.end(), in_.results.begin(), in_.results.end());
  if (!next_) return;
  // A finished plan is moved only by a command (rollback, a new plan): a
  // late answer to an action issued before the end is stale, and must not
  // halt an Aborted plan.
  if (IsFinished(next_->phase())) {
    m_.unanswered_.clear();
    return;
  }
  replaying_ = true;
  for (const ActionResult& r : held) ApplyAndSortResult(r);
  replaying_ = false;
  for (const ActionResult& r : results) ApplyAndSortResult(r);
  const bool changed_before = changed_;
  changed_ = false;
  DecidePhase();
  decided_change_ = changed_;
  changed_ = changed_ || changed_before;
  // A plan this Step ended waits on nothing: an action left unanswered
  // before is forgotten now, as the next Step would.
  if (IsFinished(next_->phase())) {
    m_.unanswered_.clear();
  } else {
    BlockOnUnanswered();
  }
}

void PlanStep::ApplyAndSortResult(const ActionResult& result) {
  result_holdable_ = false;
  ApplyResult(result);
  if (result_holdable_) {
    holdable_.push_back(result);
  } else {
    only_holdable_ = false;
  }
}

bool PlanStep::Holds() const {
  if (in_.command || !only_holdable_ || holdable_.empty() || !changed_ || decided_change_) {
    return false;
  }
  const int64_t held_for = in_.now_unix_ms - m_.held_since_unix_ms_.value_or(in_.now_unix_ms);
  if (next_->phase() == v1::PLAN_PHASE_PREFLIGHT) {
    // Other nodes' results are awaited (with all in, the plan changes
    // phase or blocks on a gate). Not for long: `plan` shows progress.
    return blocked_.ok() && held_for < kMaxPreflightHoldMs;
  }
  // The result alone: nothing decided reads more than the node's own step.
  if (!handed_off_) return blocked_.ok();
  // Handed off: committed alone only to wait for rounds the next Step
  // counts anyway. Any other block (soak, health, a paused plan) is
  // committed, so that `plan` shows the node done while it lasts; so is
  // parity that takes much longer than its rounds should.
  return ReasonOf(blocked_) == reason::kParityNotStable && held_for < kMaxHandOffHoldMs;
}

PlanReady PlanStep::TakeReady() {
  PlanReady ready;
  ready.refusal = refusal_;
  ready.blocked = blocked_;
  ready.observe_at_once = rounds_beside_hand_off_ ||
                          ReasonOf(blocked_) == reason::kParityNotStable ||
                          ReasonOf(blocked_) == reason::kObservationsTooOld;
  uint64_t revision = m_.committed_ ? m_.committed_->revision() : 0;
  if (changed_ && next_) {
    next_->set_revision(revision + 1);
    if (next_->start_revision() == 0) next_->set_start_revision(revision + 1);
    next_->set_updated_unix_ms(in_.now_unix_ms);
    next_->set_coordinator(Coordinator());
    BoundTexts();
    if (absl::StatusOr<std::string> encoded = EncodePlan(*next_); !encoded.ok()) {
      ready.refusal = encoded.status();
      m_.issued_.clear();  // nothing issued here will be carried out
      return ready;
    }
    revision = next_->revision();
    ready.plan = next_;
  }
  for (PlanAction& a : actions_) a.revision = revision;
  ready.actions = std::move(actions_);
  return ready;
}

// ---- helpers ----

PlanAction PlanStep::MakeAction(ActionKind kind, std::string_view node) {
  PlanAction action;
  action.kind = kind;
  action.node = std::string(node);
  return action;
}

const std::vector<NodeView>& PlanStep::Views() {
  read_views_ = true;
  return in_.views;
}

const ParityStreak& PlanStep::Parity() {
  read_views_ = true;
  return m_.parity_;
}

const std::optional<OpenBaoProbe>& PlanStep::OpenBao() {
  read_views_ = true;
  return in_.openbao;
}

v1::PlanNode* PlanStep::FindNode(std::string_view name) {
  for (v1::PlanNode& n : *next_->mutable_nodes()) {
    if (n.node() == name) return &n;
  }
  return nullptr;
}

std::string PlanStep::Coordinator() const {
  return absl::StrCat("coordinator ", m_.config_.self);
}

void PlanStep::Audit(std::string_view who, std::string_view what,
                     const std::vector<std::string>& acks) {
  auto* audit = next_->mutable_audit();
  if (audit->size() >= kMaxAuditEntries) {
    // The first entry stays: who started the plan, with the
    // acknowledgements the start needed.
    audit->DeleteSubrange(1, 1);
    next_->set_audit_dropped(next_->audit_dropped() + 1);
  }
  v1::AuditEntry* e = audit->Add();
  e->set_at_unix_ms(in_.now_unix_ms);
  e->set_who(std::string(who));
  e->set_what(std::string(what));
  for (const std::string& a : acks) e->add_acknowledgements(a);
  changed_ = true;
}

void PlanStep::Become(v1::PlanPhase phase, std::string_view why) {
  const v1::PlanPhase from = next_->phase();
  if (from == phase) return;
  if (phase == v1::PLAN_PHASE_PAUSED || phase == v1::PLAN_PHASE_HALTED ||
      phase == v1::PLAN_PHASE_BREAK_GLASS) {
    next_->set_resume_phase(Walk(*next_));
  }
  next_->set_phase(phase);
  Audit(Coordinator(),
        absl::StrCat(std::string(PlanPhaseName(from)), " -> ",
                     std::string(PlanPhaseName(phase)), ": ", std::string(why)));
}

void PlanStep::Halt(const absl::Status& why, std::string_view node) {
  v1::PlanHalt* halt = next_->mutable_halt();
  if (next_->phase() == v1::PLAN_PHASE_HALTED && !halt->reason().empty()) {
    // Halted already (two nodes failing in one Step, or a late result):
    // the first failure stays the halt's reason, and this one is added to
    // its message rather than lost, in a change of its own if need be.
    if (AddToHalt(*halt, why, node)) changed_ = true;
  } else {
    halt->set_reason(ReasonOf(why));
    halt->set_message(std::string(why.message()));
    halt->set_node(std::string(node));
  }
  Become(v1::PLAN_PHASE_HALTED, halt->reason());
  PlanAction action = MakeAction(ActionKind::kHalt, node);
  action.why = why;
  actions_.push_back(std::move(action));
}

void PlanStep::AbortNow() {
  v1::PlanHalt* halt = next_->mutable_halt();
  // Aborting a halted plan keeps why it had halted: the node that failed
  // may still need the operator (a kube-apiserver not ready, say).
  std::string halted;
  if (next_->phase() == v1::PLAN_PHASE_HALTED && !halt->reason().empty() &&
      halt->reason() != reason::kAbortedByOperator) {
    halted = absl::StrCat(" It had halted", halt->node().empty() ? "" : " on " + halt->node(),
                          ": ", halt->reason(), ": ", halt->message());
  }
  halt->set_reason(reason::kAbortedByOperator);
  halt->set_message(absl::StrCat("An operator aborted the plan; nodes already upgraded "
                                 "keep the new version, the others the old one.",
                                 halted));
  halt->clear_node();
  Become(v1::PLAN_PHASE_ABORTED, reason::kAbortedByOperator);
}

void PlanStep::EnterBreakGlass(const absl::Status& why, std::string_view node) {
  std::string nonce = absl::StrCat(absl::Hex(in_.random, absl::kZeroPad16));
  if (nonce == next_->break_glass().nonce()) {
    // Each break-glass event must issue a new nonce, even if the random
    // input repeated.
    nonce = absl::StrCat(absl::Hex(in_.random + 1, absl::kZeroPad16));
  }
  v1::BreakGlass* bg = next_->mutable_break_glass();
  bg->Clear();
  bg->set_nonce(nonce);
  bg->set_node(std::string(node));
  bg->set_reason(ReasonOf(why));
  bg->set_failure(std::string(why.message()));
  bg->set_since_unix_ms(in_.now_unix_ms);
  bg->add_manual_steps(absl::StrCat("Inspect ", std::string(node),
                                    ": its operation "
                                    "journal and evidence directory, and "
                                    "the provider's unit and logs."));
  // Also when the node, kept on purpose, comes back as not releasable.
  const v1::PlanNode* failed = FindNode(node);
  if (KeptTheTargetOnPurpose(ReasonOf(why)) ||
      (failed && KeptTheTargetOnPurpose(failed->reason()))) {
    bg->add_manual_steps(absl::StrCat(
        "Do not reinstall ", next_->version_before(), ": ", next_->target_version(),
        " served and may have written or promoted what it cannot read. Fix forward: a patch "
        "release of the newer line, or the same release once the cause of the failure is fixed; "
        "never edit or erase key-registry.json or its checkpoint."));
  } else {
    bg->add_manual_steps("Restore a provider release that reads the current "
                         "registry and key_id; never edit or erase "
                         "key-registry.json or its checkpoint.");
  }
  bg->add_manual_steps("Confirm /ready is 200 and the key_id hash matches "
                       "the other nodes.");
  // Found in review: followed as printed, these steps led back here. The
  // node keeps its slot until an operation its agent runs ends Stable or
  // RolledBack; a restore by hand is not one (runbook §4).
  bg->add_manual_steps(absl::StrCat(
      "Give ", std::string(node),
      " back to kmsfleet (docs/runbooks/break-glass.md section 4): a restore by hand does not "
      "release its slot. Once its provider serves the release you restored or fixed forward "
      "to, and no operation of its is still open (kmsfleetctl node operation), run one swap "
      "through its agent to the version it now runs (staged there first on NOT_STAGED): "
      "kmsfleetctl node swap --version <that version> --expected-key-id-hash <the fleet's "
      "hash> --fence <commit>/",
      std::string(node),
      " (kmsfleetctl leader prints the commit). Acknowledged without it, the plan comes back "
      "to BreakGlass with a new nonce."));
  bg->add_manual_steps(absl::StrCat("Run: kmsfleetctl ack-break-glass ", nonce));
  if (v1::PlanNode* n = FindNode(node)) SetNodePhase(*n, v1::PLAN_NODE_PHASE_FAILED);
  Become(v1::PLAN_PHASE_BREAK_GLASS, bg->reason());
  PlanAction action = MakeAction(ActionKind::kBreakGlass, node);
  action.why = why;
  actions_.push_back(std::move(action));
}

void PlanStep::SetNodePhase(v1::PlanNode& node, v1::PlanNodePhase phase) {
  if (node.phase() == phase) return;
  node.set_phase(phase);
  node.set_phase_since_unix_ms(in_.now_unix_ms);
  if (phase == v1::PLAN_NODE_PHASE_IN_FLIGHT) node.set_in_flight_since_unix_ms(in_.now_unix_ms);
  changed_ = true;
}

namespace {

// The key names the plan and the node's state: an action is issued once
// per state of its node in this plan.
std::string IssueKey(const v1::FleetPlan& plan, const v1::PlanNode* n,
                     const PlanAction& action) {
  return absl::StrCat(plan.plan_id(), "|", std::string(ActionKindName(action.kind)), "/",
                      action.node, "/", n ? n->phase() : 0, "/", n ? n->stage() : 0, "/",
                      n ? n->operation_id() : "");
}

}  // namespace

bool PlanStep::Issued(const PlanAction& action) {
  return m_.issued_.contains({action.node, IssueKey(*next_, FindNode(action.node), action)});
}

void PlanStep::Issue(PlanAction action) {
  if (!m_.issued_.insert({action.node, IssueKey(*next_, FindNode(action.node), action)}).second) {
    return;
  }
  actions_.push_back(std::move(action));
}

// A restart issued beside a proposed change would go out once the change
// commits, on gates read before it: a provider that went down meanwhile
// would not hold it back (found by the simulator's restart-gate property:
// `kmsfleet_sim --plan --seed 821`). A restart goes out with the Step that
// read its gates; it disrupts no provider, so it needs no record of its own.
void PlanStep::WithdrawApiServerRestarts(std::vector<PlanAction>& actions) {
  std::erase_if(actions, [&](const PlanAction& a) {
    if (a.kind != ActionKind::kRestartApiServer) return false;
    Unissue(a);
    return true;
  });
}

absl::Status PlanStep::OthersStillPass(const PlanAction& action) {
  std::string hash;
  absl::Status s = OthersGates(action.node, action.kind == ActionKind::kRollbackNode, &hash);
  if (!s.ok()) return s;
  // A rotation promoted while the change committed: the node would refuse
  // the key the action expects (ACTIVE_KEY_NOT_EXPECTED) and halt the plan.
  if (action.expected_key_id_hash.empty() || hash.empty() ||
      hash == action.expected_key_id_hash) {
    return ViewsFreshEnough();
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kKeyIdHashMismatch,
                   absl::StrCat("The other nodes now serve key_id hash ", hash, ", not ",
                                action.expected_key_id_hash, " as when ", action.node,
                                "'s step was decided."),
                   {{"node", action.node}});
}

void PlanStep::Unissue(const PlanAction& action) {
  m_.issued_.erase({action.node, IssueKey(*next_, FindNode(action.node), action)});
}

void PlanStep::RecordGuard(std::string_view guard, const absl::Status& result) {
  v1::GuardRecord* record = nullptr;
  for (v1::GuardRecord& g : *next_->mutable_guards()) {
    if (g.guard() == guard) record = &g;
  }
  if (record == nullptr) record = next_->add_guards();
  record->set_guard(std::string(guard));
  record->set_reason(ReasonOf(result));
  record->set_message(std::string(result.message()));
  record->set_at_unix_ms(in_.now_unix_ms);
  changed_ = true;
}

void PlanStep::Block(const absl::Status& why) {
  if (blocked_.ok()) blocked_ = why;
}

namespace {

// Cuts `text` to `max` bytes, saying how much was left out; never in the
// middle of a UTF-8 sequence.
void Cut(std::string& text, size_t max) {
  if (text.size() <= max) return;
  const std::string note = absl::StrCat(" [", text.size(), " bytes, cut]");
  text.resize(internal::Utf8CutLength(text, max > note.size() ? max - note.size() : 0));
  text += note;
}

}  // namespace

void PlanStep::BoundTexts() {
  for (v1::PlanNode& n : *next_->mutable_nodes()) {
    Cut(*n.mutable_reason(), kMaxPlanReasonBytes);
    Cut(*n.mutable_message(), kMaxPlanTextBytes);
    Cut(*n.mutable_apiserver_restart(), kMaxPlanTextBytes);
  }
  if (next_->has_halt()) {
    Cut(*next_->mutable_halt()->mutable_reason(), kMaxPlanReasonBytes);
    Cut(*next_->mutable_halt()->mutable_message(), kMaxPlanTextBytes);
  }
  if (next_->has_break_glass()) {
    Cut(*next_->mutable_break_glass()->mutable_reason(), kMaxPlanReasonBytes);
    Cut(*next_->mutable_break_glass()->mutable_failure(), kMaxPlanTextBytes);
  }
  for (v1::GuardRecord& g : *next_->mutable_guards()) {
    Cut(*g.mutable_reason(), kMaxPlanReasonBytes);
    Cut(*g.mutable_message(), kMaxPlanTextBytes);
  }
  for (v1::AuditEntry& e : *next_->mutable_audit()) {
    Cut(*e.mutable_what(), kMaxPlanTextBytes);
    Cut(*e.mutable_who(), kMaxPlanWhoBytes);
  }
}

bool PlanStep::RestartRequired() const {
  return next_->compat().apiserver_restart_required();
}

}  // namespace kmsfleet
