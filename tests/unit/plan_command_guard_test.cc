// A member's command must be the committed plan's step for this node
// (core/plan_command_guard.h; the simulator's adversary found the gap).
#include "kmsfleet/core/plan_command_guard.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kWindowMs = 30000;
const char kDigest[] = "5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

// A plan with cp-2 in flight, swapping (or, with `rollback_of`, walking back).
v1::PlanRecord Record(const std::string& rollback_of = "") {
  v1::FleetPlan plan;
  plan.set_plan_id("plan-1");
  plan.set_target_version("0.2.0");
  plan.set_version_before("0.1.0");
  plan.set_in_flight("cp-2");
  plan.set_phase(rollback_of.empty() ? v1::PLAN_PHASE_ROLLING : v1::PLAN_PHASE_ROLLING_BACK);
  v1::PlanNode* n = plan.add_nodes();
  n->set_node("cp-2");
  n->set_phase(v1::PLAN_NODE_PHASE_IN_FLIGHT);
  n->set_stage(v1::PLAN_STEP_STAGE_SWAPPING);
  n->set_operation_id(rollback_of.empty() ? "plan-1.cp-2.swap.4" : "plan-1.cp-2.rollback.9");
  n->set_rollback_of(rollback_of);
  n->set_staged_digest(kDigest);
  plan.mutable_settings()->set_stabilization_ms(kWindowMs);
  v1::PlanRecord record;
  record.set_term(3);
  record.set_index(12);
  record.set_in_flight("cp-2");
  record.set_payload(*EncodePlan(plan));
  return record;
}

// cp-2's election: cp-1 leads the term of Record().
const LeaderOfTerm kCp1Leads{.leader = "cp-1", .term = 3};

// As the coordinator sends it: with the plan's window and the node's digest.
NodeCommand Swap(std::string id, std::string version) {
  return NodeCommand{.kind = NodeCommand::Kind::kSwap,
                     .operation_id = std::move(id),
                     .version = std::move(version),
                     .stabilization_ms = kWindowMs,
                     .expected_staged_digest = kDigest,
                     .sent_by = "cp-1"};
}

TEST(PlanCommandGuardTest, ThePlansOwnSwapIsAdmitted) {
  EXPECT_TRUE(CheckCommandAgainstPlan(Record(), "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0")).ok());
}

// Found in review: a coordinator that decided on a Rolling record sent the
// swap under the fence of a pause committed meanwhile, and the node took it.
TEST(PlanCommandGuardTest, NoSwapOrRollbackStartsWhileThePlanDoesNotMoveOnItsOwn) {
  for (v1::PlanPhase phase : {v1::PLAN_PHASE_PAUSED, v1::PLAN_PHASE_HALTED,
                              v1::PLAN_PHASE_BREAK_GLASS, v1::PLAN_PHASE_ABORTED}) {
    for (const std::string& rollback_of : {std::string(), std::string("plan-1.cp-2.swap.4")}) {
      v1::FleetPlan plan = *DecodePlan(Record(rollback_of).payload());
      plan.set_phase(phase);
      v1::PlanRecord record;
      record.set_payload(*EncodePlan(plan));
      NodeCommand command = Swap("plan-1.cp-2.swap.4", "0.2.0");
      if (!rollback_of.empty()) {
        command = {.kind = NodeCommand::Kind::kRollback,
                   .operation_id = "plan-1.cp-2.rollback.9",
                   .of_operation_id = rollback_of,
                   .stabilization_ms = kWindowMs};
      }
      absl::Status s = CheckCommandAgainstPlan(record, "cp-2", command);
      EXPECT_EQ(ReasonOf(s), reason::kPlanNotMoving) << PlanPhaseName(phase);
      EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(PlanPhaseName(phase))));
      EXPECT_THAT(std::string(s.message()), HasSubstr("nothing ran"));
    }
  }
  v1::FleetPlan aborting = *DecodePlan(Record().payload());
  aborting.set_abort_requested(true);
  v1::PlanRecord record;
  record.set_payload(*EncodePlan(aborting));
  absl::Status s = CheckCommandAgainstPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"));
  EXPECT_EQ(ReasonOf(s), reason::kPlanNotMoving);
  EXPECT_THAT(std::string(s.message()), HasSubstr("abort requested"));
}

TEST(PlanCommandGuardTest, AnotherVersionOrOperationIsRefusedNamingTheStep) {
  absl::Status s = CheckCommandAgainstPlan(Record(), "cp-2", Swap("plan-1.cp-2.swap.4", "0.3.0"));
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_THAT(std::string(s.message()), HasSubstr("swap plan-1.cp-2.swap.4 to 0.2.0"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("not swap plan-1.cp-2.swap.4 to 0.3.0"));
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(Record(), "cp-2", Swap("mine", "0.2.0"))),
            reason::kCommandNotInPlan);
}

// Found in review: a member that sent the step's own id and version before
// the coordinator did could pick a 1 ms window, so the node was released
// on one ready probe, or drop the digest check of what preflight vetted.
TEST(PlanCommandGuardTest, TheStepWithOtherSettingsThanThePlansIsRefused) {
  NodeCommand short_window = Swap("plan-1.cp-2.swap.4", "0.2.0");
  short_window.stabilization_ms = 1;
  absl::Status s = CheckCommandAgainstPlan(Record(), "cp-2", short_window);
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_THAT(std::string(s.message()), HasSubstr("stabilization 30000 ms"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("not swap plan-1.cp-2.swap.4 to 0.2.0 "
                                                  "(stabilization 1 ms"));
  NodeCommand no_digest = Swap("plan-1.cp-2.swap.4", "0.2.0");
  no_digest.expected_staged_digest.clear();
  s = CheckCommandAgainstPlan(Record(), "cp-2", no_digest);
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_THAT(std::string(s.message()), HasSubstr("staged digest none"));
  NodeCommand rollback{.kind = NodeCommand::Kind::kRollback,
                       .operation_id = "plan-1.cp-2.rollback.9",
                       .of_operation_id = "plan-1.cp-2.swap.4",
                       .stabilization_ms = 0};
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(Record("plan-1.cp-2.swap.4"), "cp-2", rollback)),
            reason::kCommandNotInPlan)
      << "0 would be the agent's own default window, not the plan's";
}

TEST(PlanCommandGuardTest, ANodeNotInFlightOrARawRecordAdmitsNoMemberCommand) {
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(Record(), "cp-1", Swap("plan-1.cp-2.swap.4", "0.2.0"))),
            reason::kCommandNotInPlan);
  v1::PlanRecord raw;
  raw.set_in_flight("cp-2");
  raw.set_payload("demo plan");  // `kmsfleetctl plan commit --payload`
  absl::Status s = CheckCommandAgainstPlan(raw, "cp-2", Swap("x", "0.2.0"));
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no fleet plan"));
}

TEST(PlanCommandGuardTest, WalkingBackOnlyTheRollbackOfThePlansSwapIsAdmitted) {
  v1::PlanRecord record = Record("plan-1.cp-2.swap.4");
  NodeCommand rollback{.kind = NodeCommand::Kind::kRollback,
                       .operation_id = "plan-1.cp-2.rollback.9",
                       .of_operation_id = "plan-1.cp-2.swap.4",
                       .stabilization_ms = kWindowMs};
  EXPECT_TRUE(CheckCommandAgainstPlan(record, "cp-2", rollback).ok());
  rollback.of_operation_id = "other";
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(record, "cp-2", rollback)), reason::kCommandNotInPlan);
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(record, "cp-2",
                                             Swap("plan-1.cp-2.rollback.9", "0.2.0"))),
            reason::kCommandNotInPlan);
}

TEST(PlanCommandGuardTest, OnlyTheRestartThatFollowsTheNodesSwapIsAdmitted) {
  v1::FleetPlan plan = *DecodePlan(Record().payload());
  plan.mutable_nodes(0)->set_stage(v1::PLAN_STEP_STAGE_RESTARTING_APISERVER);
  v1::PlanRecord record;
  record.set_payload(*EncodePlan(plan));
  NodeCommand restart{.kind = NodeCommand::Kind::kRestartApiServer,
                      .operation_id = "plan-1.cp-2.swap.4.apiserver"};
  EXPECT_TRUE(CheckCommandAgainstPlan(record, "cp-2", restart).ok());
  restart.operation_id = "whenever";
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(record, "cp-2", restart)), reason::kCommandNotInPlan);
  // While the node swaps, no restart; once it restarts, no swap.
  restart.operation_id = "plan-1.cp-2.swap.4.apiserver";
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(Record(), "cp-2", restart)),
            reason::kCommandNotInPlan);
  EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"))),
            reason::kCommandNotInPlan);
}

// A restart asked again by `resume` goes out under an id of its own: the
// agent answers a repeated id from its last run, the failed one.
TEST(PlanCommandGuardTest, ARestartAskedAgainIsAdmittedUnderItsOwnIdOnly) {
  v1::FleetPlan plan = *DecodePlan(Record().payload());
  plan.mutable_nodes(0)->set_stage(v1::PLAN_STEP_STAGE_RESTARTING_APISERVER);
  plan.mutable_nodes(0)->set_apiserver_restart_retries(2);
  EXPECT_EQ(ApiServerRestartOperationId(plan.nodes(0)), "plan-1.cp-2.swap.4.retry-2");
  v1::PlanRecord record;
  record.set_payload(*EncodePlan(plan));
  NodeCommand restart{.kind = NodeCommand::Kind::kRestartApiServer,
                      .operation_id = "plan-1.cp-2.swap.4.retry-2.apiserver"};
  EXPECT_TRUE(CheckCommandAgainstPlan(record, "cp-2", restart).ok());
  for (const char* earlier : {"plan-1.cp-2.swap.4.apiserver",
                              "plan-1.cp-2.swap.4.retry-1.apiserver"}) {
    restart.operation_id = earlier;
    EXPECT_EQ(ReasonOf(CheckCommandAgainstPlan(record, "cp-2", restart)),
              reason::kCommandNotInPlan)
        << earlier;
  }
}

// A plan in Preflight over cp-1 and cp-2, staging 0.2.0 from `settings`.
v1::PlanRecord StagingRecord(v1::PlanPhase phase = v1::PLAN_PHASE_PREFLIGHT) {
  v1::FleetPlan plan;
  plan.set_plan_id("plan-2");
  plan.set_phase(phase);
  plan.set_target_version("0.2.0");
  for (const char* name : {"cp-1", "cp-2"}) plan.add_nodes()->set_node(name);
  v1::PlanSettings* settings = plan.mutable_settings();
  settings->set_artifact_source("coordinator://cp-3/uploads/abc/bao-kms-provider");
  settings->set_checksums_source("coordinator://cp-3/uploads/def/checksums.txt");
  settings->set_signature_source("coordinator://cp-3/uploads/123/checksums.txt.sig");
  v1::PlanRecord record;
  record.set_payload(*EncodePlan(plan));
  return record;
}

// As FleetActions::Stage sends it.
ReleaseCommand PlansStage() {
  return ReleaseCommand{.kind = ReleaseCommand::Kind::kStage,
                        .version = "0.2.0",
                        .source = "coordinator://cp-3/uploads/abc/bao-kms-provider",
                        .checksums = "coordinator://cp-3/uploads/def/checksums.txt",
                        .signature = "coordinator://cp-3/uploads/123/checksums.txt.sig"};
}

// Found in review: another member's key could have the in-flight node
// stage the plan's release again (in place, holding the coordinator's
// swap of it off) or run its doctor again and again. A member's stage and
// preflight come from the leader too; a fence not yet seen is waited for
// first, as before.
TEST(ReleaseGuardTest, AMembersStageAndPreflightComeFromTheLeader) {
  v1::PlanRecord record = StagingRecord();
  record.set_term(4);
  record.set_index(9);
  const LeaderOfTerm cp3_leads{.leader = "cp-3", .term = 4};
  ReleaseCommand stage = PlansStage();
  stage.sent_by = "cp-3";
  EXPECT_TRUE(BindReleaseToPlan(record, "cp-2", stage, std::nullopt, cp3_leads).ok());
  const ReleaseCommand preflight{
      .kind = ReleaseCommand::Kind::kPreflight, .version = "0.2.0", .sent_by = "cp-3"};
  EXPECT_TRUE(BindReleaseToPlan(record, "cp-2", preflight, std::nullopt, cp3_leads).ok());
  for (const char* member : {"cp-1", "cp-2", "learner-1"}) {
    ReleaseCommand other = stage;
    other.sent_by = member;
    absl::Status s = BindReleaseToPlan(record, "cp-2", other, std::nullopt, cp3_leads);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << member << ": " << s;
    EXPECT_EQ(ReasonOf(s), reason::kCommandNotFromLeader) << member << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("stage of 0.2.0"));
  }
  EXPECT_EQ(ReasonOf(BindReleaseToPlan(record, "cp-2", preflight, std::nullopt, {"", 4})),
            reason::kCommandNotFromLeader);
  v1::Fence unseen;
  unseen.set_term(4);
  unseen.set_index(10);
  EXPECT_EQ(ReasonOf(BindReleaseToPlan(record, "cp-2", stage, unseen, {"", 4})),
            reason::kUnknownFence);
  // From the leader, the plan's check still holds.
  ReleaseCommand own_source = stage;
  own_source.source = "/tmp/mine";
  EXPECT_EQ(ReasonOf(BindReleaseToPlan(record, "cp-2", own_source, std::nullopt, cp3_leads)),
            reason::kCommandNotInPlan);
}

// Found in review: a member's Stage and Preflight were bound to nothing,
// so one member certificate could stage on every node a release no
// operator chose, from a source of its own, and have it run as root.
TEST(ReleaseGuardTest, AMemberStagesAndPreflightsOnlyThePlansRelease) {
  EXPECT_TRUE(CheckReleaseAgainstPlan(StagingRecord(), "cp-2", PlansStage(), std::nullopt).ok());
  const ReleaseCommand preflight{.kind = ReleaseCommand::Kind::kPreflight, .version = "0.2.0"};
  EXPECT_TRUE(CheckReleaseAgainstPlan(StagingRecord(), "cp-2", preflight, std::nullopt).ok());
  // The Draft (recorded before its first action) and a later phase bind
  // the same release: a node whose record lags, and the warm-up.
  EXPECT_TRUE(CheckReleaseAgainstPlan(StagingRecord(v1::PLAN_PHASE_DRAFT), "cp-2", PlansStage(),
                                      std::nullopt)
                  .ok());
  EXPECT_TRUE(CheckReleaseAgainstPlan(StagingRecord(v1::PLAN_PHASE_ROLLING), "cp-1", preflight,
                                      std::nullopt)
                  .ok());

  ReleaseCommand own_source = PlansStage();
  own_source.source = "coordinator://cp-1/uploads/abc/bao-kms-provider";
  absl::Status s = CheckReleaseAgainstPlan(StagingRecord(), "cp-2", own_source, std::nullopt);
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("asks cp-2 for stage of 0.2.0 from coordinator://cp-3/uploads/abc/"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("not stage of 0.2.0 from coordinator://cp-1/uploads/abc/"));
  for (auto change : std::vector<std::function<void(ReleaseCommand&)>>{
           [](ReleaseCommand& c) { c.version = "0.3.0"; },
           [](ReleaseCommand& c) { c.checksums = "/srv/other/checksums.txt"; },
           [](ReleaseCommand& c) { c.signature.clear(); },
           [](ReleaseCommand& c) { c.artifact_name = "bao-kms-provider"; },
           [](ReleaseCommand& c) { c.image = "registry.example/bao@sha256:0"; },
           [](ReleaseCommand& c) { c.image_ref = "/srv/kit.tar.gz"; }}) {
    ReleaseCommand changed = PlansStage();
    change(changed);
    EXPECT_EQ(ReasonOf(CheckReleaseAgainstPlan(StagingRecord(), "cp-2", changed, std::nullopt)),
              reason::kCommandNotInPlan)
        << changed.checksums << changed.signature << changed.artifact_name << changed.image;
  }
  s = CheckReleaseAgainstPlan(StagingRecord(), "cp-2",
                              {.kind = ReleaseCommand::Kind::kPreflight, .version = "9.9.9"},
                              std::nullopt);
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("for preflight of 0.2.0, not preflight of 9.9.9"));
}

TEST(ReleaseGuardTest, NoPlanUnderWayOrANodeOutsideItAdmitsNone) {
  EXPECT_EQ(ReasonOf(CheckReleaseAgainstPlan(StagingRecord(), "cp-3", PlansStage(), std::nullopt)),
            reason::kCommandNotInPlan)
      << "cp-3 is not one of the plan's nodes";
  // Under a fence this node holds: no plan is under way, for certain.
  v1::PlanRecord finished = StagingRecord(v1::PLAN_PHASE_COMPLETED);
  finished.set_term(2);
  finished.set_index(7);
  v1::Fence held;
  held.set_term(2);
  held.set_index(7);
  absl::Status s = CheckReleaseAgainstPlan(finished, "cp-2", PlansStage(), held);
  EXPECT_EQ(ReasonOf(s), reason::kCommandNotInPlan);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no fleet plan is under way"));
  v1::PlanRecord raw;
  raw.set_payload("demo plan");
  EXPECT_EQ(ReasonOf(CheckReleaseAgainstPlan(raw, "cp-2", PlansStage(), v1::Fence())),
            reason::kCommandNotInPlan);
}

// Found in review: a node whose record lagged the coordinator's (a lost
// append, a slow disk) refused the plan's own stage FAILED_PRECONDITION,
// which halts the plan. It answers UNAVAILABLE, which the coordinator
// sends again, and still admits nothing.
TEST(ReleaseGuardTest, ANodeWhoseRecordLagsAsksForTheCommandAgain) {
  v1::PlanRecord finished = StagingRecord(v1::PLAN_PHASE_COMPLETED);
  finished.set_term(2);
  finished.set_index(7);
  v1::Fence ahead;
  ahead.set_term(2);
  ahead.set_index(9);
  absl::Status s = CheckReleaseAgainstPlan(finished, "cp-2", PlansStage(), ahead);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(s), reason::kUnknownFence);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has not seen plan record 2/9"));
  // Not even a plan's own release passes an unseen fence.
  ahead.set_index(8);
  EXPECT_EQ(ReasonOf(CheckReleaseAgainstPlan(StagingRecord(), "cp-2", PlansStage(), ahead)),
            reason::kUnknownFence);
  // No fence (an older coordinator): no plan here yet may be a lag too.
  s = CheckReleaseAgainstPlan(finished, "cp-2", PlansStage(), std::nullopt);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(s), reason::kPlanChangePending);
  EXPECT_EQ(ReasonOf(CheckReleaseAgainstPlan(v1::PlanRecord(), "cp-2", PlansStage(),
                                             std::nullopt)),
            reason::kPlanChangePending);
}

TEST(PlanCommandGuardTest, ARawRecordNeverReplacesAFleetPlanThatHasNotEnded) {
  v1::FleetPlan plan = *DecodePlan(Record().payload());
  for (v1::PlanPhase phase :
       {v1::PLAN_PHASE_ROLLING, v1::PLAN_PHASE_HALTED, v1::PLAN_PHASE_BREAK_GLASS,
        v1::PLAN_PHASE_PAUSED, v1::PLAN_PHASE_PREFLIGHT}) {
    plan.set_phase(phase);
    v1::PlanRecord record;
    record.set_payload(*EncodePlan(plan));
    absl::Status s = CheckRawProposal(record, "");
    EXPECT_EQ(ReasonOf(s), reason::kPlanActive) << PlanPhaseName(phase);
    EXPECT_NE(std::string(s.message()).find("plan-1"), std::string::npos) << s;
  }
  for (v1::PlanPhase phase :
       {v1::PLAN_PHASE_COMPLETED, v1::PLAN_PHASE_ROLLED_BACK, v1::PLAN_PHASE_ABORTED}) {
    plan.set_phase(phase);
    v1::PlanRecord record;
    record.set_payload(*EncodePlan(plan));
    EXPECT_TRUE(CheckRawProposal(record, "").ok()) << PlanPhaseName(phase);
  }
  v1::PlanRecord text;
  text.set_payload("plan-A");  // not a fleet plan: the election's own tests
  EXPECT_TRUE(CheckRawProposal(text, "").ok());
  EXPECT_TRUE(CheckRawProposal(v1::PlanRecord(), "").ok());
}

// Found in review: a change the coordinator stopped waiting for could
// commit late, and the next change, decided on the older revision, then
// replaced it (an abort or a halt forgotten).
TEST(PlanCommandGuardTest, AChangeDecidedOnAnOlderRevisionIsNotProposed) {
  v1::FleetPlan base = *DecodePlan(Record().payload());
  base.set_revision(7);
  v1::FleetPlan late = base;
  late.set_revision(8);
  late.set_phase(v1::PLAN_PHASE_ABORTED);
  v1::PlanRecord committed;
  committed.set_payload(*EncodePlan(late));
  absl::Status s = CheckChangeBase(committed, base);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(ReasonOf(s), reason::kPlanChangePending);
  EXPECT_EQ(MetadataOf(s, "committed_revision"), "8");
  EXPECT_EQ(MetadataOf(s, "base_revision"), "7");
  EXPECT_THAT(std::string(s.message()), HasSubstr("plan-1"));
  // Decided on no plan at all while one committed: the same.
  EXPECT_EQ(ReasonOf(CheckChangeBase(committed, std::nullopt)), reason::kPlanChangePending);
  // Decided on what is committed: proposed.
  EXPECT_TRUE(CheckChangeBase(committed, late).ok());
  // A raw record carries nothing of the coordinator's to lose.
  v1::PlanRecord text;
  text.set_payload("plan-A");
  EXPECT_TRUE(CheckChangeBase(text, base).ok());
  EXPECT_TRUE(CheckChangeBase(v1::PlanRecord(), std::nullopt).ok());
}

// The plan's compatibility facts bind the swap it asks for: once served,
// a one-way or wire-format target is not undone by the node on its own.
TEST(PlanCommandGuardTest, ASwapIsBoundByThePlansCompatibilityFacts) {
  v1::PlanRecord record = Record();
  absl::StatusOr<PlanBinding> bound =
      BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"), kCp1Leads);
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(bound->restore_refused_once_served, "");

  v1::FleetPlan plan = *DecodePlan(record.payload());
  plan.mutable_compat()->set_wire_format_change(true);
  plan.mutable_compat()->set_migration_planned(true);
  record.set_payload(*EncodePlan(plan));
  bound = BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"), kCp1Leads);
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(bound->restore_refused_once_served, reason::kRollbackRefusedWireFormat);

  plan.mutable_compat()->Clear();
  plan.mutable_compat()->add_required_acknowledgements(reason::kAckOneWayUpgrade);
  record.set_payload(*EncodePlan(plan));
  bound = BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"), kCp1Leads);
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_EQ(bound->restore_refused_once_served, reason::kRollbackRefusedOneWay);

  // A command the plan does not ask for is refused as before.
  EXPECT_EQ(ReasonOf(BindCommandToPlan(record, "cp-2", Swap("mine", "0.2.0"), kCp1Leads).status()),
            reason::kCommandNotInPlan);
}

// Found in review: any member's certificate passed the plan check, so a
// learner or another voter could send cp-2 the plan's own step while the
// coordinator held it back (another provider down: a follow-only send),
// and take two providers down. Only the leader cp-2 follows in the term of
// its committed record may; anyone else, or anyone while cp-2 has heard
// from no leader of that term, is refused, and asked again by the leader.
TEST(PlanCommandGuardTest, OnlyTheLeaderOfTheRecordsTermMaySendTheStep) {
  const v1::PlanRecord record = Record();
  ASSERT_TRUE(BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"), kCp1Leads)
                  .ok());
  for (const char* member : {"cp-3", "cp-2", "learner-1", ""}) {
    NodeCommand step = Swap("plan-1.cp-2.swap.4", "0.2.0");
    step.sent_by = member;
    absl::Status s = BindCommandToPlan(record, "cp-2", step, kCp1Leads).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << member << ": " << s;
    EXPECT_EQ(ReasonOf(s), reason::kCommandNotFromLeader) << member << ": " << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("it follows cp-1 in term 3"));
    EXPECT_EQ(MetadataOf(s, "sent_by"), member);
  }
  absl::Status unheard =
      BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"), {"", 3}).status();
  EXPECT_EQ(ReasonOf(unheard), reason::kCommandNotFromLeader) << unheard;
  EXPECT_THAT(std::string(unheard.message()), HasSubstr("has heard from no leader in term 3"));
  // cp-1 deposed: cp-2 is in a later term than the record cp-1 committed.
  EXPECT_EQ(ReasonOf(BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"),
                                       {"cp-3", 4})
                         .status()),
            reason::kCommandNotFromLeader);
  EXPECT_EQ(ReasonOf(BindCommandToPlan(record, "cp-2", Swap("plan-1.cp-2.swap.4", "0.2.0"),
                                       {"cp-1", 4})
                         .status()),
            reason::kCommandNotFromLeader);
  // The leader's kube-apiserver restart and rollback are held to it too.
  NodeCommand restart{.kind = NodeCommand::Kind::kRestartApiServer,
                      .operation_id = "plan-1.cp-2.swap.4.apiserver",
                      .sent_by = "cp-3"};
  EXPECT_EQ(ReasonOf(BindCommandToPlan(record, "cp-2", restart, kCp1Leads).status()),
            reason::kCommandNotFromLeader);
}

// Found in review: an operator's command whose change was refused for its
// base was answered PLAN_CHANGE_PENDING ("may still take effect"), though
// it was dropped: an abort the operator then waited for that never came.
TEST(PlanCommandGuardTest, ACommandWhoseChangeWasNeverProposedIsNotTaken) {
  v1::FleetPlan base = *DecodePlan(Record().payload());
  base.set_revision(7);
  v1::FleetPlan late = base;
  late.set_revision(8);
  v1::PlanRecord committed;
  committed.set_payload(*EncodePlan(late));
  absl::Status answer = CommandAnswerFor(CheckChangeBase(committed, base));
  EXPECT_EQ(answer.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(answer), reason::kCommandNotTaken);
  EXPECT_THAT(std::string(answer.message()), HasSubstr("send it again"));
  // A change that may still commit is answered as it is.
  absl::Status timed_out =
      MakeError(absl::StatusCode::kUnavailable, reason::kPlanChangePending, "not in 5 s");
  EXPECT_EQ(ReasonOf(CommandAnswerFor(timed_out)), reason::kPlanChangePending);
}

// Found in review: a raw record whose payload was a fleet plan was adopted
// by the coordinator and driven, none of the start guards having run.
TEST(PlanCommandGuardTest, ARawRecordIsNeverAFleetPlan) {
  const v1::PlanRecord none;
  v1::FleetPlan plan = *DecodePlan(Record().payload());
  plan.set_phase(v1::PLAN_PHASE_ROLLING);
  absl::Status s = CheckRawProposal(none, *EncodePlan(plan));
  EXPECT_EQ(ReasonOf(s), reason::kRawFleetPlanRefused) << s;
  EXPECT_NE(std::string(s.message()).find("plan-1"), std::string::npos) << s;
  EXPECT_EQ(MetadataOf(s, "phase"), "Rolling") << s;
  // Without an id, a phase or nodes alone still make it one.
  v1::FleetPlan anonymous;
  anonymous.set_phase(v1::PLAN_PHASE_ROLLING);
  EXPECT_EQ(ReasonOf(CheckRawProposal(none, *EncodePlan(anonymous))),
            reason::kRawFleetPlanRefused);
  v1::FleetPlan nodes_only;
  nodes_only.add_nodes()->set_node("cp-2");
  EXPECT_EQ(ReasonOf(CheckRawProposal(none, *EncodePlan(nodes_only))),
            reason::kRawFleetPlanRefused);
  // A finished plan is refused too: it is still a plan the coordinator
  // would take as its own.
  plan.set_phase(v1::PLAN_PHASE_COMPLETED);
  EXPECT_EQ(ReasonOf(CheckRawProposal(none, *EncodePlan(plan))), reason::kRawFleetPlanRefused);
  // Found in review: a revision alone (here the largest) decoded with no
  // id, phase or nodes, and would have outrun every plan to come.
  v1::FleetPlan revision_only;
  revision_only.set_revision(UINT64_MAX);
  EXPECT_EQ(ReasonOf(CheckRawProposal(none, *EncodePlan(revision_only))),
            reason::kRawFleetPlanRefused);
  // Plain text and an empty payload are what the raw record is for.
  EXPECT_TRUE(CheckRawProposal(none, "plan-A").ok());
  EXPECT_TRUE(CheckRawProposal(none, "").ok());
}

// Found in review: agents took any payload that decoded for a fleet plan.
// Text that decodes as unknown fields only ("H1") read as a plan with no
// finished phase, and every `upgrade` was then refused PLAN_ACTIVE.
TEST(PlanCommandGuardTest, OnlyAPayloadWithAPlanIdIsAFleetPlan) {
  ASSERT_TRUE(DecodePlan("H1").ok());
  EXPECT_FALSE(FleetPlanIn("H1").has_value());
  EXPECT_TRUE(CheckRawProposal(v1::PlanRecord(), "H1").ok());  // no plan: allowed
  v1::FleetPlan revision_only;
  revision_only.set_revision(7);
  EXPECT_FALSE(FleetPlanIn(*EncodePlan(revision_only)).has_value());
  EXPECT_FALSE(FleetPlanIn("plan-A").has_value());
  EXPECT_FALSE(FleetPlanIn("").has_value());
  std::optional<v1::FleetPlan> plan = FleetPlanIn(Record().payload());
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(plan->plan_id(), "plan-1");
}

}  // namespace
}  // namespace kmsfleet
