// Test harness for multi-process tests: child processes that are always
// reaped, temporary directories, free loopback ports and bounded waiting.
// Single-threaded: used from the test's own thread.
#ifndef KMSFLEET_TESTS_INTEGRATION_HARNESS_H_
#define KMSFLEET_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kmsfleet::testing {

// A directory under $TMPDIR removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process whose stdout and stderr go to `log_path`. The destructor
// sends SIGKILL and reaps it if it still runs, so a failing test leaves no
// strays behind.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path,
               const std::vector<std::string>& extra_env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal_number) const;
  // Waits up to `timeout` for the child to exit; returns its wait status,
  // or nullopt if it is still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool Running();
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// A TCP port on 127.0.0.1 that was free a moment ago. Used where a process
// must be told its port before it binds (the fake provider binds nothing
// during its start-up delay, so it cannot report a port-0 choice earlier).
uint16_t FreeLoopbackPort();

// Polls `done` every 50 ms until it returns true or `timeout` passes.
bool WaitUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout);

void WriteFile(const std::string& path, const std::string& text);
std::string ReadFile(const std::string& path);

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_HARNESS_H_
