// End to end (issue 9): the guards that say no, break-glass, a stopped
// coordinator and the walk back, through kmsfleetctl against three agents.
#include <signal.h>

#include "fleet_fixture.h"
#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kOneWayPolicy[] =
    "apiVersion: kmsfleet.io/v1\nkind: CompatibilityPolicy\nreleases:\n"
    "  - version: 0.2.0\n    oneWay: true\n";
constexpr char kWireFormatPolicy[] =
    "apiVersion: kmsfleet.io/v1\nkind: CompatibilityPolicy\nreleases:\n"
    "  - version: 0.2.0\n    wireFormatChange: true\n    migrationPlanned: true\n";

TEST_F(FleetUpgradeTest, BreakingChangelogSectionNeedsAnAcknowledgement) {
  const std::string changelog = fleet_->NodeDir(0) + "/../CHANGELOG.md";
  WriteFile(changelog,
            "# Changelog\n\n## [0.2.0](https://example.test/0.2.0) (2026-11-01)\n\n### ⚠ BREAKING CHANGES\n\n"
            "* registry: new record layout\n\n## [0.1.0](https://example.test/0.1.0) (2026-10-01)\n\n* first release\n");
  SubprocessResult refused = Run(0, Upgrade({"--changelog", changelog}));
  EXPECT_EQ(refused.exit_code, 1) << refused.stdout_text << refused.stderr_text;
  EXPECT_THAT(refused.stderr_text, HasSubstr("ACKNOWLEDGEMENT_REQUIRED"));
  EXPECT_THAT(refused.stderr_text, HasSubstr("CHANGELOG_BREAKING"));
  // Refused by the dry run asked before the upload, not after it.
  EXPECT_THAT(refused.stderr_text, HasSubstr("no release file was sent"));
  EXPECT_THAT(refused.stderr_text, Not(HasSubstr("uploaded ")));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  SubprocessResult dry = Run(0, Upgrade({"--changelog", changelog, "--acknowledge",
                                         "CHANGELOG_BREAKING", "--dry-run"}));
  EXPECT_EQ(dry.exit_code, 0) << dry.stdout_text << dry.stderr_text;
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

TEST_F(FleetUpgradeTest, OneWayReleaseRefusesTheRollback) {
  const std::string policy = fleet_->NodeDir(0) + "/../policy.yaml";
  WriteFile(policy, kOneWayPolicy);
  SubprocessResult up = Run(0, Upgrade({"--policy", policy, "--acknowledge",
                                        "ONE_WAY_UPGRADE", "--watch"}));
  ASSERT_EQ(up.exit_code, 0) << up.stdout_text << up.stderr_text << fleet_->Logs();
  EXPECT_THAT(PlanJson(), HasSubstr("ONE_WAY_UPGRADE"));  // audited
  SubprocessResult dry = Run(1, {"rollback", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 1) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text, HasSubstr("[ROLLBACK_REFUSED_ONE_WAY]"));
  EXPECT_THAT(dry.stdout_text, HasSubstr("a real run would be refused now"));
  EXPECT_THAT(dry.stdout_text, Not(HasSubstr("walk-back order")));
  SubprocessResult r = Run(1, {"rollback"});
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("ROLLBACK_REFUSED_ONE_WAY"));
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
}

TEST_F(FleetUpgradeTest, NewReleaseServingAnotherKeyIsRestoredBeforeParityBreaks) {
  fleet_->Toggle(0, "wrong-key", true);
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_HALTED"));
  // The halt names the swap's own failure: its verification saw the other
  // key (the operation's reason, docs/runbooks/upgrade.md), on cp-1.
  EXPECT_EQ(HaltField("reason"), "KEY_ID_HASH_MISMATCH") << PlanJson();
  EXPECT_EQ(HaltField("node"), "cp-1") << PlanJson();
  // cp-1 was swapped and restored: down from the swap's stop until the
  // new release answered /ready 200 (ready, with the other key: readiness
  // does not know the fleet's key), then from the restore's stop until the
  // old one did. Nothing else went down.
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{2, 0, 0})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->StillDown(), "");
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  SubprocessResult status = Run(0, {"status"});
  EXPECT_EQ(status.exit_code, 0) << status.stdout_text;  // parity holds again
}

// Parity broken after a swap, by a node the plan has not touched: cp-3
// starts serving another key while cp-1's new release is in its window.
// cp-1's swap still ends Stable (its own key is the one it had), but no
// node is given the next slot while the fleet disagrees, for as long as
// it does; once cp-3 agrees again the plan goes on and completes.
TEST_F(FleetUpgradeTest, ParityBrokenAfterASwapHoldsTheNextNodeUntilItHoldsAgain) {
  SubprocessResult up = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(up.exit_code, 0) << up.stdout_text << up.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return PlanField("in_flight") == "cp-1"; },
                        std::chrono::seconds(30)))
      << PlanJson() << fleet_->Logs();
  fleet_->SetScenario(2, "key_seed: another-lineage\n");
  // cp-1 done, and the next slot held for parity: no node in flight (the
  // swap's own check that the others agree is a second line, not this).
  auto blocked_on_parity = [&] {
    const std::string json = PlanJson();
    size_t done = 0;
    for (size_t at = json.find("PLAN_NODE_PHASE_DONE"); at != std::string::npos;
         at = json.find("PLAN_NODE_PHASE_DONE", at + 1)) {
      ++done;
    }
    return done == 1 && json.find("\"in_flight\": \"cp") == std::string::npos &&
           json.find("\"blocked_reason\": \"FLEET_PARITY_MISMATCH\"") != std::string::npos;
  };
  ASSERT_TRUE(WaitUntil(blocked_on_parity, std::chrono::seconds(30)))
      << PlanJson() << fleet_->Logs();
  EXPECT_THAT(Run(0, {"plan"}).stdout_text,
              ::testing::ContainsRegex("waiting: \\[FLEET_PARITY_MISMATCH\\][^\n]*cp-3"));
  // Held, not merely slow: a few plan ticks later nothing else moved.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_TRUE(blocked_on_parity()) << PlanJson();
  EXPECT_EQ(Versions(), (std::vector<std::string>{"0.2.0", "0.1.0", "0.1.0"}));
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 0, 0})) << fleet_->DescribeDowntime();

  fleet_->SetScenario(2, "key_seed: fleet-key-1\n");
  ASSERT_TRUE(WaitForPhase("PLAN_PHASE_COMPLETED", std::chrono::seconds(60)))
      << PlanJson() << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 1, 1})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// Found in review: a node whose new release failed its window after it
// had been ready restored the older release on its own, across the
// wire-format change the plan refuses to roll back (reference §8.1). It
// now keeps the new release and the plan stops in break-glass.
TEST_F(FleetUpgradeTest, AServedReleaseAcrossAWireFormatChangeIsKeptAndBreaksGlass) {
  const std::string policy = fleet_->NodeDir(0) + "/../wire-policy.yaml";
  WriteFile(policy, kWireFormatPolicy);
  fleet_->Toggle(0, "wrong-key", true);
  SubprocessResult r = Run(0, Upgrade({"--policy", policy, "--acknowledge", "WIRE_FORMAT_CHANGE",
                                       "--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("BREAK-GLASS on cp-1"));
  const std::string plan = PlanJson();
  EXPECT_THAT(plan, HasSubstr("PLAN_PHASE_BREAK_GLASS"));
  EXPECT_THAT(plan, HasSubstr("refusing to reinstall 0.1.0: 0.2.0 has been ready here, and the "
                              "plan calls the upgrade a wire-format change"));
  EXPECT_THAT(plan, HasSubstr("fix forward"));
  EXPECT_THAT(plan, HasSubstr("Do not reinstall 0.1.0"));  // the break-glass steps
  EXPECT_EQ(BreakGlassField("reason"), "ROLLBACK_REFUSED_WIRE_FORMAT") << plan;
  // cp-1 went down once, for the swap, and still runs the new release.
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 0, 0})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  EXPECT_EQ(fleet_->ServingVersion(0), "0.2.0");
  EXPECT_EQ(fleet_->ServingVersion(1), "0.1.0");
  EXPECT_EQ(fleet_->ServingVersion(2), "0.1.0");
}

TEST_F(FleetUpgradeTest, RollbackFailedEntersBreakGlassAndOnlyItsNonceLeavesIt) {
  fleet_->Toggle(1, "never-ready", true);
  fleet_->Toggle(1, "old-broken", true);
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--watch"}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stdout_text, HasSubstr("BREAK-GLASS on cp-2"));
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_BREAK_GLASS"));
  const std::string nonce = PlanField("nonce");
  ASSERT_FALSE(nonce.empty()) << PlanJson();
  // Automation stays stopped: cp-3 is never touched.
  SubprocessResult resume = Run(0, {"resume"});
  EXPECT_EQ(resume.exit_code, 1);
  EXPECT_THAT(resume.stderr_text, HasSubstr("BREAK_GLASS_ACTIVE"));
  SubprocessResult wrong = Run(0, {"ack-break-glass", "0000"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.stderr_text, HasSubstr("BREAK_GLASS_NONCE_MISMATCH"));
  // Found in review: a raw plan record (the election's own tool) replaced
  // the plan at once, its break-glass and nonce with it.
  SubprocessResult raw = Run(0, {"plan", "commit", "--in-flight", "cp-2"});
  EXPECT_NE(raw.exit_code, 0) << raw.stdout_text;
  EXPECT_THAT(raw.stderr_text, HasSubstr("PLAN_ACTIVE"));
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_BREAK_GLASS"));
  EXPECT_EQ(PlanField("nonce"), nonce);
  SubprocessResult ack = Run(2, {"ack-break-glass", nonce});
  EXPECT_EQ(ack.exit_code, 0) << ack.stdout_text << ack.stderr_text;
  // Who acknowledged is in the coordinator's journal too, whatever the
  // plan's audit (its last 64 entries) keeps later.
  EXPECT_THAT(fleet_->Logs(), ::testing::ContainsRegex(
                                  "msg=\"operator command accepted\".*"
                                  "command=PLAN_COMMAND_ACK_BREAK_GLASS caller=[^ ]"));
  // cp-2 still cannot hand off (its last operation ended RollbackFailed):
  // a new break-glass event, with a new nonce.
  ASSERT_TRUE(WaitUntil([&] {
    std::string now = PlanField("nonce");
    return !now.empty() && now != nonce;
  }, std::chrono::seconds(30))) << PlanJson();
  EXPECT_EQ(fleet_->ServingVersion(2), "0.1.0");
  EXPECT_TRUE(fleet_->ProviderReady(2));
}

TEST_F(FleetUpgradeTest, CoordinatorStoppedAndResumedNeverPutsTwoProvidersDown) {
  const int coordinator = fleet_->WaitForCoordinator();
  SubprocessResult r = Run(coordinator, Upgrade());
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  ASSERT_TRUE(WaitUntil([&] { return PlanJson(coordinator).find("SWAPPING") != std::string::npos; },
                        std::chrono::seconds(60)));
  fleet_->agent(coordinator)->Signal(SIGSTOP);
  const int next = [&] {
    int found = -1;
    WaitUntil([&] {
      for (int i = 0; i < 3; ++i) {
        if (i == coordinator) continue;
        SubprocessResult leader = Run(i, {"leader", "--output", "json"});
        std::smatch m;
        if (std::regex_search(leader.stdout_text, m, std::regex("\"coordinator\":\"(cp-[0-9])\"")) &&
            m[1] != fleet_->Name(coordinator)) {
          found = fleet_->Index(m[1]);
          return true;
        }
      }
      return false;
    }, std::chrono::seconds(30));
    return found;
  }();
  ASSERT_GE(next, 0) << fleet_->Logs();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  fleet_->agent(coordinator)->Signal(SIGCONT);
  SubprocessResult watch = Run(next, {"watch"});
  EXPECT_EQ(watch.exit_code, 0) << watch.stdout_text << watch.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  // One disruption per node, each over: the resumed coordinator swapped
  // nothing again, and logs no longer read would not pass for no overlap.
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 1, 1})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->StillDown(), "");
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// Every agent reads its provider for up to 8 s (the fleets of the other
// tests: 1 s), so that a provider slow to answer is slow, not unreachable:
// the fake's one HTTP thread serves the readers of cp-3 (the coordinator's
// rounds, its agent's own checks, a scrape) one after the other, 1.3 s each.
class FleetSlowVoterTest : public FleetUpgradeTest {
 protected:
  std::unique_ptr<FleetCluster> MakeFleet() override {
    return std::make_unique<FleetCluster>("0.1.0", /*apiserver_restart=*/false,
                                          /*static_pod_node=*/-1, /*no_restart_node=*/-1,
                                          /*http_timeout_ms=*/8000);
  }
};

// A voter slow to answer makes every round of observations slow, and the
// other nodes' views in it as old as its asking: a provider could have
// gone down since. No swap starts on such a round (found in review: a
// Step that changed nothing started its swap on a round of any age); the
// plan says so, naming the slow node, and goes on once it answers quickly.
TEST_F(FleetSlowVoterTest, AVoterSlowToAnswerHoldsEverySwapAndIsNamed) {
  fleet_->SetScenario(2, "key_seed: fleet-key-1\nmetrics_delay_ms: 1300\n");
  SubprocessResult r = Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3"}));
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text;
  std::string plan;
  ASSERT_TRUE(WaitUntil([&] {
    plan = PlanJson();
    return plan.find("\"blocked_reason\": \"OBSERVATIONS_TOO_OLD\"") != std::string::npos;
  }, std::chrono::seconds(60))) << plan << fleet_->Logs();
  EXPECT_THAT(plan, HasSubstr("The slowest to answer was cp-3"));
  EXPECT_THAT(plan, HasSubstr("\"in_flight\": \"cp-1\""));  // its slot given, no swap run
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(fleet_->DownIntervals().empty()) << fleet_->DescribeDowntime();
  plan = PlanJson();
  EXPECT_THAT(plan, HasSubstr("\"blocked_reason\": \"OBSERVATIONS_TOO_OLD\"")) << plan;
  fleet_->SetScenario(2, "key_seed: fleet-key-1\n");
  SubprocessResult watch = Run(0, {"watch"});
  EXPECT_EQ(watch.exit_code, 0) << watch.stdout_text << watch.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->TimesDown(), (std::vector<int>{1, 1, 1})) << fleet_->DescribeDowntime();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, AutoRollbackWalksUpgradedNodesBackWhenOneFails) {
  fleet_->Toggle(2, "never-ready", true);
  SubprocessResult r =
      Run(0, Upgrade({"--order", "cp-1,cp-2,cp-3", "--auto-rollback", "--watch"}));
  EXPECT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_ROLLED_BACK"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

TEST_F(FleetUpgradeTest, MemberCertificateCannotStartAPlan) {
  SubprocessResult r = fleet_->CtlAs(0, "cp-2", Upgrade()).value();
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("OPERATOR_ONLY"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
}

// Found in review: an operator's raw plan record whose payload was a fleet
// plan, Rolling with a node in flight, was adopted and driven by the
// coordinator, none of the start guards having run.
TEST_F(FleetUpgradeTest, ARawRecordCannotCarryAFleetPlan) {
  v1::FleetPlan forged;
  // The id also carries an OSC 52 "set the clipboard" sequence, which the
  // refusal quotes: kmsfleetctl must show it, not send it to the terminal.
  forged.set_plan_id("plan-forged\x1b]52;c;aGk=\x07");
  forged.set_revision(7);
  forged.set_kind(v1::PLAN_KIND_UPGRADE);
  forged.set_phase(v1::PLAN_PHASE_ROLLING);
  forged.set_target_version("0.2.0");
  forged.set_in_flight("cp-1");
  for (const char* name : {"cp-1", "cp-2", "cp-3"}) {
    v1::PlanNode* node = forged.add_nodes();
    node->set_node(name);
    node->set_phase(v1::PLAN_NODE_PHASE_PREFLIGHTED);
  }
  const std::string payload = EncodePlan(forged).value();
  ASSERT_EQ(payload.find('\0'), std::string::npos) << "an argv cannot carry it";
  SubprocessResult raw = Run(0, {"plan", "commit", "--in-flight", "cp-1", "--payload", payload});
  EXPECT_EQ(raw.exit_code, 1) << raw.stdout_text << raw.stderr_text;
  EXPECT_THAT(raw.stderr_text, HasSubstr("RAW_FLEET_PLAN_REFUSED"));
  EXPECT_THAT(raw.stderr_text, HasSubstr("plan-forged\\x1b]52;c;aGk=\\x07"));
  EXPECT_EQ(raw.stderr_text.find('\x1b'), std::string::npos) << raw.stderr_text;
  // Nothing was committed, so no coordinator ever drives it.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  // Text that decodes as a FleetPlan of unknown fields only is no plan:
  // committed, it neither shows as one nor blocks an upgrade (before, every
  // upgrade was refused PLAN_ACTIVE, "Plan  is Unspecified").
  SubprocessResult text = Run(0, {"plan", "commit", "--in-flight", "", "--payload", "H1"});
  ASSERT_EQ(text.exit_code, 0) << text.stdout_text << text.stderr_text;
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  SubprocessResult dry = Run(0, Upgrade({"--dry-run"}));
  EXPECT_EQ(dry.exit_code, 0) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text + dry.stderr_text, Not(HasSubstr("PLAN_ACTIVE")));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

}  // namespace
}  // namespace kmsfleet::testing
