// End to end (issue 9, "API server restart"): a release the policy marks
// apiServerRestartRequired ends each node's step with its agent running
// the node's configured kube-apiserver restart and waiting for /readyz.
#include "fleet_fixture.h"

namespace kmsfleet::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kRestartPolicy[] =
    "apiVersion: kmsfleet.io/v1\nkind: CompatibilityPolicy\nreleases:\n"
    "  - version: 0.2.0\n    apiServerRestartRequired: true\n";

class FleetApiServerTest : public FleetUpgradeTest {
 protected:
  std::unique_ptr<FleetCluster> MakeFleet() override {
    return std::make_unique<FleetCluster>("0.1.0", /*apiserver_restart=*/true);
  }

  std::vector<std::string> UpgradeNeedingRestart() {
    const std::string policy = fleet_->NodeDir(0) + "/../restart-policy.yaml";
    WriteFile(policy, kRestartPolicy);
    return Upgrade({"--policy", policy, "--order", "cp-1,cp-2,cp-3", "--watch"});
  }
};

TEST_F(FleetApiServerTest, EachNodeRestartsItsApiServerOnceAfterItsOwnSwapInNodeOrder) {
  SubprocessResult r = Run(0, UpgradeNeedingRestart());
  ASSERT_EQ(r.exit_code, 0) << r.stdout_text << r.stderr_text << fleet_->Logs();
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  // Each line: the node restarted, then the release each node had
  // installed at that moment.
  EXPECT_THAT(fleet_->ApiServerRestarts(),
              ElementsAre("cp-1 0.2.0 0.1.0 0.1.0", "cp-2 0.2.0 0.2.0 0.1.0",
                          "cp-3 0.2.0 0.2.0 0.2.0"))
      << fleet_->Logs();
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  // The method the plan recorded: the coordinator agent's own.
  EXPECT_THAT(PlanJson(), HasSubstr("/restart-apiserver\""));
}

TEST_F(FleetApiServerTest, AFailedRestartOnNodeTwoHaltsThePlanBeforeNodeThree) {
  fleet_->Toggle(1, "apiserver-fails", true);
  SubprocessResult r = Run(0, UpgradeNeedingRestart());
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text << fleet_->Logs();
  const std::string plan = PlanJson();
  EXPECT_THAT(plan, HasSubstr("PLAN_PHASE_HALTED"));
  EXPECT_THAT(plan, HasSubstr("APISERVER_RESTART_FAILED"));
  EXPECT_THAT(plan, HasSubstr("kube-apiserver static pod did not come back"));
  EXPECT_THAT(fleet_->ApiServerRestarts(),
              ElementsAre("cp-1 0.2.0 0.1.0 0.1.0", "cp-2 0.2.0 0.2.0 0.1.0"));
  EXPECT_EQ(fleet_->ServingVersion(2), "0.1.0") << "cp-3 was touched after cp-2 failed";
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// The default fleet: no agent has an apiserver: section.
TEST_F(FleetUpgradeTest, WithoutARestartMethodAReleaseNeedingOneRefusesToStart) {
  const std::string policy = fleet_->NodeDir(0) + "/../restart-policy.yaml";
  WriteFile(policy, kRestartPolicy);
  SubprocessResult r = Run(0, Upgrade({"--policy", policy}));
  EXPECT_EQ(r.exit_code, 1) << r.stdout_text << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("APISERVER_RESTART_UNCONFIGURED"));
  EXPECT_THAT(r.stderr_text, HasSubstr("apiserver.restart"));
  EXPECT_THAT(Run(0, {"plan"}).stdout_text, HasSubstr("no plan has been committed"));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

}  // namespace
}  // namespace kmsfleet::testing
