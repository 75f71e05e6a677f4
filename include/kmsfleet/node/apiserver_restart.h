// Restarting the local kube-apiserver when a provider release needs it
// (issue 9, the plan's RESTARTING_APISERVER step; docs/fleet-plan.md):
// restart it the configured way (a systemd unit through the ServiceManager,
// or a command run as a subprocess), then GET its /readyz until it answers
// 200 or the wait ends.
//
// Thread-safe: Restart may be called from any RPC thread; one restart runs
// at a time and a repeated request for the same restart id is answered by
// the restart already run (or waits for the one running), never run twice;
// with a record file, not across the agent's own restarts either (unless
// it stopped between the restart and the record's write, or the write
// failed).
#ifndef KMSFLEET_NODE_APISERVER_RESTART_H_
#define KMSFLEET_NODE_APISERVER_RESTART_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/http_get.h"
#include "kmsfleet/node/service_manager.h"
#include "kmsfleet/node/subprocess.h"

namespace kmsfleet {

// The `apiserver:` section of the agent's config (docs/config.md).
struct ApiServerRestartOptions {
  enum class Method { kNone, kSystemd, kCommand };
  Method method = Method::kNone;
  std::string unit;     // kSystemd: the unit to restart
  std::string command;  // kCommand: an absolute path, run with no arguments
  HttpUrl readyz{"127.0.0.1", 6443, "/readyz", true};
  // ca_file ("" = the system's trust store) and tls_server_name ("" = the
  // URL's host) for an https readyz URL; timeouts of each GET.
  HttpGetOptions http{.connect_timeout = std::chrono::milliseconds(2000),
                      .total_timeout = std::chrono::milliseconds(5000),
                      .max_body_bytes = 64 << 10,
                      .ca_file = "",
                      .tls_server_name = ""};
  // The unit's restart job, or the command, may take this long.
  std::chrono::milliseconds restart_timeout{120000};
  // How long /readyz may take to answer 200 after the restart.
  std::chrono::milliseconds ready_timeout{120000};
  std::chrono::milliseconds poll_interval{1000};
  // A file in the agent's state directory naming the last restart that
  // ran, so that one asked again after the agent itself restarted (a stop
  // during its /readyz wait, a crash) waits for /readyz rather than
  // restarting kube-apiserver a second time; "" keeps it in memory only.
  // A command's start is recorded too: one whose end the agent did not
  // see (stopped or killed while it ran) is answered
  // APISERVER_RESTART_FAILED, "cut short", and not run again.
  std::string record_file;
  // A request for the restart running now waits this long for its answer,
  // then is told to ask again (Unavailable, OPERATION_IN_PROGRESS): a
  // caller that asks again and again parks no more than one thread each
  // for this long (found in review: each waited for the whole restart).
  std::chrono::milliseconds repeat_wait{10000};
};

// Parses `restart`: "systemd:<unit>" or "command:<absolute path>" into
// `out` (method, unit, command). Errors: InvalidArgument, INVALID_CONFIG,
// a sentence saying what is wrong with the value (the caller names the key).
absl::Status ParseApiServerRestartMethod(std::string_view restart,
                                         ApiServerRestartOptions& out);

// "systemd:<unit>", "command:<path>", or "" for kNone: the configured
// method as the plan records it.
std::string ApiServerRestartMethodName(const ApiServerRestartOptions& options);

// What one restart did.
struct ApiServerRestartReport {
  std::string method;  // as ApiServerRestartMethodName
  std::string done;    // a sentence: "restarted unit X", "ran /p (exit 0)"
  int64_t restart_ms = 0;  // the restart job or the command
  int64_t ready_ms = 0;    // from its end to the first /readyz 200
  int readyz_attempts = 0;
};

// The node's seams the restart runs over; every reference must outlive it.
struct ApiServerRestartSeams {
  ServiceManager& services;
  std::function<absl::StatusOr<SubprocessResult>(const std::vector<std::string>&,
                                                 const SubprocessOptions&)>
      run = RunSubprocess;
  std::function<absl::StatusOr<HttpResponse>(const HttpUrl&, const HttpGetOptions&)> get =
      HttpGet;
  const MonotonicClock& steady;
};

// Runs `work` if the disruption may start now, and says why not otherwise:
// the executor's admission (Executor::RunAdmitted: fence, one at a time).
using ApiServerRestartAdmission =
    std::function<absl::Status(const std::function<void()>& work)>;

class ApiServerRestarter {
 public:
  ApiServerRestarter(ApiServerRestartOptions options, ApiServerRestartSeams seams);

  bool configured() const { return options_.method != ApiServerRestartOptions::Method::kNone; }
  const ApiServerRestartOptions& options() const { return options_; }

  // Restarts kube-apiserver once for `restart_id` (the plan names it by the
  // swap it follows): the first request is admitted by `admit` and runs;
  // a request for the id running now waits for it; one for the id run last
  // gets that run's answer without running again; one for the id the
  // record file names (run before this agent started) waits for /readyz
  // without restarting again. Errors:
  //   FailedPrecondition APISERVER_RESTART_UNCONFIGURED: no `apiserver:`
  //     section (restart method) on this node;
  //   `admit`'s refusal (the fence, OPERATION_IN_PROGRESS);
  //   FailedPrecondition APISERVER_RESTART_FAILED: the unit's restart job
  //     or the command failed (naming it, with what was observed);
  //   DeadlineExceeded APISERVER_NOT_READY: /readyz did not answer 200
  //     within ready_timeout (naming the URL and the last answer);
  //   Unavailable AGENT_STOPPING: StopWaiting() was called while /readyz
  //     was awaited (the restart itself ran; the coordinator asks again).
  absl::StatusOr<ApiServerRestartReport> Restart(const std::string& restart_id,
                                                 const ApiServerRestartAdmission& admit);

  // Called on SIGTERM: a restart waiting for /readyz (up to ready_timeout,
  // which may be an hour) stops waiting at its next poll, so the agent's
  // drain does not outlast systemd's TimeoutStopSec and end in SIGKILL.
  void StopWaiting();
  // Whether a restart is running now (the agent's stop then asks systemd
  // for the command's time: EXTEND_TIMEOUT_USEC).
  bool Running();

 private:
  // Restarts kube-apiserver and records it, or, when `ran_before` (the
  // record's sentence) says it ran for this id already, only says so;
  // then waits for /readyz.
  absl::StatusOr<ApiServerRestartReport> RestartNow(const std::string& restart_id,
                                                    const std::optional<std::string>& ran_before);
  // What the record file says `restart_id` did (its report's `done`), if it
  // names that id; nullopt when it does not, or cannot be read.
  std::optional<std::string> RecordedRun(const std::string& restart_id) const;
  void RecordRun(const std::string& restart_id, const std::string& done) const;
  void ForgetRun(const std::string& restart_id) const;
  void RecordStart(const std::string& restart_id) const;
  absl::Status RunRestart(ApiServerRestartReport& report);
  absl::Status AwaitReady(ApiServerRestartReport& report);

  ApiServerRestartOptions options_;
  ApiServerRestartSeams seams_;

  std::atomic<bool> stop_waiting_{false};
  std::mutex mu_;
  std::condition_variable done_;
  std::string running_id_;  // guarded by mu_; "" when none runs
  std::string last_id_;     // guarded by mu_
  std::optional<absl::StatusOr<ApiServerRestartReport>> last_;  // guarded by mu_
};

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_APISERVER_RESTART_H_
