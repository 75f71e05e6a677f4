#include "kmsfleet/node/subprocess.h"

#include <fcntl.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using Clock = std::chrono::steady_clock;

struct Pipe {
  int read_fd = -1;
  int write_fd = -1;
};

absl::Status StartFailed(const std::string& path, std::string_view step,
                         int err) {
  return MakeError(absl::StatusCode::kUnavailable, reason::kSubprocessFailed,
                   "cannot run " + path + ": " + std::string(step) + ": " +
                       std::strerror(err),
                   {{"path", path}});
}

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The child starts with no signal blocked and the signals a shell or a
// restart script relies on at their defaults: kmsfleetd blocks SIGTERM,
// SIGINT and SIGHUP in every thread for sigwait(), and an exec'd program
// inherits a blocked mask, so a command could otherwise not be stopped
// by any of them (a restart script's own `kill`, an operator's).
int ResetSignals(posix_spawnattr_t& attr) {
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGQUIT}) sigaddset(&defaults, sig);
  int r = posix_spawnattr_setsigmask(&attr, &none);
  if (r == 0) r = posix_spawnattr_setsigdefault(&attr, &defaults);
  return r;
}

// Starts argv[0] in a process group of its own (so a timeout kills its
// children too), stdin on /dev/null, stdout and stderr on the pipes.
// posix_spawn rather than fork(): glibc starts the child sharing the
// agent's memory until it execs, where fork() first copies the page tables
// of the whole agent, which costs more than a short command itself.
absl::StatusOr<pid_t> Spawn(const Pipe& out, const Pipe& err, char** argv, char** envp) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  int r = posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (r == 0) r = posix_spawn_file_actions_adddup2(&actions, out.write_fd, STDOUT_FILENO);
  if (r == 0) r = posix_spawn_file_actions_adddup2(&actions, err.write_fd, STDERR_FILENO);
  if (r == 0) {
    r = posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (r == 0) r = posix_spawnattr_setpgroup(&attr, 0);
  if (r == 0) r = ResetSignals(attr);
  pid_t pid = -1;
  if (r == 0) r = posix_spawn(&pid, argv[0], &actions, &attr, argv, envp);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (r != 0) return StartFailed(argv[0], "exec", r);
  return pid;
}

// Appends what is readable on `fd` to `sink` up to `cap`; returns false at
// end of stream.
bool Drain(int fd, std::string& sink, size_t cap, bool& truncated) {
  std::array<char, 16384> buf;
  ssize_t n = read(fd, buf.data(), buf.size());
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  size_t room = cap > sink.size() ? cap - sink.size() : 0;
  if (static_cast<size_t>(n) > room) truncated = true;
  sink.append(buf.data(), std::min(room, static_cast<size_t>(n)));
  return true;
}

void KillGroup(pid_t pid) {
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
}

// The milliseconds left before `deadline`, or nullopt once it has passed,
// after killing the child's group and marking the result timed out.
std::optional<int> MillisLeftOrKill(pid_t pid, Clock::time_point deadline,
                                    SubprocessResult& result) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() > 0) return static_cast<int>(left.count());
  result.timed_out = true;
  KillGroup(pid);
  return std::nullopt;
}

void CollectOutput(pid_t pid, Pipe& out, Pipe& err, Clock::time_point deadline,
                   const SubprocessOptions& options, SubprocessResult& result) {
  std::array<pollfd, 2> fds = {pollfd{out.read_fd, POLLIN, 0},
                               pollfd{err.read_fd, POLLIN, 0}};
  std::array<std::string*, 2> sinks = {&result.stdout_text, &result.stderr_text};
  int open_streams = 2;
  while (open_streams > 0) {
    std::optional<int> left = MillisLeftOrKill(pid, deadline, result);
    if (!left) break;
    int ready = poll(fds.data(), fds.size(), *left);
    if (ready < 0 && errno != EINTR) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (!Drain(fds[i].fd, *sinks[i], options.max_output_bytes, result.truncated)) {
        fds[i].fd = -1;
        --open_streams;
      }
    }
  }
}

// Without a pidfd: asks waitpid without blocking, a few milliseconds apart,
// until the child exits (true, `wstatus` set) or the deadline kills it.
bool ReapedBeforeDeadline(pid_t pid, Clock::time_point deadline, SubprocessResult& result,
                          int& wstatus) {
  while (!result.timed_out) {
    const pid_t got = waitpid(pid, &wstatus, WNOHANG);
    if (got == pid) return true;
    if (got < 0 && errno != EINTR) return false;
    std::optional<int> left = MillisLeftOrKill(pid, deadline, result);
    if (!left) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(*left, 10)));
  }
  return false;
}

// Waits until the child exits or `deadline` passes; a child that closed its
// pipes and kept running is killed (with its group) at the deadline rather
// than waited for forever. A pidfd lets poll() wait on the exit itself;
// where there is none (found in review: the deadline was then lost, and a
// hung restart command held the node busy for good), waitpid is polled.
void WaitForExit(pid_t pid, Clock::time_point deadline, const SubprocessOptions& options,
                 SubprocessResult& result) {
  int pidfd = options.wait_with_pidfd ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1;
  int wstatus = 0;
  bool reaped = false;
  if (pidfd < 0) reaped = ReapedBeforeDeadline(pid, deadline, result, wstatus);
  while (!result.timed_out && pidfd >= 0) {
    std::optional<int> left = MillisLeftOrKill(pid, deadline, result);
    if (!left) break;
    pollfd fd{pidfd, POLLIN, 0};
    int ready = poll(&fd, 1, *left);
    if (ready > 0) break;  // exited: reap below
    if (ready < 0 && errno != EINTR) break;
  }
  if (pidfd >= 0) close(pidfd);
  while (!reaped && waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(wstatus)) result.exit_code = WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) result.term_signal = WTERMSIG(wstatus);
}

}  // namespace

absl::StatusOr<SubprocessResult> RunSubprocess(
    const std::vector<std::string>& argv, const SubprocessOptions& options) {
  if (argv.empty()) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kSubprocessFailed, "empty command line");
  }
  Pipe out, err;
  int out_fds[2], err_fds[2];
  if (pipe2(out_fds, O_CLOEXEC) != 0) return StartFailed(argv[0], "pipe", errno);
  if (pipe2(err_fds, O_CLOEXEC) != 0) {
    int saved = errno;
    close(out_fds[0]);
    close(out_fds[1]);
    return StartFailed(argv[0], "pipe", saved);
  }
  out = {out_fds[0], out_fds[1]};
  err = {err_fds[0], err_fds[1]};
  std::vector<char*> c_argv = CStrings(argv);
  std::vector<char*> c_env = CStrings(options.environment);
  absl::StatusOr<pid_t> spawned = Spawn(out, err, c_argv.data(), c_env.data());
  close(out.write_fd);
  close(err.write_fd);
  if (!spawned.ok()) {
    close(out.read_fd);
    close(err.read_fd);
    return spawned.status();
  }
  const pid_t pid = *spawned;
  SubprocessResult result;
  Clock::time_point deadline = Clock::now() + options.timeout;
  CollectOutput(pid, out, err, deadline, options, result);
  close(out.read_fd);
  close(err.read_fd);
  WaitForExit(pid, deadline, options, result);
  return result;
}

absl::StatusOr<std::vector<std::string>> AsUser(const std::string& user,
                                                std::vector<std::string> argv) {
  if (user.empty()) return argv;
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  if (getpwnam_r(user.c_str(), &pw, buf, sizeof buf, &found) != 0 || found == nullptr) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "executor.run_as: no user \"" + user + "\"", {{"key", "executor.run_as"}});
  }
  std::vector<std::string> as = {"/usr/bin/setpriv", "--reuid=" + std::to_string(pw.pw_uid),
                                 "--regid=" + std::to_string(pw.pw_gid), "--init-groups", "--"};
  as.insert(as.end(), std::make_move_iterator(argv.begin()), std::make_move_iterator(argv.end()));
  return as;
}

}  // namespace kmsfleet
