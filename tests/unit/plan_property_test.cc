// Property tests of the plan machine (plan_machine.h) over random
// observation, result and command sequences from a seeded generator: a
// small simulated fleet whose operations take time, fail, roll back or end
// RollbackFailed, whose agents and OpenBao flap, whose coordinator crashes
// and whose commits are lost. After every step the invariants of
// architecture.md §6 that the plan machine owns are checked:
//   - never two nodes in flight, never two providers disrupted (inv. 3);
//   - never a swap without a committed plan change naming the node;
//   - the in-flight node changes only after it handed off;
//   - every refusal and every stop carries a reason;
//   - a finished plan leaves one version and one key_id hash, or is
//     Halted/BreakGlass/Aborted with a reason (inv. 5);
//   - once faults stop, the plan finishes (liveness).
// Replay a failure with KMSFLEET_SEED=<seed>.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fleet_test_util.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using testing::HealthyView;
using testing::kHashA;

constexpr char kFrom[] = "0.1.0";
constexpr char kTo[] = "0.2.0";
constexpr char kRotatedHash[] = "Zm9vYmFyYmF6cXV4cXV1eHF1dXpxdXV6cXV1enF1dXo";

struct SimNode {
  std::string version = kFrom;
  std::string op_id;
  int op_left = 0;  // steps until the operation ends; > 0 = disrupted
  OperationOutcome outcome = OperationOutcome::kStable;
  std::string op_target;
  bool broken = false;  // ended RollbackFailed; fixed by the operator
  bool rotation_pending = false;
  std::string hash = kHashA;  // the active key_id hash it reports
};

RotationReport ActiveReport() {
  RotationReport report;
  report.name = "rotation-plan";
  report.transit_metadata_status = "pass";
  report.rotation_state = "active";
  return report;
}

ActionResult Result(ResultKind kind, const std::string& node) {
  ActionResult r;
  r.kind = kind;
  r.node = node;
  return r;
}

ActionResult OperationResult(const std::string& node, const std::string& op,
                             OperationOutcome outcome) {
  ActionResult r = Result(ResultKind::kOperation, node);
  r.operation_id = op;
  r.outcome = outcome;
  return r;
}

class FleetSim {
 public:
  explicit FleetSim(uint64_t seed) : rng_(seed) {
    for (const char* n : {"a", "b", "c"}) nodes_[n];
    machine_.emplace(Config(), std::nullopt);
  }

  // Runs a plan under faults, then without, checking the invariants.
  // Returns the phase it finished in.
  v1::PlanPhase Run();
  bool entered_break_glass() const { return entered_break_glass_; }
  // Runs a plan with no faults at all: it must complete.
  void RunWithoutFaults();

 private:
  static PlanMachineConfig Config() { return {"b", {"a", "b", "c"}}; }
  bool Chance(int per_mille) { return rng_.Uniform(0, 999) < per_mille; }

  std::vector<NodeView> Observe();
  std::optional<OperatorCommand> Command();
  void Step();
  void CheckReady(const PlanReady& ready);
  void CheckProposal(const v1::FleetPlan& plan);
  void Execute(const PlanAction& action);
  void StartOperation(const PlanAction& action);
  void AdvanceOperations();
  void CheckFinished();
  void CheckConverged(const v1::FleetPlan& plan,
                      const std::vector<NodeView>& views);

  SeededRandom rng_;
  std::map<std::string, SimNode> nodes_;
  std::optional<PlanMachine> machine_;
  std::optional<v1::FleetPlan> committed_;
  std::vector<ActionResult> results_;
  std::string released_;  // node that answered its hand-off as released
  int64_t now_ = 1'000'000;
  bool faults_ = true;
  bool entered_break_glass_ = false;
  std::string rotated_hash_ = kHashA;
};

std::vector<NodeView> FleetSim::Observe() {
  std::vector<NodeView> views;
  for (auto& [name, n] : nodes_) {
    NodeView v = HealthyView(name, n.version, n.hash, now_);
    if (faults_ && Chance(40)) {
      v.state.reset();
      v.unreachable_since_unix_ms = now_ - 500;
    } else {
      v.state->set_live(!n.broken && n.op_left == 0);
      v.state->set_ready(!n.broken && n.op_left == 0);
      if (n.rotation_pending) v.state->set_rotation_state("pending");
    }
    views.push_back(std::move(v));
  }
  return views;
}

std::optional<OperatorCommand> FleetSim::Command() {
  OperatorCommand c;
  c.who = "CN=operator";
  const bool finished = committed_ && IsFinished(committed_->phase());
  if (!committed_ || (faults_ && finished && Chance(30))) {
    // The first plan, or another one after a finished plan (refused with
    // a reason when the fleet is already on the target or mixed).
    c.kind = CommandKind::kStart;
    c.request.target_version = kTo;
    c.request.settings.set_soak_ms(Chance(500) ? 0 : 2000);
    c.request.settings.set_auto_rollback(Chance(500));
    c.request.facts.set_apiserver_restart_required(Chance(300));
    c.request.settings.set_apiserver_restart_method("systemd:kube-apiserver");
    return c;
  }
  const v1::PlanPhase phase = committed_->phase();
  if (phase == v1::PLAN_PHASE_COMPLETED && faults_ && Chance(30)) {
    c.kind = CommandKind::kRollback;
    return c;
  }
  if (phase == v1::PLAN_PHASE_BREAK_GLASS && (!faults_ || Chance(100))) {
    // The operator fixes the node by hand, then acknowledges.
    nodes_[committed_->break_glass().node()].broken = false;
    nodes_[committed_->break_glass().node()].op_left = 0;
    c.kind = CommandKind::kAckBreakGlass;
    c.nonce = committed_->break_glass().nonce();
    return c;
  }
  if ((phase == v1::PLAN_PHASE_PAUSED || phase == v1::PLAN_PHASE_HALTED) &&
      (!faults_ || Chance(60))) {
    // A rollback the guards refuse for good (a rotation was promoted) is
    // not retried; the operator aborts and fixes forward instead.
    const bool refused_for_good =
        committed_->halt().reason() == reason::kRollbackRefusedKeyRotated;
    c.kind = refused_for_good            ? CommandKind::kAbort
             : !faults_ || Chance(700) ? CommandKind::kResume
                                       : CommandKind::kRollback;
    return c;
  }
  if (!faults_) return std::nullopt;
  if (Chance(15)) c.kind = CommandKind::kPause;
  else if (Chance(3)) c.kind = CommandKind::kAbort;
  else return std::nullopt;
  return c;
}

void FleetSim::CheckReady(const PlanReady& ready) {
  if (!ready.refusal.ok()) {
    EXPECT_FALSE(ReasonOf(ready.refusal).empty()) << ready.refusal;
  }
  if (!ready.blocked.ok()) {
    EXPECT_FALSE(ReasonOf(ready.blocked).empty()) << ready.blocked;
  }
  for (const PlanAction& a : ready.actions) {
    if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) {
      EXPECT_FALSE(ReasonOf(a.why).empty()) << a.why;
    }
  }
}

void FleetSim::CheckProposal(const v1::FleetPlan& plan) {
  int in_flight = 0;
  for (const v1::PlanNode& n : plan.nodes()) {
    if (n.phase() == v1::PLAN_NODE_PHASE_IN_FLIGHT) {
      ++in_flight;
      EXPECT_EQ(plan.in_flight(), n.node());
    }
  }
  EXPECT_LE(in_flight, 1) << plan.DebugString();
  // Architecture §6 hand-off: the election refuses another in-flight node
  // until the previous one answered that it is finished.
  if (committed_ && !committed_->in_flight().empty() &&
      plan.in_flight() != committed_->in_flight()) {
    EXPECT_EQ(released_, committed_->in_flight()) << plan.DebugString();
  }
  if (plan.phase() == v1::PLAN_PHASE_HALTED) {
    EXPECT_FALSE(plan.halt().reason().empty());
  }
  if (plan.phase() == v1::PLAN_PHASE_BREAK_GLASS) {
    EXPECT_FALSE(plan.break_glass().reason().empty());
    EXPECT_FALSE(plan.break_glass().nonce().empty());
    if (committed_ && committed_->phase() != v1::PLAN_PHASE_BREAK_GLASS) {
      EXPECT_NE(plan.break_glass().nonce(), committed_->break_glass().nonce());
    }
  }
  absl::StatusOr<std::string> encoded = EncodePlan(plan);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
}

void FleetSim::StartOperation(const PlanAction& a) {
  SimNode& n = nodes_[a.node];
  if (n.op_id == a.operation_id) {
    // Idempotent: the same operation again reports its outcome if done.
    if (n.op_left == 0) {
      results_.push_back(OperationResult(a.node, a.operation_id, n.outcome));
    }
    return;
  }
  for (const auto& [name, other] : nodes_) {
    // Invariant 3: at most one provider disrupted at any instant.
    EXPECT_TRUE(name == a.node || (other.op_left == 0 && !other.broken))
        << "starting " << a.node << " while " << name << " is disrupted";
  }
  n.op_id = a.operation_id;
  n.op_left = static_cast<int>(rng_.Uniform(1, 3));
  n.op_target = a.version;
  const int roll = static_cast<int>(rng_.Uniform(0, 99));
  n.outcome = !faults_ || roll < 80 ? OperationOutcome::kStable
              : roll < 95           ? OperationOutcome::kRolledBack
                                    : OperationOutcome::kRollbackFailed;
}

void FleetSim::AdvanceOperations() {
  for (auto& [name, n] : nodes_) {
    if (n.op_left == 0 || --n.op_left > 0) continue;
    if (n.outcome == OperationOutcome::kStable) n.version = n.op_target;
    if (n.outcome == OperationOutcome::kRollbackFailed) n.broken = true;
    results_.push_back(OperationResult(name, n.op_id, n.outcome));
  }
}

void FleetSim::Execute(const PlanAction& a) {
  ActionResult r = Result(ResultKind::kStaged, a.node);
  r.revision = a.revision;
  if (faults_ && Chance(50)) {
    r.status = absl::UnavailableError("agent did not answer");
  }
  switch (a.kind) {
    case ActionKind::kStage:
      r.kind = ResultKind::kStaged;
      r.previous_artifact_verified = true;
      if (faults_ && r.status.ok() && Chance(20)) {
        r.status = MakeError(absl::StatusCode::kFailedPrecondition,
                             reason::kChecksumMismatch, "checksum mismatch");
      }
      break;
    case ActionKind::kPreflight:
      r.kind = ResultKind::kPreflighted;
      r.doctor = {a.node, true, !(faults_ && Chance(20)), "config.load"};
      r.rotation.node = a.node;
      r.rotation.metric_state = "active";
      r.rotation.report = ActiveReport();
      break;
    case ActionKind::kSwap:
    case ActionKind::kRollbackNode:
      ASSERT_TRUE(committed_.has_value());
      EXPECT_EQ(committed_->in_flight(), a.node);
      EXPECT_EQ(committed_->revision(), a.revision);
      if (!r.status.ok()) {
        r.kind = ResultKind::kOperation;
        break;  // the command was lost
      }
      StartOperation(a);
      return;
    case ActionKind::kRestartApiServer:
      r.kind = ResultKind::kApiServerRestarted;
      if (faults_ && r.status.ok() && Chance(50)) {
        r.status = absl::DeadlineExceededError("/readyz not 200");
      }
      break;
    case ActionKind::kHandOff:
      r.kind = ResultKind::kHandOff;
      r.released = nodes_[a.node].op_left == 0 && !nodes_[a.node].broken;
      if (r.status.ok() && r.released) released_ = a.node;
      break;
    case ActionKind::kHalt:
    case ActionKind::kBreakGlass:
      return;
  }
  results_.push_back(std::move(r));
}

void FleetSim::Step() {
  now_ += 1000;
  AdvanceOperations();
  if (faults_) {
    for (auto& [name, n] : nodes_) {
      n.rotation_pending = Chance(20);
      // A node briefly reports another hash (a rotation converging).
      n.hash = Chance(20) ? testing::kHashB : rotated_hash_;
    }
    if (Chance(3)) rotated_hash_ = kRotatedHash;  // a rotation is promoted
  } else {
    for (auto& [name, n] : nodes_) {
      n.rotation_pending = false;
      n.hash = rotated_hash_;
    }
  }
  PlanInput in;
  in.now_unix_ms = now_;
  in.now_mono_ms = in.views_asked_mono_ms = now_;
  in.views = Observe();
  in.openbao = OpenBaoProbe{"https://bao:8200", absl::OkStatus(),
                            faults_ && Chance(30) ? 503 : 200, ""};
  in.results = std::move(results_);
  results_.clear();
  in.command = Command();
  in.random = rng_.Next();
  PlanReady ready = machine_->Step(in);
  CheckReady(ready);
  if (std::getenv("KMSFLEET_TRACE") != nullptr) {
    std::fprintf(stderr, "t=%lld results=%zu plan=%s rev=%llu blocked=%s\n",
                 static_cast<long long>(now_), in.results.size(),
                 ready.plan ? std::string(PlanPhaseName(ready.plan->phase())).c_str() : "-",
                 ready.plan ? static_cast<unsigned long long>(ready.plan->revision()) : 0ULL,
                 std::string(ready.blocked.message()).c_str());
    for (const ActionResult& r : in.results) {
      std::fprintf(stderr, "   result kind=%d node=%s status=%s released=%d outcome=%d\n",
                   static_cast<int>(r.kind), r.node.c_str(), r.status.ToString().c_str(),
                   r.released, static_cast<int>(r.outcome));
    }
    for (const PlanAction& a : ready.actions) {
      std::fprintf(stderr, "   action %s %s\n", std::string(ActionKindName(a.kind)).c_str(), a.node.c_str());
    }
  }
  if (ready.plan) {
    CheckProposal(*ready.plan);
    if (faults_ && Chance(50)) {
      machine_->Abandon();  // the commit failed: nothing may be acted on
      return;
    }
    if (committed_ && ready.plan->in_flight() != committed_->in_flight()) {
      released_.clear();
    }
    CheckConverged(*ready.plan, in.views);
    committed_ = *ready.plan;
    machine_->Committed(*committed_);
    if (committed_->phase() == v1::PLAN_PHASE_BREAK_GLASS) {
      entered_break_glass_ = true;
    }
  }
  if (faults_ && Chance(20)) {
    // The coordinator crashes after committing: a new one starts from the
    // committed plan, and results in flight to the old one are lost.
    machine_.emplace(Config(), committed_);
    return;
  }
  if (ready.plan) ready.actions = machine_->ReleaseCommitted(std::move(ready.actions), now_, now_);
  for (const PlanAction& a : ready.actions) Execute(a);
}

// Invariant 5 at the moment a plan finishes: what the machine saw in this
// step shows one version and one key_id hash on every node.
void FleetSim::CheckConverged(const v1::FleetPlan& plan,
                              const std::vector<NodeView>& views) {
  if (plan.phase() != v1::PLAN_PHASE_COMPLETED &&
      plan.phase() != v1::PLAN_PHASE_ROLLED_BACK) {
    return;
  }
  if (committed_ && committed_->phase() == plan.phase()) return;
  const std::string& want = plan.phase() == v1::PLAN_PHASE_COMPLETED
                                ? plan.target_version()
                                : plan.version_before();
  for (const NodeView& v : views) {
    ASSERT_TRUE(v.state.has_value()) << v.node;
    EXPECT_EQ(v.state->provider_version(), want) << v.node;
    EXPECT_EQ(v.state->key_id_hash_metric(), views[0].state->key_id_hash_metric())
        << v.node;
  }
}

void FleetSim::CheckFinished() {
  ASSERT_TRUE(committed_.has_value());
  const v1::FleetPlan& p = *committed_;
  if (p.phase() == v1::PLAN_PHASE_COMPLETED ||
      p.phase() == v1::PLAN_PHASE_ROLLED_BACK) {
    // Invariant 5: one version everywhere (hashes are one by construction
    // of this simulation; the guards' tests cover split hashes).
    const std::string& want = p.phase() == v1::PLAN_PHASE_COMPLETED
                                  ? p.target_version()
                                  : p.version_before();
    for (const auto& [name, n] : nodes_) {
      EXPECT_EQ(n.version, want) << name << " in " << p.DebugString();
    }
  } else {
    EXPECT_FALSE(p.halt().reason().empty()) << p.DebugString();
  }
}

v1::PlanPhase FleetSim::Run() {
  const int fault_steps = static_cast<int>(rng_.Uniform(0, 150));
  for (int i = 0; i < fault_steps && !::testing::Test::HasFailure(); ++i) {
    Step();
  }
  faults_ = false;
  for (int i = 0; i < 400 && !::testing::Test::HasFailure(); ++i) {
    if (committed_ && IsFinished(committed_->phase())) break;
    Step();
  }
  if (!committed_) {
    ADD_FAILURE() << "no plan was ever committed";
    return v1::PLAN_PHASE_UNSPECIFIED;
  }
  // Liveness: with faults stopped (and an operator who resumes and
  // acknowledges), every plan finishes.
  EXPECT_TRUE(IsFinished(committed_->phase())) << committed_->DebugString();
  CheckFinished();
  return committed_->phase();
}

void FleetSim::RunWithoutFaults() {
  faults_ = false;
  for (int i = 0; i < 400 && !::testing::Test::HasFailure(); ++i) {
    if (committed_ && IsFinished(committed_->phase())) break;
    Step();
  }
  ASSERT_TRUE(committed_.has_value());
  EXPECT_EQ(committed_->phase(), v1::PLAN_PHASE_COMPLETED)
      << committed_->DebugString();
  CheckFinished();
}

uint64_t BaseSeed() {
  const char* env = std::getenv("KMSFLEET_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : 0;
}

TEST(PlanPropertyTest, InvariantsHoldOverRandomFaultSchedules) {
  const uint64_t base = BaseSeed();
  const int seeds = base != 0 ? 1 : 1000;
  std::map<v1::PlanPhase, int> outcomes;
  int break_glass = 0;
  for (int i = 0; i < seeds && !::testing::Test::HasFailure(); ++i) {
    const uint64_t seed = base != 0 ? base : static_cast<uint64_t>(i + 1);
    SCOPED_TRACE(::testing::Message() << "KMSFLEET_SEED=" << seed);
    FleetSim sim(seed);
    ++outcomes[sim.Run()];
    break_glass += sim.entered_break_glass() ? 1 : 0;
  }
  if (base != 0) return;
  // The schedules must reach every ending, or the properties above were
  // checked over too narrow a set of runs.
  EXPECT_GT(outcomes[v1::PLAN_PHASE_COMPLETED], 0);
  EXPECT_GT(outcomes[v1::PLAN_PHASE_ROLLED_BACK], 0);
  EXPECT_GT(outcomes[v1::PLAN_PHASE_ABORTED], 0);
  EXPECT_GT(break_glass, 0);
}

TEST(PlanPropertyTest, QuietFleetCompletesTheUpgrade) {
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    FleetSim sim(seed);
    sim.RunWithoutFaults();
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace kmsfleet
