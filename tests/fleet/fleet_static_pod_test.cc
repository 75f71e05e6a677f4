// A mixed fleet (issue 10): cp-1 and cp-2 run the provider under systemd,
// cp-3 as a static pod behind fake-kubelet and fake-cri. One plan upgrades
// and rolls back all three, one at a time, with the same guards.
#include "fleet_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

class MixedFleetTest : public FleetUpgradeTest {
 protected:
  std::unique_ptr<FleetCluster> MakeFleet() override {
    return std::make_unique<FleetCluster>("0.1.0", /*apiserver_restart=*/false,
                                          /*static_pod_node=*/2);
  }
  std::vector<std::string> StaticPodUpgrade(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(),
                 {"--image", release_.image, "--image-ref", release_.image_ref});
    return Upgrade(extra);
  }
  std::string Manifest() {
    return ReadFile(fleet_->NodeDir(2) + "/manifests/bao-kms-provider.yaml");
  }
};

TEST_F(MixedFleetTest, OnePlanUpgradesAndRollsBackSystemdAndStaticPodNodes) {
  const std::string before = Manifest();
  SubprocessResult up = Run(0, StaticPodUpgrade({"--watch"}));
  ASSERT_EQ(up.exit_code, 0) << up.stdout_text << up.stderr_text << fleet_->Logs();
  EXPECT_THAT(up.stdout_text, HasSubstr("3/3 nodes  Completed"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.2.0")));
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
  EXPECT_EQ(fleet_->DownIntervals().size(), 3u) << fleet_->Logs();
  EXPECT_THAT(Manifest(), HasSubstr("image: " + ImageOf("0.2.0") + "  # pinned\n"));
  SubprocessResult status = Run(2, {"status"});
  EXPECT_THAT(status.stdout_text, HasSubstr("static pod"));
  EXPECT_THAT(Run(0, {"status"}).stdout_text, HasSubstr("systemd"));

  SubprocessResult back = Run(1, {"rollback", "--watch"});
  ASSERT_EQ(back.exit_code, 0) << back.stdout_text << back.stderr_text << fleet_->Logs();
  EXPECT_THAT(PlanJson(), HasSubstr("PLAN_PHASE_ROLLED_BACK"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_EQ(Manifest(), before);  // byte for byte
  EXPECT_EQ(fleet_->OverlappingDowntime(), "");
}

// Without the image, the static-pod node refuses to stage, and the plan
// halts before any node is touched.
TEST_F(MixedFleetTest, AnUpgradeWithoutTheImageHaltsBeforeAnySwap) {
  SubprocessResult up = Run(0, Upgrade({"--watch"}));
  EXPECT_EQ(up.exit_code, 1) << up.stdout_text << up.stderr_text;
  EXPECT_THAT(up.stdout_text + PlanJson(), HasSubstr("IMAGE_REF_MISSING"));
  EXPECT_THAT(up.stdout_text + PlanJson(), HasSubstr("cp-3"));
  EXPECT_THAT(Versions(), ::testing::Each(std::string("0.1.0")));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

}  // namespace
}  // namespace kmsfleet::testing
