// Operator commands to the plan machine (plan_step.h): start, pause,
// resume, abort, rollback, ack-break-glass. A refused command changes
// nothing and says why; an accepted one is recorded in the plan's audit
// with who asked and the acknowledgements given.
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/core/swap_machine.h"
#include "plan_step.h"

namespace kmsfleet {
namespace {

std::string NodeHash(const NodeView& v) {
  return v.state ? v.state->key_id_hash_metric() : "";
}

// What the plan records of a node at its start (reference §8.1 "record the
// current provider version, key_id hash, and Transit key version").
v1::NodeBaseline Baseline(const NodeView& v) {
  v1::NodeBaseline b;
  b.set_node(v.node);
  b.set_provider_version(v.state->provider_version());
  b.set_key_id_hash(NodeHash(v));
  if (v.state->has_key_version()) b.set_transit_key_version(v.state->key_version());
  if (v.registry) {
    b.set_registry_schema(v.registry->schema_version);
    b.set_removed_records(v.registry->removed_records);
  }
  return b;
}

// The views of `voters` that hold a state, in voter order.
std::vector<const NodeView*> VoterViews(const std::vector<std::string>& voters,
                                        const std::vector<NodeView>& views) {
  std::vector<const NodeView*> out;
  for (const std::string& voter : voters) {
    for (const NodeView& v : views) {
      if (v.node == voter && v.state) {
        out.push_back(&v);
        break;
      }
    }
  }
  return out;
}

}  // namespace

void PlanStep::HandleCommand(const OperatorCommand& c) {
  if (c.kind != CommandKind::kStart && !next_) {
    refusal_ = MakeError(absl::StatusCode::kFailedPrecondition, reason::kNoPlan,
                         "There is no plan; start one with `kmsfleetctl "
                         "upgrade`.");
    return;
  }
  absl::Status s;
  switch (c.kind) {
    case CommandKind::kStart: s = HandleStart(c); break;
    case CommandKind::kPause: s = HandlePause(); break;
    case CommandKind::kResume: s = HandleResume(); break;
    case CommandKind::kAbort: s = HandleAbort(); break;
    case CommandKind::kRollback: s = HandleRollback(); break;
    case CommandKind::kAckBreakGlass: s = HandleAckBreakGlass(c.nonce); break;
  }
  if (!s.ok()) {
    refusal_ = s;
    return;
  }
  static constexpr std::string_view kNames[] = {
      "upgrade", "pause", "resume", "abort", "rollback", "ack-break-glass"};
  Audit(c.who, absl::StrCat(std::string(kNames[static_cast<int>(c.kind)]),
                            c.kind == CommandKind::kStart
                                ? " to " + c.request.target_version
                                : ""),
        c.kind == CommandKind::kStart ? UniqueAcknowledgements(c.request.acknowledgements)
        : c.kind == CommandKind::kAckBreakGlass
            ? std::vector<std::string>{"break-glass nonce " + c.nonce}
            : std::vector<std::string>{});
}


v1::FleetPlan PlanStep::NewPlan(const PlanRequest& r,
                               const std::vector<std::string>& order,
                               const std::vector<const NodeView*>& views,
                               const std::vector<std::string>& required_acks) const {
  v1::FleetPlan plan;
  plan.set_plan_id(absl::StrCat("plan-", in_.now_unix_ms, "-",
                                absl::Hex(in_.random & 0xffffffff)));
  plan.set_kind(v1::PLAN_KIND_UPGRADE);
  plan.set_phase(v1::PLAN_PHASE_DRAFT);
  plan.set_target_version(SemVer::Parse(r.target_version)->ToString());
  plan.set_version_before(views.front()->state->provider_version());
  for (const std::string& name : order) {
    v1::PlanNode* n = plan.add_nodes();
    n->set_node(name);
    n->set_phase(v1::PLAN_NODE_PHASE_PENDING);
    n->set_phase_since_unix_ms(in_.now_unix_ms);
  }
  *plan.mutable_settings() = r.settings;
  if (plan.settings().parity_observations() <= 0) {
    plan.mutable_settings()->set_parity_observations(kDefaultParityObservations);
  }
  *plan.mutable_compat() = r.facts;
  for (const std::string& code : required_acks) {
    plan.mutable_compat()->add_required_acknowledgements(code);
  }
  for (const std::string& a : UniqueAcknowledgements(r.acknowledgements)) {
    plan.add_acknowledgements(a);
  }
  for (const NodeView* v : views) *plan.add_baseline() = Baseline(*v);
  plan.set_created_unix_ms(in_.now_unix_ms);
  return plan;
}

absl::Status CheckPlanSettings(const v1::PlanSettings& settings) {
  KMSFLEET_RETURN_IF_ERROR(CheckStabilizationMs(settings.stabilization_ms()));
  auto out_of_range = [](const std::string& key, int64_t value, const std::string& range) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                     key + " " + std::to_string(value) + " is out of range: " + range,
                     {{key, std::to_string(value)}});
  };
  // Kept in the plan's record for its whole life: a long one would leave
  // less room than later changes need (PLAN_TOO_LARGE stops every commit).
  for (const auto& [key, value] : std::initializer_list<std::pair<const char*, const std::string*>>{
           {"artifact_source", &settings.artifact_source()},
           {"checksums_source", &settings.checksums_source()},
           {"signature_source", &settings.signature_source()},
           {"image", &settings.image()},
           {"image_ref_source", &settings.image_ref_source()},
           {"apiserver_restart_method", &settings.apiserver_restart_method()}}) {
    if (value->size() > kMaxPlanSettingBytes) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                       absl::StrCat(key, " is ", value->size(), " bytes, over the ",
                                    kMaxPlanSettingBytes, " a plan keeps: ",
                                    value->substr(0, 64), "..."),
                       {{key, value->substr(0, 64)}});
    }
  }
  if (settings.soak_ms() < 0 || settings.soak_ms() > kMaxSoakMs) {
    return out_of_range("soak_ms", settings.soak_ms(),
                        "0 to " + std::to_string(kMaxSoakMs) + " (seven days)");
  }
  if (settings.parity_observations() < 0 ||
      settings.parity_observations() > kMaxParityObservations) {
    return out_of_range("parity_observations", settings.parity_observations(),
                        "0 (the default, " + std::to_string(kDefaultParityObservations) +
                            ") to " + std::to_string(kMaxParityObservations));
  }
  return absl::OkStatus();
}

// The plan's start recorded one round, before any gate: a registry read
// that failed then, or a rotation the old release promoted while the plan
// prepared, would refuse every rollback for the plan's life. Nothing is
// swapped before the first swap, so what the nodes show when it is
// authorised (health, parity and rotation gates passed on this round) is
// what a rollback must return to. A fact this round lacks keeps its value
// from the start.
void PlanStep::RetakeBaseline() {
  for (v1::NodeBaseline& b : *next_->mutable_baseline()) {
    for (const NodeView& v : Views()) {
      if (v.node != b.node() || !v.state) continue;
      v1::NodeBaseline now = Baseline(v);
      if (now.key_id_hash().empty()) now.set_key_id_hash(b.key_id_hash());
      if (!v.registry) {
        now.set_registry_schema(b.registry_schema());
        now.set_removed_records(b.removed_records());
      }
      if (!v.state->has_key_version() && b.has_transit_key_version()) {
        now.set_transit_key_version(b.transit_key_version());
      }
      b = std::move(now);
    }
  }
}

absl::Status CheckNoActivePlan(const std::optional<v1::FleetPlan>& current) {
  if (!current || IsFinished(current->phase())) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kPlanActive,
                   absl::StrCat("Plan ", current->plan_id(), " is ",
                                std::string(PlanPhaseName(current->phase())),
                                "; finish, roll back or abort it first (in BreakGlass: "
                                "acknowledge it with `kmsfleetctl ack-break-glass`)."));
}

absl::Status PlanStep::HandleStart(const OperatorCommand& c) {
  KMSFLEET_RETURN_IF_ERROR(CheckNoActivePlan(next_));
  const PlanRequest& r = c.request;
  KMSFLEET_RETURN_IF_ERROR(CheckPlanSettings(r.settings));
  absl::StatusOr<std::vector<std::string>> order =
      PlanNodeOrder(m_.config_, r.order);
  if (!order.ok()) return order.status();
  if (absl::Status s = CheckFleetHealth(m_.config_.voters, Views(),
                                        in_.now_unix_ms);
      !s.ok()) {
    return s;
  }
  // CheckFleetHealth passed, so every voter has a state.
  const std::vector<const NodeView*> views =
      VoterViews(m_.config_.voters, Views());
  VersionPolicyInput policy;
  policy.target = r.target_version;
  for (const NodeView* v : views) {
    policy.running.push_back({v->node, v->state->provider_version()});
  }
  if (absl::Status s = CheckVersionPolicy(policy); !s.ok()) return s;
  CompatInput compat{r.facts, r.changelog, r.acknowledgements,
                     ApiServerRestartUnconfigured(m_.config_.voters, Views())};
  if (absl::Status s = CheckCompatibility(compat); !s.ok()) return s;
  // The runbook defers during an OpenBao failover or restore: sealed,
  // uninitialised, standby-only or unreachable refuses the start, before
  // anything is staged (each node's doctor would fail on it, and halt the
  // plan for a reason that is OpenBao's). Mid-plan the gates wait on it.
  if (absl::Status s = OpenBaoGate(); !s.ok()) return s;

  next_ = NewPlan(r, *order, views, RequiredAcknowledgements(compat));
  // Set now, not at TakeReady: this same Step applies the results that
  // came with the command, and one answering the plan before (a stage
  // still running when it was aborted) must not count for this one
  // (found in review).
  next_->set_start_revision((m_.committed_ ? m_.committed_->revision() : 0) + 1);
  changed_ = true;
  for (const char* guard : {"node order", "fleet health", "version policy",
                            "compatibility", "openbao"}) {
    RecordGuard(guard, absl::OkStatus());
  }
  return absl::OkStatus();
}

}  // namespace kmsfleet
