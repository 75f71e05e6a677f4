// Shared harness for tests that run real processes: temporary directories,
// child processes that are always reaped, bounded waiting, free loopback
// ports and a minimal HTTP client. Every wait has a deadline, so a broken
// process fails a test instead of hanging it.
// Thread-compatible.
#ifndef KMSFLEET_TESTS_SUPPORT_PROCESS_HARNESS_H_
#define KMSFLEET_TESTS_SUPPORT_PROCESS_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kmsfleet::testing {

// A fresh directory under $TMPDIR or /tmp (short, so unix socket paths fit
// in 108 bytes), removed with its contents on destruction.
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

// While alive, this process's writes past `bytes` into any file fail with
// EFBIG (RLIMIT_FSIZE, SIGXFSZ ignored): a disk write error that needs no
// privilege and no full disk. Restores both on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes);
  ~FileSizeLimit();
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  uint64_t before_cur_ = 0;
  void (*before_xfsz_)(int) = nullptr;
};

// Writes through a temporary file and rename, so a process polling `path`
// never reads half of it.
void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);  // "" when absent
bool PathExists(const std::string& path);

struct ChildOptions {
  std::string out_path = {};  // stdout; required
  std::string err_path = {};  // stderr; empty means the same file as stdout
  // Added to a copy of this process's environment ("K=V").
  std::vector<std::string> extra_env = {};
  // Variables with these prefixes are not inherited, so a developer's shell
  // cannot change what a test sees.
  std::vector<std::string> drop_env_prefixes = {};
};

// A child process. The destructor SIGKILLs and reaps it if it still runs,
// and the child is killed if the test process dies, so nothing leaks.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const ChildOptions& options);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal_number);
  // Waits up to `timeout` for exit. Returns the exit code, 128+signal for a
  // death by signal, or nullopt if the child is still running.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool Running();
  // What the child wrote to stdout (and stderr, when shared).
  std::string Output() const { return ReadFile(out_path_); }

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string out_path_;
};

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition,
               std::chrono::milliseconds timeout);

// A TCP port on 127.0.0.1 that was free a moment ago, for a process that
// must be told its port before it binds; never one this process was given
// before.
uint16_t FreeLoopbackPort();

// A TCP port on 127.0.0.1 bound and listening for this object's life: an
// address a process under test cannot bind. port() is 0 if none could be
// held.
class HeldPort {
 public:
  HeldPort();
  ~HeldPort();
  HeldPort(const HeldPort&) = delete;
  HeldPort& operator=(const HeldPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

struct HttpReply {
  int status = -1;  // -1: could not connect or no valid response
  std::string headers;
  std::string body;
};

// One HTTP/1.1 request to an IPv4 "host:port" with Connection: close and a
// 3 s overall deadline.
HttpReply HttpRequest(const std::string& host_port, const std::string& method,
                      const std::string& path);

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_SUPPORT_PROCESS_HARNESS_H_
