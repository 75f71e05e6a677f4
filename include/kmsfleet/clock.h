// Wall-clock time as an injected dependency (style.md 3), so code that
// stamps observations can run on a fixed clock in tests.
#ifndef KMSFLEET_CLOCK_H_
#define KMSFLEET_CLOCK_H_

#include <chrono>
#include <cstdint>

namespace kmsfleet {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUnixMillis() const = 0;
};

// The system's real-time clock. Thread-safe.
class SystemClock final : public Clock {
 public:
  // kmsfleet::Clock
  int64_t NowUnixMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLOCK_H_
