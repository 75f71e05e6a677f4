// What kmsfleetd does when its start fails after crash recovery began
// (a listener that cannot bind, a bad socket group, missing peer
// credentials): the recovery on the executor's worker may be midway
// through a swap, with the provider stopped. Returning at once would join
// that worker with SIGTERM blocked and nothing reading it, past systemd's
// start and stop timeouts, and Restart=on-failure would start the same
// failing recovery again, for good.
#ifndef KMSFLEET_DAEMON_FAILED_START_H_
#define KMSFLEET_DAEMON_FAILED_START_H_

#include <signal.h>

#include <chrono>
#include <functional>

namespace kmsfleet {

enum class FailedStartEnd {
  kRecoveryDone,   // the recovery ended: exit with the start's error
  kStopRequested,  // SIGTERM or SIGINT came first: exit at once; the
                   // journal is on disk and the next start recovers it
};

// Waits while `recovering()` holds, `poll` at a time, calling
// `still_starting()` before each wait (kmsfleetd extends systemd's start
// timeout there: EXTEND_TIMEOUT_USEC). A SIGTERM or SIGINT in
// `stop_signals` (blocked by the caller) ends the wait; SIGHUP is ignored.
FailedStartEnd WaitOutRecovery(const std::function<bool()>& recovering,
                               const sigset_t& stop_signals,
                               const std::function<void()>& still_starting,
                               std::chrono::milliseconds poll = std::chrono::seconds(2));

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_FAILED_START_H_
