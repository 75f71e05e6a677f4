// End to end (issue 9): kmsfleetctl -> the elected coordinator -> three
// agents over mTLS -> fake providers under a real systemd user manager.
// Each test proves what an operator would see and that no two providers
// were ever down at once (from a fake's stop until its /ready first
// answers 200 again, read from its own log lines).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "fleet_fixture.h"
#include "user_manager.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(FleetUpgradeTest, OneCommandUpgradesEveryNodeOneAtATimeAndEndsInParity) {
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run((coordinator + 1) % 3, Upgrade({"--watch"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(r.stdout_text, HasSubstr("3/3 nodes  Completed"));
  // Plain lines (no terminal) say how long too: each node its phase, the
  // bar the plan.
  EXPECT_THAT(r.stdout_text, ::testing::ContainsRegex("cp-1 +Done +[0-9]+s"));
  EXPECT_THAT(r.stdout_text, ::testing::ContainsRegex("3/3 nodes  Completed  elapsed [0-9]+s"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  std::vector<Interval> down = fleet_->DownIntervals();
  ASSERT_EQ(down.size(), 3u) << fleet_->Logs();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  // Sorted by name, the coordinator's own node last.
  std::sort(down.begin(), down.end(),
            [](const Interval& a, const Interval& b) { return a.from_ms < b.from_ms; });
  EXPECT_EQ(down.back().node, fleet_->Name(coordinator));
  std::string plan = PlanJson();
  EXPECT_THAT(plan, HasSubstr("PLAN_PHASE_COMPLETED"));
  EXPECT_THAT(plan, HasSubstr("operator alice"));
  // Every agent keeps the history from the commits it learns of.
  SubprocessResult history;
  EXPECT_TRUE(WaitUntil([&] {
    history = Run(1, {"history"});
    return history.stdout_text.find("Completed") != std::string::npos;
  }, std::chrono::seconds(10))) << history.stdout_text;
  EXPECT_THAT(history.stdout_text, HasSubstr("0.1.0 -> 0.2.0"));
  // /metrics: the coordinator saw the fleet in parity; each node timed
  // its swap's stabilisation window.
  const std::string name = fleet_->Name(coordinator);
  std::string metrics;
  EXPECT_TRUE(WaitUntil([&] {
    metrics = fleet_->AgentMetrics(coordinator);
    return metrics.find("kmsfleet_fleet_key_id_parity{node=\"" + name + "\"} 1") !=
           std::string::npos;
  }, std::chrono::seconds(10))) << metrics;
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(fleet_->AgentMetrics(i),
                HasSubstr("kmsfleet_node_operation_duration_seconds_count{phase=\"Verifying\"} 1"))
        << fleet_->Name(i);
  }
}

// On a terminal (`script` gives kmsfleetctl a pseudo-terminal), watch
// redraws its frame in place: the cursor goes back up over the lines it
// drew and clears below them. Each node line carries its phase's elapsed
// time, and the bar the plan's.
TEST_F(FleetUpgradeTest, WatchOnATerminalRedrawsItsFrameInPlace) {
  std::string command;
  for (const std::string& arg : fleet_->CtlArgv(0, "alice", Upgrade({"--watch"}))) {
    command += "'" + arg + "' ";
  }
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(120);
  absl::StatusOr<SubprocessResult> r =
      RunSubprocess({"/usr/bin/script", "-qec", command, "/dev/null"}, options);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string& out = r->stdout_text;
  ASSERT_EQ(r->exit_code, 0) << out << r->stderr_text << fleet_->Logs();
  EXPECT_THAT(out, ::testing::ContainsRegex("\033\\[[0-9]+F\033\\[J"));  // up n lines, clear
  EXPECT_THAT(out, ::testing::ContainsRegex("cp-1 +Done +[0-9]+s"));
  EXPECT_THAT(out, ::testing::ContainsRegex("3/3 nodes  Completed  elapsed [0-9]+s"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
}

TEST_F(FleetUpgradeTest, DryRunPrintsEveryGuardAndChangesNothing) {
  SubprocessResult r = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  for (const char* guard : {"node order", "fleet health", "version policy", "compatibility",
                            "parity", "openbao", "rotation", "doctor"}) {
    EXPECT_THAT(r.stdout_text, HasSubstr(guard));
  }
  EXPECT_THAT(r.stdout_text, HasSubstr("no guard refuses"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

TEST_F(FleetUpgradeTest, DoctorFailingOnOneNodeHaltsBeforeAnySwap) {
  fleet_->Toggle(1, "doctor-fails", true);
  SubprocessResult r = Run(0, Upgrade({"--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("DOCTOR_FAILED"));
  EXPECT_THAT(r.stdout_text, HasSubstr("cp-2"));
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_HALTED"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

TEST_F(FleetUpgradeTest, NodeThatNeverBecomesReadyIsRestoredAndThePlanHalts) {
  fleet_->Toggle(1, "never-ready", true);
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_HALTED"));
  // The halt names the node and its operation's own reason.
  EXPECT_EQ(HaltField("node"), "cp-2") << PlanJson();
  EXPECT_EQ(HaltField("reason"), "NOT_READY") << PlanJson();
  // cp-1 was upgraded, cp-2 restored, cp-3 never touched.
  EXPECT_EQ(Versions(), (std::vector<std::string>{"0.2.0", "0.1.0", "0.1.0"}));
  EXPECT_TRUE(fleet_->ProviderReady(1));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, PendingRotationStopsThePlanBeforeAnySwap) {
  for (int i = 0; i < 3; ++i) fleet_->SetScenario(i, "key_seed: fleet-key-1\nrotation_state: pending\n");
  SubprocessResult r = Run(0, Upgrade({"--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text + r.stderr_text, HasSubstr("ROTATION_IN_PROGRESS")) << fleet_->Logs();
  EXPECT_TRUE(fleet_->DownIntervals().empty());
  // The coordinator counted the guard's refusal.
  const int coordinator = fleet_->WaitForCoordinator();
  EXPECT_THAT(fleet_->AgentMetrics(coordinator),
              HasSubstr("kmsfleet_guard_refusals_total{reason=\"ROTATION_IN_PROGRESS\"} "))
      << fleet_->AgentMetrics(coordinator);
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
}

// Found in review: a key rotated in OpenBao that cp-2's provider had not
// yet recorded as pending (rotation-plan: latest Transit version above the
// active one, rotationState still active) passed the plan's rotation
// guard, which saw only three fields of cp-2's answer; cp-1 was swapped
// before cp-2's own check refused.
TEST_F(FleetUpgradeTest, ALatestTransitVersionAboveTheActiveOneStopsThePlanBeforeAnySwap) {
  fleet_->SetScenario(1, "key_seed: fleet-key-1\n"
                         "rotation_plan: {activeTransitVersion: 2, latestTransitVersion: 3}\n");
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text + r.stderr_text,
              HasSubstr("cp-2 (latest Transit version 3 above the active 2)"))
      << fleet_->Logs();
  EXPECT_TRUE(fleet_->DownIntervals().empty()) << fleet_->DescribeDowntime();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
}

// Reference §10: a node whose registry checkpoint is not current (here
// cp-2's state file has no checkpoint) stops the dry run and the plan
// before any swap, naming it; once the operator has judged the state
// right, the plan aborted and started again with the acknowledgement
// upgrades the fleet, and the acknowledgement is audited.
TEST_F(FleetUpgradeTest, ACheckpointThatIsNotCurrentStopsThePlanUntilAcknowledged) {
  fleet_->SetScenario(1, "key_seed: fleet-key-1\n"
                         "rotation_plan: {stateCheckpointStatus: missing}\n");
  SubprocessResult dry = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(dry.exit_code, 1) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text, HasSubstr("STATE_CHECKPOINT_NOT_CURRENT"));
  EXPECT_THAT(dry.stdout_text, HasSubstr("cp-2 (stateCheckpointStatus missing)"));
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text + r.stderr_text, HasSubstr("STATE_CHECKPOINT_NOT_CURRENT"))
      << fleet_->Logs();
  EXPECT_EQ(HaltField("reason"), "STATE_CHECKPOINT_NOT_CURRENT");
  const std::string halted_plan = PlanField("plan_id");
  EXPECT_TRUE(fleet_->DownIntervals().empty()) << fleet_->DescribeDowntime();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));

  SubprocessResult abort = Run(0, {"abort"});
  ASSERT_EQ(abort.exit_code, 0) << abort.stdout_text << abort.stderr_text;
  SubprocessResult up = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--acknowledge",
                                        "STATE_CHECKPOINT_NOT_CURRENT", "--watch"}));
  ASSERT_EQ(up.exit_code, 0) << up.stdout_text << up.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  // The new plan, not the aborted one (whose halt names the code too),
  // carries the acknowledgement.
  EXPECT_NE(PlanField("plan_id"), halted_plan);
  boost::system::error_code ec;
  const boost::json::value view = boost::json::parse(PlanJson(), ec);
  ASSERT_FALSE(ec) << PlanJson();
  const boost::json::value* acks = view.as_object().at("plan").as_object().if_contains(
      "acknowledgements");
  ASSERT_TRUE(acks != nullptr && acks->is_array()) << PlanJson();
  EXPECT_EQ(boost::json::serialize(*acks), "[\"STATE_CHECKPOINT_NOT_CURRENT\"]");
  EXPECT_EQ(fleet_->OverlappingDowntime(), "") << fleet_->DescribeDowntime();
}

// The dry run asks every node's installed release for rotation-plan, as
// the real run's Preflight does: the same Transit rotation refuses it,
// naming cp-2, and nothing is staged or changed. (Found by the
// requirements audit: it judged by the rotation metric alone and said a
// real run would start.)
TEST_F(FleetUpgradeTest, ADryRunRefusesATransitRotationTheRealRunWouldRefuse) {
  fleet_->SetScenario(1, "key_seed: fleet-key-1\n"
                         "rotation_plan: {activeTransitVersion: 2, latestTransitVersion: 3}\n");
  SubprocessResult r = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, ::testing::ContainsRegex("rotation +\\[ROTATION_IN_PROGRESS\\]"));
  EXPECT_THAT(r.stdout_text, HasSubstr("cp-2 (latest Transit version 3 above the active 2)"));
  EXPECT_THAT(r.stdout_text, ::testing::ContainsRegex("rollback readiness +pass"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  EXPECT_FALSE(PathExists(fleet_->NodeDir(1) + "/state/artifacts/0.2.0"));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

// Found by the requirements audit: rollback readiness asked only that the
// installed binary be an executable file. cp-2's is replaced on disk by
// another release while its provider still runs 0.1.0: a swap would keep
// that binary as the previous release, and a rollback would install it.
// The dry run and the real run refuse before any swap, naming cp-2.
TEST_F(FleetUpgradeTest, AnInstalledBinaryThatIsNotTheRunningReleaseIsNoWayBack) {
  const std::string installed = fleet_->NodeDir(1) + "/bin/bao-kms-provider";
  std::string script = ReadFile(installed);
  const size_t at = script.find("--fake-version 0.1.0");
  ASSERT_NE(at, std::string::npos) << script;
  script.replace(at, std::string("--fake-version 0.1.0").size(), "--fake-version 0.1.5");
  WriteExecutable(installed, script);
  SubprocessResult dry = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(dry.exit_code, 1) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text,
              ::testing::ContainsRegex("rollback readiness +\\[ROLLBACK_ARTIFACT_MISSING\\][^\n]*cp-2"));
  SubprocessResult up = Run(0, Upgrade({"--watch"}));
  EXPECT_EQ(up.exit_code, 1) << up.stdout_text << up.stderr_text;
  EXPECT_EQ(HaltField("reason"), "ROLLBACK_ARTIFACT_MISSING") << PlanJson();
  EXPECT_TRUE(fleet_->DownIntervals().empty()) << fleet_->DescribeDowntime();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
}

// The same when the installed binary's `version` cannot be read: what a
// rollback would reinstall is not known, so it is no way back either.
TEST_F(FleetUpgradeTest, AnInstalledBinaryWhoseVersionFailsIsNoWayBack) {
  const std::string installed = fleet_->NodeDir(1) + "/bin/bao-kms-provider";
  std::string script = ReadFile(installed);
  ASSERT_EQ(script.rfind("#!/bin/sh\n", 0), 0u) << script;
  script.insert(10, "[ \"$1\" = version ] && { echo 'version: broken' >&2; exit 1; }\n");
  WriteExecutable(installed, script);
  SubprocessResult dry = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(dry.exit_code, 1) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text,
              ::testing::ContainsRegex("rollback readiness +\\[ROLLBACK_ARTIFACT_MISSING\\][^\n]*cp-2"));
  EXPECT_TRUE(fleet_->DownIntervals().empty()) << fleet_->DescribeDowntime();
}

// A sealed OpenBao refuses the start (found by the requirements audit:
// it held a started plan at its first gate, after every node had run
// doctor, which a real provider fails against a sealed OpenBao); sealed
// mid-plan, it holds the next node until unsealed.
TEST_F(FleetUpgradeTest, SealedOpenBaoRefusesTheStartAndHoldsAStartedPlanUntilUnsealed) {
  fleet_->SetOpenBao("sealed");
  // Files on this machine: the dry run asked before the upload refuses;
  // release paths on the nodes: the start itself does.
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--remote-paths"}}) {
    SubprocessResult refused = Run(0, Upgrade(extra));
    EXPECT_EQ(refused.exit_code, 1) << refused.stdout_text << refused.stderr_text;
    EXPECT_THAT(refused.stdout_text + refused.stderr_text, HasSubstr("OPENBAO_SEALED"));
  }
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));

  fleet_->SetOpenBao("active");
  SubprocessResult r = Run(0, Upgrade({"--soak", "3s", "--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return fleet_->ServingVersion(0) == "0.2.0"; },
                        std::chrono::seconds(60)));
  fleet_->SetOpenBao("sealed");  // before cp-1's window and the soak end
  ASSERT_TRUE(WaitUntil([&] { return Run(0, {"plan"}).stdout_text.find("OPENBAO_SEALED") !=
                                     std::string::npos; },
                        std::chrono::seconds(30)))
      << Run(0, {"plan"}).stdout_text;
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 0, 0}))
      << "a node was swapped while OpenBao was sealed: " << fleet_->DescribeDowntime();
  fleet_->SetOpenBao("active");
  SubprocessResult watch = Run(0, {"watch"});
  EXPECT_EQ(watch.exit_code, 0) << watch.stdout_text << watch.stderr_text;
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, CoordinatorKilledDuringASwapIsReplacedAndThePlanFinishes) {
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run(coordinator, Upgrade());
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  // Kill the coordinator while the first node is in flight.
  ASSERT_TRUE(WaitUntil([&] { return PlanJson(coordinator).find("SWAPPING") != std::string::npos; },
                        std::chrono::seconds(60)))
      << PlanJson(coordinator) << fleet_->Logs();
  fleet_->KillAgent(coordinator);
  const int next = fleet_->WaitForCoordinator(std::chrono::seconds(30));
  ASSERT_GE(next, 0);
  ASSERT_NE(next, coordinator);
  // The survivors finish every node but the dead coordinator's, which
  // cannot be reached: the plan waits for it, and says so.
  ASSERT_TRUE(WaitUntil(
      [&] { return Run(next, {"plan"}).stdout_text.find("AGENT_UNREACHABLE") != std::string::npos; },
      std::chrono::seconds(90)))
      << Run(next, {"plan"}).stdout_text << fleet_->Logs();
  fleet_->StartAgent(coordinator);
  SubprocessResult watch = Run(next, {"watch"});
  EXPECT_EQ(watch.exit_code, 0) << watch.stdout_text << watch.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  // One disruption per node, each over: the swap in flight at the kill was
  // not done twice, and logs no longer read would not pass for no overlap.
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 1, 1})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->StillDown(), "");
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, PauseHoldsTheNextNodeAndResumeFinishes) {
  SubprocessResult r = Run(0, Upgrade({"--soak", "3s", "--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return fleet_->ServingVersion(0) == "0.2.0"; },
                        std::chrono::seconds(60)));
  SubprocessResult pause = Run(1, {"pause"});
  ASSERT_EQ(pause.exit_code, 0) << pause.stdout_text << pause.stderr_text;
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_PAUSED", std::chrono::seconds(30)));
  // Unpaused, cp-2 (next in the order) would go down once cp-1's 1 s
  // stabilisation window and the 3 s soak have passed: wait twice as long,
  // so that a slow machine cannot let a plan that ignored the pause pass.
  const std::vector<Interval> paused = fleet_->DownIntervals();
  std::this_thread::sleep_for(std::chrono::seconds(8));
  EXPECT_EQ(fleet_->DowntimeSince(paused), "") << "a paused plan disrupted a provider";
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 0, 0})) << fleet_->DescribeDowntime();
  EXPECT_EQ(Versions(), (std::vector<std::string>{"0.2.0", "0.1.0", "0.1.0"}))
      << "a paused plan started the next node";
  SubprocessResult resume = Run(2, {"resume", "--watch"});
  EXPECT_EQ(resume.exit_code, 0) << resume.stdout_text << resume.stderr_text;
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_THAT(PlanJson(), HasSubstr("pause"));
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 1, 1})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// Found in review: a swap installed whatever its node held staged when it
// started. cp-3's release is staged again by hand, with other signed bytes
// of 0.2.0, after the plan's preflight: its agent refuses the swap
// untouched and the plan halts; resume stages the plan's release there
// again and finishes.
TEST_F(FleetUpgradeTest, AReleaseStagedAgainByHandMidPlanIsRefusedThenStagedAgainOnResume) {
  TempDir rebuilt;
  const std::string name = std::filesystem::path(release_.binary).filename();
  std::filesystem::copy_file(release_.binary, rebuilt.File(name));
  {
    std::ofstream out(rebuilt.File(name), std::ios::app);
    out << "\n# rebuilt\n";
  }
  SignRelease(rebuilt.path(), name, fleet_->NodeDir(0) + "/../release.key");

  SubprocessResult r = Run(0, Upgrade({"--soak", "3s", "--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return fleet_->ServingVersion(0) == "0.2.0"; },
                        std::chrono::seconds(60)));
  absl::StatusOr<SubprocessResult> stage = RunSubprocess(
      {KMSFLEETCTL_PATH, "node", "--agent", "unix:" + fleet_->NodeDir(2) + "/agent.sock",
       "stage", "--version", "0.2.0", "--source", rebuilt.File(name), "--checksums",
       rebuilt.File("checksums.txt"), "--signature", rebuilt.File("checksums.txt.sig")},
      SubprocessOptions{});
  ASSERT_TRUE(stage.ok()) << stage.status();
  ASSERT_EQ(stage->exit_code, 0) << stage->stderr_text;

  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_HALTED", std::chrono::seconds(60))) << PlanJson();
  EXPECT_THAT(PlanJson(), HasSubstr("STAGED_ARTIFACT_CHANGED"));
  EXPECT_EQ(fleet_->ServingVersion(2), "0.1.0");
  EXPECT_EQ(fleet_->ServingVersion(1), "0.2.0");

  SubprocessResult resume = Run(1, {"resume", "--watch"});
  EXPECT_EQ(resume.exit_code, 0) << resume.stdout_text << resume.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(ReadFile(fleet_->NodeDir(2) + "/state/artifacts/0.2.0/bao-kms-provider"),
            ReadFile(release_.binary));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, AbortStopsBeforeTheNextNodeAndLeavesTheFleetServing) {
  SubprocessResult r = Run(0, Upgrade({"--soak", "3s", "--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(r.exit_code, 0) << r.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return fleet_->ServingVersion(0) == "0.2.0"; },
                        std::chrono::seconds(60)));
  SubprocessResult abort = Run(0, {"abort"});
  ASSERT_EQ(abort.exit_code, 0) << abort.stdout_text << abort.stderr_text;
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_ABORTED", std::chrono::seconds(30))) << PlanJson();
  // Not aborted, cp-2 (next in the order) would go down once cp-1's 1 s
  // stabilisation window and the 3 s soak have passed: wait twice as long,
  // so that a slow machine cannot let a plan that ignored the abort pass.
  const std::vector<Interval> aborted = fleet_->DownIntervals();
  std::this_thread::sleep_for(std::chrono::seconds(8));
  EXPECT_EQ(fleet_->DowntimeSince(aborted), "") << "an aborted plan disrupted a provider";
  // cp-1 went down for its swap only; cp-2 and cp-3 never did.
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 0, 0})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(fleet_->ProviderReady(i)) << i;
  EXPECT_EQ(Versions(), (std::vector<std::string>{"0.2.0", "0.1.0", "0.1.0"}));
}

// A watch whose agent shuts down (systemctl stop) ends AGENT_UNREACHABLE,
// never as if the plan had failed, and says that the plan goes on.
TEST_F(FleetUpgradeTest, AWatchWhoseAgentShutsDownSaysSoAndThatThePlanGoesOn) {
  const int coordinator = fleet_->WaitForCoordinator();
  const int follower = (coordinator + 1) % 3;
  ASSERT_EQ(Run(coordinator, Upgrade({"--soak", "60s"})).exit_code, 0);
  std::unique_ptr<ChildProcess> watch = fleet_->StartCtl(follower, {"watch"}, "watch");
  ASSERT_TRUE(WaitUntil([&] { return watch->Output().find("nodes") != std::string::npos; },
                        std::chrono::seconds(30)))
      << watch->Output() << ReadFile(fleet_->File("watch.err"));
  fleet_->agent(follower)->Signal(SIGTERM);
  std::optional<int> code = watch->Wait(std::chrono::seconds(30));
  const std::string err = ReadFile(fleet_->File("watch.err"));
  ASSERT_TRUE(code.has_value()) << err;
  EXPECT_EQ(*code, 3) << err;
  EXPECT_THAT(err, HasSubstr("AGENT_UNREACHABLE"));
  EXPECT_THAT(err, HasSubstr("the plan goes on without this watch"));
  const std::string plan = PlanJson(coordinator);
  EXPECT_THAT(plan, HasSubstr("plan_id"));
  for (const char* end : {"HALTED", "ABORTED", "BREAK_GLASS", "COMPLETED"}) {
    EXPECT_THAT(plan, Not(HasSubstr(end))) << plan;
  }
}

// Found in review: an open watch held a stopping agent for the whole
// 5 s shutdown grace of each listener it had (the stream ended only when
// gRPC cancelled it), and on the coordinator, stopped before its listener,
// the watch's loop wrote views back to back meanwhile.
TEST_F(FleetUpgradeTest, AnOpenWatchDoesNotHoldAStoppingCoordinator) {
  const int coordinator = fleet_->WaitForCoordinator();
  ASSERT_EQ(Run(coordinator, Upgrade({"--soak", "60s"})).exit_code, 0);
  std::unique_ptr<ChildProcess> watch = fleet_->StartCtl(coordinator, {"watch"}, "watch");
  ASSERT_TRUE(WaitUntil([&] { return watch->Output().find("nodes") != std::string::npos; },
                        std::chrono::seconds(30)))
      << watch->Output() << ReadFile(fleet_->File("watch.err"));
  const Stopped stopped = StopAgent(coordinator);
  ASSERT_TRUE(stopped.exit_code.has_value()) << fleet_->Logs();
  EXPECT_EQ(*stopped.exit_code, 0);
  EXPECT_LT(stopped.took, std::chrono::seconds(4))
      << stopped.took.count() << " ms: the shutdown grace went to the watch\n" << fleet_->Logs();
  std::optional<int> code = watch->Wait(std::chrono::seconds(30));
  const std::string err = ReadFile(fleet_->File("watch.err"));
  ASSERT_TRUE(code.has_value()) << err;
  EXPECT_EQ(*code, 3) << err;
  EXPECT_THAT(err, HasSubstr("the plan goes on without this watch"));
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Found in review: a coordinator stopped while its Preflight call ran
// (doctor on a node whose OpenBao answers slowly) waited for that call,
// up to 30 s, before it handed leadership over: with the drain that passes
// systemd's TimeoutStopSec, and the group then waits out an election.
TEST_F(FleetUpgradeTest, ASigtermedCoordinatorDoesNotWaitOutAPreflightInFlight) {
  const int coordinator = fleet_->WaitForCoordinator();
  const int slow = (coordinator + 1) % 3;
  fleet_->SetScenario(slow, "key_seed: fleet-key-1\ndoctor_delay_ms: 15000\n");
  ASSERT_EQ(Run(coordinator, Upgrade()).exit_code, 0);
  // Preflights go out together: once the two others are done, the slow
  // node's doctor runs, and the coordinator's call waits for it.
  ASSERT_TRUE(WaitUntil(
      [&] { return Count(PlanJson(coordinator), "PLAN_NODE_PHASE_PREFLIGHTED") == 2; },
      std::chrono::seconds(30)))
      << PlanJson(coordinator) << fleet_->Logs();
  ASSERT_TRUE(WaitUntil([&] { return fleet_->DoctorRunning(slow); }, std::chrono::seconds(10)));
  fleet_->SetScenario(slow, "key_seed: fleet-key-1\n");  // the next doctor is quick
  const Stopped stopped = StopAgent(coordinator);
  ASSERT_TRUE(stopped.exit_code.has_value()) << fleet_->Logs();
  EXPECT_EQ(*stopped.exit_code, 0);
  EXPECT_LT(stopped.took, std::chrono::seconds(8))
      << stopped.took.count() << " ms\n" << fleet_->Logs();
  EXPECT_TRUE(fleet_->DoctorRunning(slow)) << "the slow doctor ended first: nothing was cut short";
  EXPECT_THAT(ReadFile(fleet_->NodeDir(coordinator) + "/agent.log"),
              HasSubstr("leadership handed over before stopping"));
  // The next coordinator asks the slow node again; the stopped agent
  // blocks the plan (never skipped) until it is back, then the plan ends.
  const int next = (coordinator + 2) % 3;
  ASSERT_TRUE(WaitUntil(
      [&] { return Count(PlanJson(next), "PLAN_NODE_PHASE_PREFLIGHTED") == 3; },
      std::chrono::seconds(30)))
      << PlanJson(next) << fleet_->Logs();
  fleet_->StartAgent(coordinator);
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_COMPLETED", std::chrono::seconds(90), next))
      << PlanJson(next) << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// The SIGTERM-then-swap attack, across processes. A stopping agent drains
// its local socket for up to 5 s (longer while a handler runs) and keeps
// its cluster listener meanwhile, for the hand-over: the coordinator's
// swap still reaches it. Without the stop gate the swap was admitted, and
// the agent took its provider down as it went away.
TEST_F(FleetUpgradeTest, AStoppingAgentTakesNoSwapWhileItDrains) {
  const int coordinator = fleet_->WaitForCoordinator();
  const int x = (coordinator + 1) % 3;
  const int y = (coordinator + 2) % 3;
  // y first, then a soak, then x. The plan is paused in the soak.
  const std::string order =
      fleet_->Name(y) + "," + fleet_->Name(x) + "," + fleet_->Name(coordinator);
  ASSERT_EQ(Run(coordinator, Upgrade({"--order", order, "--soak", "3s"})).exit_code, 0);
  ASSERT_TRUE(WaitUntil(
      [&] { return Count(PlanJson(coordinator), "PLAN_NODE_PHASE_DONE") == 1; },
      std::chrono::seconds(60)))
      << PlanJson(coordinator) << fleet_->Logs();
  SubprocessResult pause = Run(coordinator, {"pause"});
  ASSERT_EQ(pause.exit_code, 0) << pause.stdout_text << pause.stderr_text;
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_PAUSED", std::chrono::seconds(30), coordinator))
      << PlanJson(coordinator);
  ASSERT_EQ(fleet_->ServingVersion(x), "0.1.0");
  // A local call that holds x's drain open: doctor for 10 s.
  fleet_->SetScenario(x, "key_seed: fleet-key-1\ndoctor_delay_ms: 10000\n");
  ChildProcess local({KMSFLEETCTL_PATH, "node", "--agent",
                      "unix:" + fleet_->NodeDir(x) + "/agent.sock", "preflight", "--version",
                      "0.2.0"},
                     ChildOptions{.out_path = fleet_->File("local.out"),
                                  .err_path = fleet_->File("local.err")});
  ASSERT_TRUE(WaitUntil([&] { return fleet_->DoctorRunning(x); }, std::chrono::seconds(10)));
  fleet_->agent(x)->Signal(SIGTERM);
  SubprocessResult resume = Run(coordinator, {"resume"});
  ASSERT_EQ(resume.exit_code, 0) << resume.stdout_text << resume.stderr_text;
  // The soak ends while x drains: the coordinator sends x its swap (and
  // again each tick).
  EXPECT_TRUE(WaitUntil(
      [&] {
        return fleet_->AgentMetrics(x).find("kmsfleet_guard_refusals_total{reason=\"AGENT_STOPPING\"}") !=
               std::string::npos;
      },
      std::chrono::seconds(10)))
      << fleet_->Logs() << "local: " << local.Wait(std::chrono::seconds(20)).value_or(-1)
      << ReadFile(fleet_->File("local.out")) << ReadFile(fleet_->File("local.err"));
  // Each refusal comes back at once; the coordinator sends the swap again a
  // plan tick (200 ms) after the last one began, not back to back (found in
  // review: a fast "not now" was re-sent within a millisecond).
  auto refusals = [&] {
    const std::string key = "kmsfleet_guard_refusals_total{reason=\"AGENT_STOPPING\"} ";
    const std::string metrics = fleet_->AgentMetrics(x);
    const size_t at = metrics.find(key);
    return at == std::string::npos ? -1.0 : std::stod(metrics.substr(at + key.size()));
  };
  const double before = refusals();
  ASSERT_GE(before, 0) << "x counted no AGENT_STOPPING refusal";
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const double after = refusals();
  if (after >= 0) {
    EXPECT_LE(after - before, 1500 / 200 + 3) << before << " then " << after;
  }
  std::optional<int> code = fleet_->agent(x)->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.has_value()) << fleet_->Logs();
  EXPECT_EQ(fleet_->ServingVersion(x), "0.1.0");
  EXPECT_TRUE(fleet_->ProviderReady(x));
  EXPECT_THAT(PlanJson(coordinator), Not(HasSubstr("PLAN_NODE_PHASE_FAILED")));
  fleet_->SetScenario(x, "key_seed: fleet-key-1\n");
  fleet_->StartAgent(x);
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_COMPLETED", std::chrono::seconds(90), coordinator))
      << PlanJson(coordinator) << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// kmsfleetd restarted on the node in flight, its swap still in its own
// doctor: the swap ends there, the provider untouched, and the plan sends
// it again under a new id once the agent is back, rather than halting.
// x goes second: its swap runs a doctor of its own, since the plan's
// preflight is seconds old by then and the early preflight the
// coordinator sends it beside y's parity rounds is still in its slow
// doctor when the swap is admitted (a first node would take the plan's
// preflight, just ended, and run none). Two doctors then run on x: the
// early preflight's and the swap's.
TEST_F(FleetUpgradeTest, AnAgentRestartedBeforeItsProviderStopsGetsTheSwapAgain) {
  const int coordinator = fleet_->WaitForCoordinator();
  const int x = (coordinator + 1) % 3;
  const int y = (coordinator + 2) % 3;
  const std::string order =
      fleet_->Name(y) + "," + fleet_->Name(x) + "," + fleet_->Name(coordinator);
  fleet_->SetScenario(x, "key_seed: fleet-key-1\ndoctor_delay_ms: 3000\n");
  ASSERT_EQ(Run(coordinator, Upgrade({"--order", order, "--auto-rollback"})).exit_code, 0);
  const std::string in_flight = "\"in_flight\": \"" + fleet_->Name(x) + "\"";
  ASSERT_TRUE(WaitUntil(
      [&] {
        return PlanJson(coordinator).find(in_flight) != std::string::npos &&
               fleet_->AgentLog(x).find("swap command admitted") != std::string::npos &&
               fleet_->DoctorsRunning(x) == 2;
      },
      std::chrono::seconds(60)))
      << PlanJson(coordinator) << fleet_->Logs();
  const std::string first_id = NodeField(fleet_->Name(x), "operation_id", coordinator);
  ASSERT_NE(first_id, "") << PlanJson(coordinator);
  Stopped stopped = StopAgent(x);
  ASSERT_TRUE(stopped.exit_code.has_value()) << fleet_->Logs();
  EXPECT_EQ(*stopped.exit_code, 0) << "no operation may be left open";
  EXPECT_EQ(fleet_->ServingVersion(x), "0.1.0");
  EXPECT_TRUE(fleet_->ProviderReady(x));
  fleet_->SetScenario(x, "key_seed: fleet-key-1\n");
  fleet_->StartAgent(x);
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_COMPLETED", std::chrono::seconds(90), coordinator))
      << PlanJson(coordinator) << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  const std::string plan = PlanJson(coordinator);
  EXPECT_THAT(plan, HasSubstr("\"agent_stop_retries\": 1")) << plan;
  EXPECT_THAT(plan, HasSubstr("AGENT_STOPPING")) << plan;
  EXPECT_THAT(plan, Not(HasSubstr("\"operation_id\": \"" + first_id + "\""))) << plan;
  int x_down = 0;
  for (const Interval& i : fleet_->DownIntervals()) x_down += i.node == fleet_->Name(x);
  EXPECT_EQ(x_down, 1) << "x's provider went down once, for the swap sent again";
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, CommandsWithoutAPlanAreRefusedWithAReason) {
  SubprocessResult r = Run(0, {"abort"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.stderr_text, HasSubstr("NO_PLAN"));
}

TEST_F(FleetUpgradeTest, RollbackAfterCompletionReturnsEveryNodeToTheVersionBefore) {
  ASSERT_EQ(Run(0, Upgrade({"--watch"})).exit_code, 0) << fleet_->Logs();
  const std::vector<Interval> upgraded = fleet_->DownIntervals();
  SubprocessResult dry = Run(0, {"rollback", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.stdout_text << dry.stderr_text;
  // The walk-back's order and every gate its first node waits on.
  for (const char* gate :
       {"rollback", "members", "soak", "fleet health", "parity", "openbao", "rotation"}) {
    EXPECT_THAT(dry.stdout_text, ::testing::ContainsRegex(std::string(gate) + " +pass"))
        << dry.stdout_text;
  }
  EXPECT_THAT(dry.stdout_text, HasSubstr("a real run would start now"));
  EXPECT_EQ(fleet_->DowntimeSince(upgraded), "") << "the dry run changed nothing";
  SubprocessResult r = Run(1, {"rollback", "--watch"});
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  // Walked back in the order the dry run named.
  int64_t upgrade_ended = 0;
  for (const Interval& i : upgraded) upgrade_ended = std::max(upgrade_ended, i.to_ms);
  std::vector<Interval> back;
  for (const Interval& i : fleet_->DownIntervals()) {
    if (i.from_ms > upgrade_ended) back.push_back(i);
  }
  ASSERT_EQ(back.size(), 3u) << fleet_->DescribeDowntime();
  std::sort(back.begin(), back.end(),
            [](const Interval& a, const Interval& b) { return a.from_ms < b.from_ms; });
  std::string order = "walk-back order:";
  for (const Interval& i : back) order += " " + i.node;
  EXPECT_THAT(dry.stdout_text, HasSubstr(order)) << dry.stdout_text;
}

}  // namespace
}  // namespace kmsfleet::testing
