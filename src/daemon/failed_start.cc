#include "daemon/failed_start.h"

#include <ctime>

namespace kmsfleet {

FailedStartEnd WaitOutRecovery(const std::function<bool()>& recovering,
                               const sigset_t& stop_signals,
                               const std::function<void()>& still_starting,
                               std::chrono::milliseconds poll) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(poll);
  const timespec wait{static_cast<time_t>(seconds.count()),
                      static_cast<long>(std::chrono::nanoseconds(poll - seconds).count())};
  while (recovering()) {
    still_starting();
    const int signal_number = sigtimedwait(&stop_signals, nullptr, &wait);
    if (signal_number == SIGTERM || signal_number == SIGINT) {
      return FailedStartEnd::kStopRequested;
    }
    // EAGAIN (the poll ended), EINTR, or SIGHUP: look again.
  }
  return FailedStartEnd::kRecoveryDone;
}

}  // namespace kmsfleet
