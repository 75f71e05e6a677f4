#include "kmsfleet/core/repeat_limiter.h"

#include <gtest/gtest.h>

namespace kmsfleet {
namespace {

TEST(RepeatLimiterTest, WritesTheFirstThenOnePerIntervalWithTheCountHeldBack) {
  RepeatLimiter limiter(10'000, 8);
  EXPECT_EQ(limiter.Admit("a", 1'000), 0);
  for (int64_t t = 1'050; t < 11'000; t += 50) {
    EXPECT_EQ(limiter.Admit("a", t), std::nullopt) << "at " << t;
  }
  // 199 held back (every 50 ms from 1,050 to 10,950), then written at
  // 11,000 with that count, and the interval starts again from there.
  EXPECT_EQ(limiter.Admit("a", 11'000), 199);
  EXPECT_EQ(limiter.Admit("a", 11'001), std::nullopt);
  EXPECT_EQ(limiter.Admit("a", 21'000), 1);
  EXPECT_EQ(limiter.Admit("a", 40'000), 0) << "nothing held back since";
}

TEST(RepeatLimiterTest, KeysAreCountedApart) {
  RepeatLimiter limiter(10'000, 8);
  EXPECT_EQ(limiter.Admit("swap AGENT_STARTING", 0), 0);
  EXPECT_EQ(limiter.Admit("swap STALE_FENCE", 1), 0) << "another reason is another line";
  EXPECT_EQ(limiter.Admit("swap AGENT_STARTING", 2), std::nullopt);
  EXPECT_EQ(limiter.Admit("swap STALE_FENCE", 10'001), 0);
  EXPECT_EQ(limiter.Admit("swap AGENT_STARTING", 10'002), 1);
}

TEST(RepeatLimiterTest, AClockThatWentBackWritesAtOnce) {
  RepeatLimiter limiter(10'000, 8);
  EXPECT_EQ(limiter.Admit("a", 50'000), 0);
  EXPECT_EQ(limiter.Admit("a", 50'001), std::nullopt);
  EXPECT_EQ(limiter.Admit("a", 1'000), 1) << "not held back for the step's length";
}

TEST(RepeatLimiterTest, KeysAreBoundedAndTheOneWrittenLongestAgoGoes) {
  RepeatLimiter limiter(10'000, 3);
  EXPECT_EQ(limiter.Admit("old", 0), 0);
  EXPECT_EQ(limiter.Admit("b", 100), 0);
  EXPECT_EQ(limiter.Admit("c", 200), 0);
  EXPECT_EQ(limiter.Admit("d", 300), 0);
  EXPECT_EQ(limiter.size(), 3u);
  EXPECT_EQ(limiter.Admit("b", 400), std::nullopt) << "b is still remembered";
  EXPECT_EQ(limiter.Admit("old", 500), 0) << "old was forgotten: a first again";
  EXPECT_EQ(limiter.size(), 3u);
  EXPECT_EQ(limiter.Admit("c", 600), std::nullopt) << "c is still remembered";
  EXPECT_EQ(limiter.Admit("b", 700), 0) << "b went to make room for old";
}

}  // namespace
}  // namespace kmsfleet
