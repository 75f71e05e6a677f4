// Fencing of disruptive commands (architecture.md §2 principle 4, §6).
#include "kmsfleet/fence_guard.h"

#include <gtest/gtest.h>

#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"

namespace kmsfleet {
namespace {

v1::Fence F(uint64_t term, uint64_t index, std::string in_flight) {
  v1::Fence f;
  f.set_term(term);
  f.set_index(index);
  f.set_in_flight(std::move(in_flight));
  return f;
}

TEST(FenceGuardTest, CommandFromOlderTermIsRefusedAsStaleTerm) {
  FenceGuard guard("b", v1::FenceState());
  guard.ObserveTerm(4);
  absl::Status s = guard.AdmitSwap(F(3, 9, "b"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(s), reason::kStaleTerm);
  EXPECT_EQ(MetadataOf(s, "highest_term"), "4");
  EXPECT_EQ(guard.state().highest_term(), 4u);
}

TEST(FenceGuardTest, SwapIsRefusedUnlessFenceNamesThisNode) {
  FenceGuard guard("b", v1::FenceState());
  absl::Status s = guard.AdmitSwap(F(2, 3, "c"));
  EXPECT_EQ(ReasonOf(s), reason::kNotInFlight);
  EXPECT_EQ(guard.state().highest_term(), 0u) << "a refusal changes nothing";
  EXPECT_TRUE(guard.AdmitSwap(F(2, 3, "b")).ok());
  EXPECT_EQ(guard.state().highest_term(), 2u);
}

TEST(FenceGuardTest, SwapDelayedPastAReleaseAtTheSameTermIsRefused) {
  FenceGuard guard("b", v1::FenceState());
  ASSERT_TRUE(guard.AdmitRelease(F(5, 7, "b"), /*running=*/false).ok());
  EXPECT_EQ(ReasonOf(guard.AdmitSwap(F(5, 7, "b"))), reason::kStaleFence);
  EXPECT_EQ(ReasonOf(guard.AdmitSwap(F(4, 8, "b"))), reason::kStaleTerm);
  EXPECT_TRUE(guard.AdmitSwap(F(5, 9, "b")).ok()) << "a newer plan may again";
}

TEST(FenceGuardTest, ReleaseWhileRunningRaisesTermButReleasesNothing) {
  FenceGuard guard("b", v1::FenceState());
  ASSERT_TRUE(guard.AdmitRelease(F(6, 2, "b"), /*running=*/true).ok());
  EXPECT_EQ(guard.state().highest_term(), 6u);
  EXPECT_EQ(guard.state().released_index(), 0u);
  EXPECT_TRUE(guard.AdmitSwap(F(6, 2, "b")).ok());
}

TEST(FenceGuardTest, PersistedStateSurvivesRestart) {
  v1::FenceState persisted;
  {
    FenceGuard guard("b", v1::FenceState());
    ASSERT_TRUE(guard.AdmitRelease(F(3, 4, "b"), false).ok());
    persisted = guard.state();
  }
  FenceGuard restarted("b", persisted);
  EXPECT_EQ(ReasonOf(restarted.AdmitSwap(F(2, 9, "b"))), reason::kStaleTerm);
  EXPECT_EQ(ReasonOf(restarted.AdmitSwap(F(3, 4, "b"))), reason::kStaleFence);
}

}  // namespace
}  // namespace kmsfleet
