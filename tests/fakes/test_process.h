// Helpers for fake_provider_tests: run the fake as a child process (as
// kmsfleet does), make temp dirs, and speak bounded HTTP/1.1 to its
// listeners. Every wait has a deadline so a broken fake fails a test
// instead of hanging it.
// Thread-compatible.
#ifndef KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_
#define KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kmsfleet::fake::testing {

using namespace std::chrono_literals;

// Path of the built fake-bao-kms-provider.
std::string FakeBinary();

// A fresh directory under /tmp (short, so unix socket paths fit in 108
// bytes), removed with its contents on destruction.
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

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);  // "" when absent
bool PathExists(const std::string& path);

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal or timed out
  std::string out;
  std::string err;
};

// A child process with stdout/stderr redirected to files. The destructor
// SIGKILLs and reaps it if it is still running, so a failed assertion never
// leaks a fake.
class ChildProcess {
 public:
  // `env` entries ("K=V") are added to a copy of this process's environment
  // with every FAKE_BAO_KMS_* and BAO_KMS_PROVIDER_* variable removed.
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::vector<std::string>& env, const std::string& out_path,
               const std::string& err_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // Waits for exit. Returns the exit code, 128+signal for a signal death,
  // or nullopt on timeout (the child keeps running).
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool Running();

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Runs the fake to completion (10 s limit) in `dir` with `args`.
RunResult RunFake(const std::vector<std::string>& args,
                  const std::vector<std::string>& env = {},
                  const std::string& binary = FakeBinary());

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout);

struct HttpResponse {
  int status = -1;  // -1: could not connect or no valid response
  std::string headers;
  std::string body;
};

// One request with Connection: close and a 3 s overall deadline.
HttpResponse HttpRequest(const std::string& host_port, const std::string& method,
                         const std::string& path);
inline HttpResponse HttpGet(const std::string& host_port, const std::string& path) {
  return HttpRequest(host_port, "GET", path);
}

}  // namespace kmsfleet::fake::testing

#endif  // KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_
