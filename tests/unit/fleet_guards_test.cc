// Tests of the fleet guards (fleet_guards.h; architecture.md §5): each
// passes on a healthy fleet and refuses with a stable reason and a sentence
// naming the nodes and the observed values.
#include <string>
#include <vector>

#include "fleet_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using testing::HealthyFleet;
using testing::HealthyView;
using testing::kHashA;
using testing::kHashB;

const std::vector<std::string> kVoters = {"a", "b", "c"};

void ExpectRefused(const absl::Status& s, std::string_view reason,
                   std::string_view nodes) {
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(ReasonOf(s), reason) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), nodes) << s;
  EXPECT_FALSE(MetadataOf(s, "remedy").empty()) << s;
}

TEST(FleetHealthTest, HealthyFleetPasses) {
  EXPECT_TRUE(CheckFleetHealth(kVoters, HealthyFleet(kVoters, "0.1.0"), 5000).ok());
}

TEST(FleetHealthTest, UnreachableAgentBlocksAndSaysSinceWhen) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[1].unreachable_since_unix_ms = 2000;
  const absl::Status s = CheckFleetHealth(kVoters, views, 14000);
  ExpectRefused(s, reason::kAgentUnreachable, "b");
  EXPECT_THAT(s.message(), HasSubstr("b (since unix_ms 2000, 12 s ago)"));
}

TEST(FleetHealthTest, VoterWithoutAnyViewCountsAsNeverAnswered) {
  std::vector<NodeView> views = HealthyFleet({"a", "b"}, "0.1.0");
  const absl::Status s = CheckFleetHealth(kVoters, views, 5000);
  ExpectRefused(s, reason::kAgentUnreachable, "c");
  EXPECT_THAT(s.message(), HasSubstr("c (never answered)"));
}

TEST(FleetHealthTest, NotLiveAndNotReadyAreNamed) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[0].state->set_live(false);
  ExpectRefused(CheckFleetHealth(kVoters, views, 5000),
                reason::kProviderNotLive, "a");
  views[0].state->set_live(true);
  views[2].state->set_ready(false);
  views[2].state->add_ready_reasons("status_stale");
  const absl::Status s = CheckFleetHealth(kVoters, views, 5000);
  ExpectRefused(s, reason::kProviderNotReady, "c");
  EXPECT_THAT(s.message(), HasSubstr("status_stale"));
}

TEST(FleetParityGuardTest, OneHashEverywherePasses) {
  EXPECT_TRUE(CheckParityOnce(HealthyFleet(kVoters, "0.1.0")).ok());
}

TEST(FleetParityGuardTest, DifferentHashesNameEachNodeAndHash) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[2] = HealthyView("c", "0.1.0", kHashB);
  const absl::Status s = CheckParityOnce(views);
  ExpectRefused(s, reason::kFleetParityMismatch, "a,b,c");
  EXPECT_THAT(s.message(), HasSubstr(std::string("c=") + kHashB));
  EXPECT_THAT(s.message(), HasSubstr(std::string("a=") + kHashA));
}

TEST(FleetParityGuardTest, TwoSeriesOnOneNodeIsAmbiguous) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  v1::Condition* c = views[1].state->add_conditions();
  c->set_reason(reason::kKeyIdHashAmbiguous);
  c->set_message("2 series with value 1");
  ExpectRefused(CheckParityOnce(views), reason::kKeyIdHashAmbiguous, "b");
}

TEST(FleetParityGuardTest, MetricAndSocketDisagreeingIsAmbiguous) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[0].state->set_key_id_hash_socket(kHashB);
  const absl::Status s = CheckParityOnce(views);
  ExpectRefused(s, reason::kKeyIdHashAmbiguous, "a");
  EXPECT_THAT(s.message(), HasSubstr(kHashB));
}

TEST(FleetParityGuardTest, AHashMissingBecauseMetricsCannotBeReadSaysWhy) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[1].state->clear_key_id_hash_metric();
  v1::Condition* c = views[1].state->add_conditions();
  c->set_reason(reason::kInputTooLarge);
  c->set_message("/metrics body is over 4194304 bytes");
  const absl::Status s = CheckParityOnce(views);
  ExpectRefused(s, reason::kKeyIdHashMissing, "b");
  EXPECT_THAT(s.message(), HasSubstr("[INPUT_TOO_LARGE] /metrics body is over 4194304 bytes"));
}

TEST(FleetParityGuardTest, MissingHashIsNamed) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  views[1].state->clear_key_id_hash_metric();
  ExpectRefused(CheckParityOnce(views), reason::kKeyIdHashMissing, "b");
}

// The gauge says what the plan's guard says. Found in review: it compared
// metric hashes only, so it said 1 while the plan was refused
// KEY_ID_HASH_AMBIGUOUS.
TEST(FleetInParityTest, AgreesWithTheParityGuard) {
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0");
  EXPECT_TRUE(FleetInParity(views));
  views[0].state->set_key_id_hash_socket(kHashB);
  EXPECT_FALSE(FleetInParity(views)) << "metric and socket disagree on a";
  views = HealthyFleet(kVoters, "0.1.0");
  views[2].unreachable_since_unix_ms = 2500;  // its last state still says kHashA
  EXPECT_FALSE(FleetInParity(views));
  EXPECT_FALSE(FleetInParity({}));
}

TEST(ParityStreakTest, StableOnlyAfterNFreshRounds) {
  ParityStreak streak;
  for (int round = 1; round <= 3; ++round) {
    const absl::Status s = CheckParityStable(streak, 3);
    ExpectRefused(s, reason::kParityNotStable, "");
    EXPECT_THAT(s.message(),
                HasSubstr("held for " + std::to_string(round - 1) + " of 3"));
    streak.Observe(HealthyFleet(kVoters, "0.1.0", 1000 * round));
  }
  EXPECT_TRUE(CheckParityStable(streak, 3).ok());
}

TEST(ParityStreakTest, RereadingTheSameObservationDoesNotCount) {
  ParityStreak streak;
  for (int i = 0; i < 5; ++i) streak.Observe(HealthyFleet(kVoters, "0.1.0", 1000));
  EXPECT_EQ(streak.consecutive(), 1);
}

// chrony's makestep puts a node's clock back after a boot with a fast
// one: its fresh observations are older than the counted ones, and parity
// stalled (the coordinator meanwhile asking every node again at once)
// until its clock caught up.
TEST(ParityStreakTest, ANodeWhoseClockSteppedBackStillCounts) {
  ParityStreak streak;
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 1000));
  for (int64_t at : {2000, 3000}) {
    std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0", at);
    views[1].state->set_observed_at_unix_ms(at - 1500);
    streak.Observe(views);
  }
  EXPECT_EQ(streak.consecutive(), 3);
  EXPECT_TRUE(CheckParityStable(streak, 3).ok());
}

// After a node's operation the streak restarts with the round asked for
// after its result, even though that round was counted once already.
TEST(ParityStreakTest, RestartCountsTheRoundAskedForAfterTheEvent) {
  ParityStreak streak;
  for (int64_t at : {1000, 2000, 3000}) streak.Observe(HealthyFleet(kVoters, "0.1.0", at));
  ASSERT_EQ(streak.consecutive(), 3);
  streak.RestartWith(HealthyFleet(kVoters, "0.1.0", 3000));
  EXPECT_EQ(streak.consecutive(), 1);
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 3000));  // the same round again
  EXPECT_EQ(streak.consecutive(), 1);
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 4000));
  EXPECT_EQ(streak.consecutive(), 2);
}

// A node that did not answer the round keeps its older view, taken before
// the event: that round does not open the new streak, and neither does any
// later one until the node answers again.
TEST(ParityStreakTest, RestartDoesNotCountAViewKeptFromBeforeTheEvent) {
  ParityStreak streak;
  for (int64_t at : {1000, 2000}) streak.Observe(HealthyFleet(kVoters, "0.1.0", at));
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0", 3000);
  views[2] = HealthyView("c", "0.1.0", kHashA, 2000);
  views[2].unreachable_since_unix_ms = 2500;
  streak.Observe(views);
  streak.RestartWith(views);
  EXPECT_EQ(streak.consecutive(), 0);
  views[0].state->set_observed_at_unix_ms(4000);
  views[1].state->set_observed_at_unix_ms(4000);
  streak.Observe(views);  // c still silent
  EXPECT_EQ(streak.consecutive(), 0);
  for (int64_t at : {5000, 6000}) streak.Observe(HealthyFleet(kVoters, "0.1.0", at));
  EXPECT_EQ(streak.consecutive(), 2);
}

// Found in review: a node that missed rounds kept its last state, so the
// rounds neither counted nor broke the streak, and parity "held for 3"
// one round after its agent came back.
TEST(ParityStreakTest, ARoundANodeMissedEndsTheStreak) {
  ParityStreak streak;
  for (int64_t at : {1000, 2000}) streak.Observe(HealthyFleet(kVoters, "0.1.0", at));
  ASSERT_EQ(streak.consecutive(), 2);
  std::vector<NodeView> views = HealthyFleet(kVoters, "0.1.0", 3000);
  views[2] = HealthyView("c", "0.1.0", kHashA, 2000);
  views[2].unreachable_since_unix_ms = 2500;
  streak.Observe(views);
  EXPECT_EQ(streak.consecutive(), 0);
  ExpectRefused(CheckParityStable(streak, 3), reason::kAgentUnreachable, "c");
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 4000));
  EXPECT_EQ(streak.consecutive(), 1);
  ExpectRefused(CheckParityStable(streak, 3), reason::kParityNotStable, "");
}

TEST(ParityStreakTest, MismatchResetsAndIsReported) {
  ParityStreak streak;
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 1000));
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 2000));
  std::vector<NodeView> split = HealthyFleet(kVoters, "0.1.0", 3000);
  split[0] = HealthyView("a", "0.1.0", kHashB, 3000);
  streak.Observe(split);
  EXPECT_EQ(streak.consecutive(), 0);
  ExpectRefused(CheckParityStable(streak, 3), reason::kFleetParityMismatch,
                "a,b,c");
}

TEST(ParityStreakTest, ANewHashStartsANewStreak) {
  ParityStreak streak;
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 1000));
  streak.Observe(HealthyFleet(kVoters, "0.1.0", 2000));
  std::vector<NodeView> rotated;
  for (const auto& n : kVoters) rotated.push_back(HealthyView(n, "0.1.0", kHashB, 3000));
  streak.Observe(rotated);
  EXPECT_EQ(streak.consecutive(), 1);
  EXPECT_EQ(streak.hash(), kHashB);
}

TEST(DoctorGuardTest, PassesWhenEveryNodePassed) {
  EXPECT_TRUE(CheckDoctor({{"a", true, true, ""}, {"b", true, true, ""}}).ok());
}

TEST(DoctorGuardTest, NamesFailingChecksAndNodesNotRun) {
  const absl::Status s = CheckDoctor(
      {{"a", true, true, ""}, {"b", true, false, "kubernetes.encryption_config"},
       {"c", false, false, ""}});
  ExpectRefused(s, reason::kDoctorFailed, "b,c");
  EXPECT_THAT(s.message(), HasSubstr("kubernetes.encryption_config"));
  EXPECT_THAT(s.message(), HasSubstr("c (not run)"));
}

TEST(RollbackReadinessTest, RefusesWhenThePreviousArtifactIsMissing) {
  EXPECT_TRUE(CheckRollbackReadiness({{"a", "0.1.0", true}}).ok());
  const absl::Status s =
      CheckRollbackReadiness({{"a", "0.1.0", true}, {"b", "0.1.0", false}});
  ExpectRefused(s, reason::kRollbackArtifactMissing, "b");
  EXPECT_THAT(s.message(), HasSubstr("b (\"0.1.0\")"));
}

}  // namespace
}  // namespace kmsfleet
