// The crash tests' step hook, built only into kmsfleetd_crashtest (a test
// build of src/daemon/kmsfleetd_main.cc): SIGKILL the agent at the point
// named by KMSFLEETD_TEST_CRASH_AT (a phase name or "after-rename"), so a
// test can restart it at an exact phase boundary. The production kmsfleetd
// neither reads that variable nor can crash on purpose.
#ifndef KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_
#define KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "kmsfleet/node/executor.h"

namespace kmsfleet {

// KMSFLEETD_TEST_PAUSE_AT names a point where the agent SIGSTOPs itself
// instead, for a test to act in that instant and SIGCONT it.
// KMSFLEETD_TEST_STALL_AT names one where only the thread that reaches it
// sleeps kStall (a slow admission, say), the rest of the agent serving on.
inline constexpr std::chrono::seconds kStall{3};

inline StepHook CrashHookFromEnvironment() {
  const char* crash = std::getenv("KMSFLEETD_TEST_CRASH_AT");
  const char* pause = std::getenv("KMSFLEETD_TEST_PAUSE_AT");
  const char* stall = std::getenv("KMSFLEETD_TEST_STALL_AT");
  std::string crash_at = crash != nullptr ? crash : "";
  std::string pause_at = pause != nullptr ? pause : "";
  std::string stall_at = stall != nullptr ? stall : "";
  if (crash_at.empty() && pause_at.empty() && stall_at.empty()) return nullptr;
  return [crash_at, pause_at, stall_at](std::string_view now) {
    if (now == crash_at) raise(SIGKILL);
    if (now == pause_at) raise(SIGSTOP);
    if (now == stall_at) std::this_thread::sleep_for(kStall);
  };
}

}  // namespace kmsfleet

#endif  // KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_
