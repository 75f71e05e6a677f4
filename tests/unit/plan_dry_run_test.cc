// Tests of the dry run (plan_dry_run.h): every guard is evaluated and
// reported, none is skipped after a refusal, and nothing is missing
// silently.
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fleet_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/plan_dry_run.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;

const PlanMachineConfig kConfig = {"b", {"a", "b", "c"}};

DryRunInput Healthy() {
  DryRunInput in;
  in.request.target_version = "0.2.0";
  in.now_unix_ms = 5000;
  in.views = testing::HealthyFleet({"a", "b", "c"}, "0.1.0");
  in.openbao = OpenBaoProbe{"https://bao:8200", absl::OkStatus(), 200, ""};
  in.doctor.emplace();
  in.rotation.emplace();
  in.artifacts.emplace();
  for (const char* n : {"a", "b", "c"}) {
    in.doctor->push_back({n, true, true, ""});
    NodeRotation r;
    r.node = n;
    r.metric_state = "active";
    r.report = RotationReport{};
    r.report->transit_metadata_status = "pass";
    r.report->rotation_state = "active";
    in.rotation->push_back(r);
    in.artifacts->push_back({n, "0.1.0", true});
  }
  return in;
}

std::map<std::string, std::string> Reasons(const DryRunReport& report) {
  std::map<std::string, std::string> reasons;
  for (const GuardOutcome& g : report.guards) {
    reasons[g.guard] = g.result.ok() ? "pass" : ReasonOf(g.result);
  }
  return reasons;
}

TEST(DryRunTest, HealthyFleetWouldStartInTheDefaultOrder) {
  const DryRunReport report = EvaluateDryRun(kConfig, Healthy());
  EXPECT_THAT(report.order, ElementsAre("a", "c", "b"));
  EXPECT_EQ(report.guards.size(), 11u);
  EXPECT_TRUE(report.would_start);
  for (const GuardOutcome& g : report.guards) {
    EXPECT_TRUE(g.result.ok()) << g.guard << ": " << g.result;
  }
}

// Found in review: settings out of the agents' bounds passed the dry run
// and the start; every node was staged and preflighted, then the first
// swap was refused. A dry run names the setting; a real run refuses it.
// Found in review: the dry run never looked at the plan in place, so with
// a halted plan it said a real run would start, which refuses PLAN_ACTIVE.
TEST(DryRunTest, APlanThatHasNotFinishedRefusesAsARealRunDoes) {
  DryRunInput in = Healthy();
  in.current = v1::FleetPlan();
  in.current->set_plan_id("plan-7");
  in.current->set_phase(v1::PLAN_PHASE_HALTED);
  DryRunReport report = EvaluateDryRun(kConfig, in);
  EXPECT_FALSE(report.would_start);
  EXPECT_EQ(Reasons(report).at("active plan"), reason::kPlanActive);
  in.current->set_phase(v1::PLAN_PHASE_COMPLETED);
  report = EvaluateDryRun(kConfig, in);
  EXPECT_TRUE(report.would_start);
  EXPECT_EQ(Reasons(report).at("active plan"), "pass");
}

TEST(DryRunTest, SettingsOutOfBoundsAreRefusedNamingTheSetting) {
  for (auto [set, key] :
       std::vector<std::pair<std::function<void(v1::PlanSettings&)>, std::string>>{
           {[](v1::PlanSettings& s) { s.set_stabilization_ms(2 * 3600 * 1000); },
            "stabilization_ms"},
           {[](v1::PlanSettings& s) { s.set_soak_ms(int64_t{1} << 62); }, "soak_ms"},
           {[](v1::PlanSettings& s) { s.set_parity_observations(1000000); },
            "parity_observations"},
           {[](v1::PlanSettings& s) { s.set_soak_ms(-1); }, "soak_ms"},
           // Kept in the plan for its life: room later changes need.
           {[](v1::PlanSettings& s) { s.set_artifact_source(std::string(3000, 'a')); },
            "artifact_source"},
           {[](v1::PlanSettings& s) { s.set_apiserver_restart_method(std::string(3000, 'm')); },
            "apiserver_restart_method"}}) {
    DryRunInput in = Healthy();
    set(in.request.settings);
    const DryRunReport report = EvaluateDryRun(kConfig, in);
    EXPECT_FALSE(report.would_start) << key;
    EXPECT_EQ(Reasons(report).at("settings"), reason::kInvalidArgument) << key;
    absl::Status direct = CheckPlanSettings(in.request.settings);
    EXPECT_NE(std::string(direct.message()).find(key), std::string::npos) << direct;
  }
  EXPECT_TRUE(CheckPlanSettings(Healthy().request.settings).ok());
}

TEST(DryRunTest, EveryRefusalIsReportedNotOnlyTheFirst) {
  DryRunInput in = Healthy();
  in.openbao->status = 503;
  in.request.changelog = {{"0.2.0", "CHANGELOG_BREAKING", 3, "### ⚠ BREAKING CHANGES"}};
  (*in.doctor)[1].passed = false;
  const DryRunReport report = EvaluateDryRun(kConfig, in);
  EXPECT_FALSE(report.would_start);
  const auto reasons = Reasons(report);
  EXPECT_EQ(reasons.at("compatibility"), reason::kAcknowledgementRequired);
  EXPECT_EQ(reasons.at("openbao"), reason::kOpenBaoSealed);
  EXPECT_EQ(reasons.at("doctor"), reason::kDoctorFailed);
  EXPECT_EQ(reasons.at("fleet health"), "pass");
  EXPECT_EQ(reasons.at("rollback readiness"), "pass");
}

TEST(DryRunTest, GuardsWithoutTheirInputsSaySoInsteadOfPassing) {
  DryRunInput in = Healthy();
  in.openbao.reset();
  in.doctor.reset();
  in.artifacts.reset();
  in.rotation.reset();  // falls back to the rotation metric
  const DryRunReport report = EvaluateDryRun(kConfig, in);
  const auto reasons = Reasons(report);
  EXPECT_EQ(reasons.at("openbao"), reason::kNotEvaluated);
  EXPECT_EQ(reasons.at("doctor"), reason::kNotEvaluated);
  EXPECT_EQ(reasons.at("rollback readiness"), reason::kNotEvaluated);
  // The metric alone cannot see a key rotated in Transit (found in review:
  // a dry run without the nodes' answers passed rotation on it).
  EXPECT_EQ(reasons.at("rotation"), reason::kNotEvaluated);
  EXPECT_FALSE(report.would_start);
  in.views[1].state->set_rotation_state("pending");
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("rotation"), reason::kRotationInProgress);
}

// An upgrade's dry run stages nothing; the nodes' read-only preflight
// (rotation-plan of the installed release, the kept release) stands in for
// rotation and rollback readiness, as the real run's Preflight checks them.
DryRunInput WithReadOnlyChecks() {
  DryRunInput in = Healthy();
  in.doctor.reset();
  in.artifacts.reset();
  in.read_only.emplace();
  for (const NodeRotation& r : *in.rotation) {
    NodeReadOnlyChecks n;
    n.node = r.node;
    n.rotation = r;
    n.rotation.metric_state = "";  // the dry run fills it from the round
    n.previous_kept = true;
    in.read_only->push_back(n);
  }
  in.rotation.reset();
  return in;
}

// A compatibility pass still shows the release notes crossed: what they
// ask (every node upgraded before the next rotation, say) outlasts the
// guard.
TEST(DryRunTest, APassingCompatibilityGuardCarriesTheReleaseNotesCrossed) {
  DryRunInput in = Healthy();
  in.request.facts.add_notes("0.2.0: upgrade every node before the next rotation");
  const DryRunReport report = EvaluateDryRun(kConfig, in);
  for (const GuardOutcome& g : report.guards) {
    if (g.guard != "compatibility") continue;
    EXPECT_TRUE(g.result.ok()) << g.result;
    EXPECT_EQ(g.note, "release notes: 0.2.0: upgrade every node before the next rotation");
  }
  EXPECT_TRUE(report.would_start);
}

TEST(DryRunTest, ReadOnlyChecksEvaluateRotationAndReadinessWithNothingStaged) {
  const auto reasons = Reasons(EvaluateDryRun(kConfig, WithReadOnlyChecks()));
  EXPECT_EQ(reasons.at("rotation"), "pass");
  EXPECT_EQ(reasons.at("rollback readiness"), "pass");
  EXPECT_EQ(reasons.at("doctor"), reason::kNotEvaluated);
}

// Found by the requirements audit: the dry run judged rotation by the
// metric alone, so a key rotated in Transit that the provider still
// reported active passed it, and only the real run refused.
TEST(DryRunTest, ATransitRotationOnOneNodeRefusesTheDryRunAsTheRealRun) {
  DryRunInput in = WithReadOnlyChecks();
  (*in.read_only)[1].rotation.report->active_transit_version = 2;
  (*in.read_only)[1].rotation.report->latest_transit_version = 3;
  (*in.read_only)[2].previous_kept = false;
  const DryRunReport report = EvaluateDryRun(kConfig, in);
  const auto reasons = Reasons(report);
  EXPECT_EQ(reasons.at("rotation"), reason::kRotationInProgress);
  EXPECT_EQ(reasons.at("rollback readiness"), reason::kRollbackArtifactMissing);
  for (const GuardOutcome& g : report.guards) {
    if (g.guard == "rotation") {
      EXPECT_THAT(std::string(g.result.message()),
                  ::testing::HasSubstr("b (latest Transit version 3 above the active 2)"));
    }
    if (g.guard == "rollback readiness") {
      EXPECT_THAT(std::string(g.result.message()), ::testing::HasSubstr("c (\"0.1.0\")"));
    }
  }
}

// A node that could not answer, or whose installed release cannot stand
// for the real run's check, leaves the guard NOT_EVALUATED naming it and
// why; never a pass, and never hiding another node's refusal.
TEST(DryRunTest, ANodeWithoutAnAnswerIsNamedNotEvaluatedUnlessAnotherRefuses) {
  DryRunInput in = WithReadOnlyChecks();
  (*in.read_only)[0].unavailable = MakeError(absl::StatusCode::kUnavailable,
                                             reason::kAgentUnreachable, "a is down");
  (*in.read_only)[1].rotation.report =
      MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated, "too old");
  DryRunReport report = EvaluateDryRun(kConfig, in);
  for (const GuardOutcome& g : report.guards) {
    if (g.guard != "rotation" && g.guard != "rollback readiness") continue;
    EXPECT_EQ(ReasonOf(g.result), reason::kNotEvaluated) << g.guard;
    EXPECT_THAT(std::string(g.result.message()), ::testing::HasSubstr("a (a is down)"));
  }
  (*in.read_only)[2].rotation.report->rotation_state = "pending";
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("rotation"), reason::kRotationInProgress);
}

// Nodes not evaluated for the same reason are named together: a fleet of
// static-pod nodes without kits reads as one sentence, not three.
TEST(DryRunTest, NodesNotEvaluatedForOneReasonAreNamedTogether) {
  DryRunInput in = WithReadOnlyChecks();
  for (size_t i : {0u, 2u}) {
    (*in.read_only)[i].rotation.report =
        MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated, "no kit");
  }
  (*in.read_only)[1].rotation.report =
      MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated, "too old");
  for (const GuardOutcome& g : EvaluateDryRun(kConfig, in).guards) {
    if (g.guard != "rotation") continue;
    EXPECT_THAT(std::string(g.result.message()),
                ::testing::HasSubstr("Not evaluated on a, c (no kit), b (too old): "));
  }
}

TEST(DryRunTest, AnAgentThatRanAFullPreflightInsteadIsNotEvaluated) {
  // What an agent older than installed_only answers: a preflight of no
  // version (the request names none).
  NodeReadOnlyChecks refused = ReadOnlyChecksOf(
      "a", MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidSemver,
                     "version \"\" is not SemVer"));
  EXPECT_EQ(ReasonOf(refused.unavailable), reason::kNotEvaluated);
  EXPECT_THAT(std::string(refused.unavailable.message()), ::testing::HasSubstr("predates"));
  v1::PreflightResponse old_agent;
  old_agent.set_version("0.2.0");  // it ran Preflight of a staged 0.2.0
  old_agent.set_transit_metadata_status("pass");
  old_agent.set_rotation_state("active");
  NodeReadOnlyChecks n = ReadOnlyChecksOf("a", old_agent);
  EXPECT_EQ(ReasonOf(n.unavailable), reason::kNotEvaluated);
  v1::PreflightResponse current = old_agent;
  current.clear_version();
  current.set_previous_artifact_verified(true);
  n = ReadOnlyChecksOf("a", current);
  EXPECT_TRUE(n.unavailable.ok());
  EXPECT_TRUE(n.previous_kept);
  ASSERT_TRUE(n.rotation.report.ok());
  EXPECT_EQ(n.rotation.report->rotation_state, "active");
}

// Found in review: the dry run checked parity on its one round, while a
// real run waits for N consecutive ones: a fleet just back from an outage
// passed the dry run and then held. With the coordinator's streak it
// judges as the real run does.
TEST(DryRunTest, ParityNeedsTheStreakARealRunNeeds) {
  DryRunInput in = Healthy();
  ParityStreak streak;
  streak.Observe(testing::HealthyFleet({"a", "b", "c"}, "0.1.0", 1000));
  in.parity = streak;
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("parity"), reason::kParityNotStable);
  for (int64_t at : {2000, 3000}) {
    streak.Observe(testing::HealthyFleet({"a", "b", "c"}, "0.1.0", at));
  }
  in.parity = streak;
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("parity"), "pass");
  in.request.settings.set_parity_observations(5);
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("parity"), reason::kParityNotStable);
  // This round's split hashes refuse, however long the streak before it.
  in.request.settings.set_parity_observations(0);
  in.views = testing::HealthyFleet({"a", "b", "c"}, "0.1.0", 4000);
  in.views[1].state->set_key_id_hash_metric("another-hash");
  in.views[1].state->set_key_id_hash_socket("another-hash");
  EXPECT_EQ(Reasons(EvaluateDryRun(kConfig, in)).at("parity"), reason::kFleetParityMismatch);
}

TEST(DryRunTest, AnOrderNamingAStrangerIsRefused) {
  DryRunInput in = Healthy();
  in.request.order = {"a", "b", "x"};
  const DryRunReport report = EvaluateDryRun(kConfig, in);
  EXPECT_TRUE(report.order.empty());
  EXPECT_EQ(Reasons(report).at("node order"), reason::kUnknownNode);
}

// The rotation gate judges the nodes that answered this round: one that
// did not (no state, or its last state kept by the coordinator) is fleet
// health's to name, not a rotation in progress, and not a pass either.
TEST(FleetGatesTest, RotationJudgesOnlyTheNodesThatAnswered) {
  v1::FleetPlan plan;
  plan.mutable_settings()->set_parity_observations(1);
  std::vector<NodeView> views = testing::HealthyFleet({"a", "b", "c"}, "0.1.0");
  views[1].state->set_rotation_state("pending");
  views[1].unreachable_since_unix_ms = 4000;
  views[2].state.reset();
  ParityStreak streak;
  streak.Observe(views);
  const std::optional<OpenBaoProbe> openbao =
      OpenBaoProbe{"https://bao:8200", absl::OkStatus(), 200, ""};
  const std::vector<std::string> voters = {"a", "b", "c"};
  auto gates = EvaluateFleetGates(plan, {.voters = voters, .views = views, .parity = streak,
                                         .openbao = openbao, .now_unix_ms = 5000});
  ASSERT_EQ(gates.size(), 4u);
  EXPECT_EQ(gates[0].guard, "fleet health");
  EXPECT_EQ(ReasonOf(gates[0].result), reason::kAgentUnreachable);
  EXPECT_EQ(gates[3].guard, "rotation");
  EXPECT_EQ(ReasonOf(gates[3].result), reason::kNotEvaluated) << gates[3].result;
  EXPECT_THAT(std::string(gates[3].result.message()), ::testing::HasSubstr("on b, c"));
  views[1].unreachable_since_unix_ms = 0;  // b answers, rotating
  gates = EvaluateFleetGates(plan, {.voters = voters, .views = views, .parity = streak,
                                    .openbao = openbao, .now_unix_ms = 5000});
  EXPECT_EQ(ReasonOf(gates[3].result), reason::kRotationInProgress);
  EXPECT_THAT(std::string(gates[3].result.message()), ::testing::HasSubstr("b (\"pending\")"));
}

}  // namespace
}  // namespace kmsfleet
