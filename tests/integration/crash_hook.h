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

inline StepHook CrashHookFromEnvironment() {
  const char* at = std::getenv("KMSFLEETD_TEST_CRASH_AT");
  if (at == nullptr || *at == '\0') return nullptr;
  return [point = std::string(at)](std::string_view now) {
    if (now == point) raise(SIGKILL);
  };
}

}  // namespace kmsfleet

#endif  // KMSFLEET_TESTS_INTEGRATION_CRASH_HOOK_H_
