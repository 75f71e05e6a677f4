// Time as an injected dependency (style.md 3): wall-clock time to stamp
// observations and journals, and monotonic time for windows, deadlines and
// sleeps (an NTP step must not shorten or stretch a wait). Tests run both
// on simulated clocks.
#ifndef KMSFLEET_NODE_CLOCK_H_
#define KMSFLEET_NODE_CLOCK_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <cstdint>
#include <thread>

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

// Steady time, and waiting on it. Thread-safe.
class MonotonicClock {
 public:
  virtual ~MonotonicClock() = default;
  // Milliseconds since an arbitrary start; never goes backwards.
  virtual int64_t NowSteadyMillis() const = 0;
  // Blocks for `duration` of steady time (a simulated clock advances).
  virtual void SleepFor(std::chrono::milliseconds duration) const = 0;
};

// std::chrono::steady_clock and std::this_thread::sleep_for. Thread-safe.
class SteadyClock final : public MonotonicClock {
 public:
  // kmsfleet::MonotonicClock
  int64_t NowSteadyMillis() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void SleepFor(std::chrono::milliseconds duration) const override {
    std::this_thread::sleep_for(duration);
  }
};

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_CLOCK_H_
