// A mixed fleet (issue 10): cp-1 and cp-2 run the provider under systemd,
// cp-3 as a static pod behind fake-kubelet and fake-cri. One plan upgrades
// and rolls back all three, one at a time, with the same guards.
#include <thread>

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

// The dry run asks every node's installed release. cp-3 runs an image
// installed before kmsfleet, with no kit of it staged to run rotation-plan
// with: rotation is not evaluated there, naming cp-3 (never a pass), while
// its kept image counts for rollback readiness. Nothing is staged.
TEST_F(MixedFleetTest, ADryRunNamesTheStaticPodNodeWhoseReleaseItCannotAsk) {
  SubprocessResult dry = Run(0, StaticPodUpgrade({"--dry-run"}));
  EXPECT_EQ(dry.exit_code, 0) << dry.stdout_text << dry.stderr_text;
  EXPECT_THAT(dry.stdout_text,
              ::testing::ContainsRegex("rotation +\\[NOT_EVALUATED\\] Not evaluated on cp-3 "
                                       "\\(no kit of the running version \\(0\\.1\\.0\\) is staged to run"));
  EXPECT_THAT(dry.stdout_text, ::testing::ContainsRegex("rollback readiness +pass"));
  EXPECT_FALSE(PathExists(fleet_->NodeDir(2) + "/state/artifacts/0.2.0"));
  EXPECT_TRUE(fleet_->DownIntervals().empty());
}

// The static-pod node is a cluster member: a swap needs the committed
// plan's fence naming it, whoever asks. Staged and ready to go, it still
// refuses an unfenced swap and one under a forged fence, and its manifest
// and container stay as they are.
TEST_F(MixedFleetTest, AStaticPodMemberRefusesSwapsOutsideThePlan) {
  const std::string before = Manifest();
  auto node = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {KMSFLEETCTL_PATH, "node", "--agent",
                                     "unix:" + fleet_->NodeDir(2) + "/agent.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<SubprocessResult> r = RunSubprocess(argv, SubprocessOptions{});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : SubprocessResult{};
  };
  SubprocessResult staged =
      node({"stage", "--version", "0.2.0", "--source", release_.binary, "--checksums",
            release_.checksums, "--signature", release_.signature, "--image", release_.image,
            "--image-ref", release_.image_ref});
  ASSERT_EQ(staged.exit_code, 0) << staged.stderr_text;
  SubprocessResult unfenced = node({"swap", "--version", "0.2.0", "--operation-id", "x-1"});
  EXPECT_NE(unfenced.exit_code, 0);
  EXPECT_THAT(unfenced.stderr_text, HasSubstr("FENCE_REQUIRED"));
  SubprocessResult forged =
      node({"swap", "--version", "0.2.0", "--fence", "9/99/cp-3", "--operation-id", "x-2"});
  EXPECT_NE(forged.exit_code, 0);
  EXPECT_THAT(forged.stderr_text, ::testing::AnyOf(HasSubstr("UNKNOWN_FENCE"),
                                                   HasSubstr("STALE_FENCE"),
                                                   HasSubstr("NOT_IN_FLIGHT")));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(Manifest(), before);
  EXPECT_EQ(fleet_->ServingVersion(2), "0.1.0");
  EXPECT_TRUE(fleet_->DownIntervals().empty());
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
