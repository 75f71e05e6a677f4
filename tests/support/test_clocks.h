// Wall clocks for tests of node code that reads kmsfleet::Clock: one that
// says what the test sets, one that runs a fixed time ahead of the real
// one. Node layer only (clock.h).
#ifndef KMSFLEET_TESTS_SUPPORT_TEST_CLOCKS_H_
#define KMSFLEET_TESTS_SUPPORT_TEST_CLOCKS_H_

#include <cstdint>

#include "kmsfleet/node/clock.h"

namespace kmsfleet::testing {

// The real wall clock moved `ahead` milliseconds on. Thread-safe.
class ClockAhead final : public Clock {
 public:
  explicit ClockAhead(int64_t ahead) : ahead_(ahead) {}
  int64_t NowUnixMillis() const override { return SystemClock().NowUnixMillis() + ahead_; }

 private:
  const int64_t ahead_;
};

// Says `now`. Thread-compatible.
class SetClock final : public Clock {
 public:
  int64_t NowUnixMillis() const override { return now; }
  int64_t now = 0;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_SUPPORT_TEST_CLOCKS_H_
