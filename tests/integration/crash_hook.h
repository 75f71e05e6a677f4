// The crash tests' step hook, built only into kmsfleetd_crashtest (a test
// build of src/daemon/kmsfleetd_main.cc): SIGKILL the agent at the point
// named by KMSFLEETD_TEST_CRASH_AT (a phase name or "after-rename"), so a
// test can restart it at an exact phase boundary. The production kmsfleetd
// neither reads that variable nor can crash on purpose.
#ifndef KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_
#define KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_

#include <signal.h>

#include <cstdlib>
#include <string>

#include "kmsfleet/node/executor.h"

namespace kmsfleet {

// KMSFLEETD_TEST_PAUSE_AT names a point where the agent SIGSTOPs itself
// instead, for a test to act in that instant and SIGCONT it.
inline StepHook CrashHookFromEnvironment() {
  const char* crash = std::getenv("KMSFLEETD_TEST_CRASH_AT");
  const char* pause = std::getenv("KMSFLEETD_TEST_PAUSE_AT");
  std::string crash_at = crash != nullptr ? crash : "";
  std::string pause_at = pause != nullptr ? pause : "";
  if (crash_at.empty() && pause_at.empty()) return nullptr;
  return [crash_at, pause_at](std::string_view now) {
    if (now == crash_at) raise(SIGKILL);
    if (now == pause_at) raise(SIGSTOP);
  };
}

}  // namespace kmsfleet

#endif  // KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_
