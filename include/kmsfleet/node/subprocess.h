// Runs a provider command (`version`, `doctor`, `rotation-plan`, ...) as a
// child process with a timeout, bounded output and a cleared environment.
// Thread-safe: each call owns its child and pipes.
#ifndef KMSFLEET_NODE_SUBPROCESS_H_
#define KMSFLEET_NODE_SUBPROCESS_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

struct SubprocessOptions {
  std::chrono::milliseconds timeout{30000};
  // Per stream; output beyond this is read and discarded, and the result
  // says it was truncated.
  size_t max_output_bytes = 1 << 20;
  // The child's whole environment ("KEY=value"); nothing is inherited, so a
  // provider never sees our credentials or proxies by accident.
  std::vector<std::string> environment = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                          "LANG=C.UTF-8"};
  // Test seam: false waits for the exit as on a host where pidfd_open
  // fails (a kernel before 5.3, a seccomp filter without it).
  bool wait_with_pidfd = true;
};

struct SubprocessResult {
  int exit_code = -1;     // valid when term_signal == 0 and !timed_out
  int term_signal = 0;    // the signal that ended the child, if any
  bool timed_out = false; // the child (and its group) was killed at timeout
  bool truncated = false; // some output was over max_output_bytes
  std::string stdout_text;
  std::string stderr_text;
};

// Runs argv[0] (an absolute path) with argv, waits for it, and returns what
// it did; a non-zero exit, a signal or a timeout is a result, not an error.
// Errors: InvalidArgument for an empty argv; Unavailable, SUBPROCESS_FAILED
// when the child could not be started (the message names argv[0] and errno).
absl::StatusOr<SubprocessResult> RunSubprocess(
    const std::vector<std::string>& argv, const SubprocessOptions& options);

// `argv` to run as `user` (executor.run_as) through setpriv, with that
// user's uid, primary group (which need not share its name) and groups;
// `argv` itself when `user` is empty. InvalidArgument, INVALID_CONFIG
// naming executor.run_as, when there is no such user.
absl::StatusOr<std::vector<std::string>> AsUser(const std::string& user,
                                                std::vector<std::string> argv);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_SUBPROCESS_H_
