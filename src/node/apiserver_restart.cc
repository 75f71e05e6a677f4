#include "kmsfleet/node/apiserver_restart.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

constexpr std::string_view kSystemdPrefix = "systemd:";
constexpr std::string_view kCommandPrefix = "command:";
// What of a failing command's output goes into the refusal.
constexpr size_t kMaxOutputInMessage = 400;
// The record file: a restart id (up to 256 bytes) and a sentence naming
// the unit or the command's path (up to PATH_MAX), a line each.
constexpr size_t kMaxRecordBytes = 16 << 10;

absl::Status BadMethod(std::string_view restart, std::string_view why) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   "\"" + std::string(restart) + "\" " + std::string(why));
}

std::string Tail(const std::string& text) {
  std::string out = text.size() > kMaxOutputInMessage
                        ? "..." + text.substr(text.size() - kMaxOutputInMessage)
                        : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// What RecordedRun says of a restart command whose start was recorded and
// its end not: an agent stopped or killed while it ran (systemd's stop
// timeout ends a drain that outlasts it). On disk the id line is then
// "<id> started", which an agent older than this record does not take for
// a run of <id> (ids hold no space): after a downgrade it runs the command
// again, as it always did, rather than skip it (found in review).
constexpr char kCommandStarted[] = "started; its end was not recorded";
constexpr char kStartedSuffix[] = " started";

absl::Status Failed(const std::string& what, const std::string& method) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kApiServerRestartFailed,
                   what, {{"method", method}});
}

// A command's result as a sentence: how it ended and its last output.
std::string Ending(const SubprocessResult& r) {
  std::string out = r.timed_out      ? "did not finish in time and was killed"
                    : r.term_signal  ? "was killed by signal " + std::to_string(r.term_signal)
                                     : "exited " + std::to_string(r.exit_code);
  std::string said = Tail(r.stderr_text.empty() ? r.stdout_text : r.stderr_text);
  return said.empty() ? out : out + ": " + said;
}

}  // namespace

absl::Status ParseApiServerRestartMethod(std::string_view restart,
                                         ApiServerRestartOptions& out) {
  if (restart.substr(0, kSystemdPrefix.size()) == kSystemdPrefix) {
    std::string_view unit = restart.substr(kSystemdPrefix.size());
    if (unit.empty() || unit.find_first_of(" \t/") != std::string_view::npos) {
      return BadMethod(restart, "must name a unit after systemd:, e.g. "
                                "systemd:kube-apiserver.service");
    }
    out.method = ApiServerRestartOptions::Method::kSystemd;
    out.unit = std::string(unit);
    return absl::OkStatus();
  }
  if (restart.substr(0, kCommandPrefix.size()) == kCommandPrefix) {
    std::string_view path = restart.substr(kCommandPrefix.size());
    if (path.empty() || path.front() != '/' || path.find(' ') != std::string_view::npos) {
      return BadMethod(restart, "must name an absolute path after command: (it is run "
                                "with no arguments), e.g. command:/usr/local/sbin/restart-apiserver");
    }
    out.method = ApiServerRestartOptions::Method::kCommand;
    out.command = std::string(path);
    return absl::OkStatus();
  }
  return BadMethod(restart, "must be systemd:<unit> or command:<absolute path>");
}

std::string ApiServerRestartMethodName(const ApiServerRestartOptions& o) {
  switch (o.method) {
    case ApiServerRestartOptions::Method::kSystemd: return std::string(kSystemdPrefix) + o.unit;
    case ApiServerRestartOptions::Method::kCommand:
      return std::string(kCommandPrefix) + o.command;
    case ApiServerRestartOptions::Method::kNone: break;
  }
  return "";
}

ApiServerRestarter::ApiServerRestarter(ApiServerRestartOptions options,
                                       ApiServerRestartSeams seams)
    : options_(std::move(options)), seams_(std::move(seams)) {}

absl::StatusOr<ApiServerRestartReport> ApiServerRestarter::Restart(
    const std::string& restart_id, const ApiServerRestartAdmission& admit) {
  // An operation id and a suffix (".apiserver"): the same alphabet, with
  // room for the suffix.
  if (!restart_id.empty() && (restart_id.size() > 256 || !IsSafeFileName(restart_id))) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidOperationId,
                     "restart id \"" + restart_id.substr(0, 64) +
                         (restart_id.size() > 64 ? "...\"" : "\"") +
                         " must be up to 256 characters of [A-Za-z0-9._+-]",
                     {{"restart_id", restart_id.substr(0, 64)}});
  }
  if (!configured()) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kApiServerRestartUnconfigured,
                     "this node's config has no apiserver.restart, so kmsfleetd cannot "
                     "restart kube-apiserver here; add an apiserver: section "
                     "(docs/config.md)");
  }
  {
    std::unique_lock lock(mu_);
    // A coordinator that lost its answer (a deadline, a failover) asks
    // again: it gets the restart that already ran, not a second one.
    if (!done_.wait_for(lock, options_.repeat_wait,
                        [&] { return running_id_.empty() || running_id_ != restart_id; })) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kOperationInProgress,
                       "kube-apiserver is still being restarted for " + restart_id +
                           "; ask again for its answer",
                       {{"restart_id", restart_id}});
    }
    if (last_ && !restart_id.empty() && last_id_ == restart_id) return *last_;
    if (!running_id_.empty()) {
      return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                       "kube-apiserver is being restarted for " + running_id_);
    }
    running_id_ = restart_id.empty() ? "(unnamed)" : restart_id;
  }
  std::optional<absl::StatusOr<ApiServerRestartReport>> result;
  const std::optional<std::string> ran_before = RecordedRun(restart_id);
  absl::Status admitted = admit([&] {
    result = RestartNow(restart_id, ran_before);
  });
  std::lock_guard lock(mu_);
  running_id_.clear();
  done_.notify_all();
  if (!admitted.ok()) return admitted;  // nothing ran: a later request may
  if (!result) {
    result = MakeError(absl::StatusCode::kInternal, reason::kApiServerRestartFailed,
                       "the restart was admitted but did not run");
  }
  last_id_ = restart_id;
  last_ = *result;
  return *result;
}

void ApiServerRestarter::StopWaiting() { stop_waiting_.store(true); }

absl::StatusOr<ApiServerRestartReport> ApiServerRestarter::RestartNow(
    const std::string& restart_id, const std::optional<std::string>& ran_before) {
  ApiServerRestartReport report;
  report.method = ApiServerRestartMethodName(options_);
  if (ran_before && *ran_before == kCommandStarted) {
    // Found in review: a command cut short (a kubeadm-style rename of the
    // manifest away and back, killed between the two) was run again from
    // its half-done state, or never asked for again. Said, not run.
    return Failed("the kube-apiserver restart for " + restart_id + " (" + report.method +
                      ") was cut short: this agent stopped or was killed after it began, so "
                      "how it ended is unknown and kube-apiserver on this node may be down. "
                      "Check it and bring it back by hand; `kmsfleetctl resume` then asks for "
                      "the restart again under a new id",
                  report.method);
  }
  if (ran_before) {
    report.done = *ran_before + " (run earlier for this step; not run again)";
    Log(LogLevel::kInfo, "kube-apiserver was restarted for this step earlier; waiting for "
                         "/readyz without restarting it again",
        {{"method", report.method}, {"file", options_.record_file}});
  } else {
    Log(LogLevel::kInfo, "restarting kube-apiserver", {{"method", report.method}});
    const int64_t start = seams_.steady.NowSteadyMillis();
    const bool command = options_.method == ApiServerRestartOptions::Method::kCommand;
    if (command) RecordStart(restart_id);
    if (absl::Status ran = RunRestart(report); !ran.ok()) {
      // A failure that was seen is not a run: asked again, it runs again.
      if (command) ForgetRun(restart_id);
      return ran;
    }
    report.restart_ms = seams_.steady.NowSteadyMillis() - start;
    // Before the wait, which a stop or a crash can cut short: asked again
    // after that, the restart is not run twice.
    RecordRun(restart_id, report.done);
  }
  KMSFLEET_RETURN_IF_ERROR(AwaitReady(report));
  Log(LogLevel::kInfo, "kube-apiserver ready",
      {{"method", report.method}, {"restart_ms", std::to_string(report.restart_ms)},
       {"ready_ms", std::to_string(report.ready_ms)}});
  return report;
}

std::optional<std::string> ApiServerRestarter::RecordedRun(
    const std::string& restart_id) const {
  if (options_.record_file.empty() || restart_id.empty()) return std::nullopt;
  absl::StatusOr<std::string> text = ReadBoundedFile(options_.record_file, kMaxRecordBytes);
  if (!text.ok()) {
    if (!absl::IsNotFound(text.status())) {
      // Running it again is what an agent without the record would do.
      Log(LogLevel::kWarn, "cannot read the kube-apiserver restart record; a restart asked "
                           "again runs again",
          {{"file", options_.record_file}, {"error", std::string(text.status().message())}});
    }
    return std::nullopt;
  }
  const size_t id_end = text->find('\n');
  if (id_end == std::string::npos) return std::nullopt;
  if (text->substr(0, id_end) == restart_id + kStartedSuffix) return kCommandStarted;
  if (text->compare(0, id_end, restart_id) != 0) return std::nullopt;
  std::string done = text->substr(id_end + 1);
  while (!done.empty() && done.back() == '\n') done.pop_back();
  return done;
}

void ApiServerRestarter::RecordStart(const std::string& restart_id) const {
  if (options_.record_file.empty() || restart_id.empty()) return;
  absl::Status s = WriteFileAtomic(options_.record_file, restart_id + kStartedSuffix + "\n", 0600);
  if (!s.ok()) {
    Log(LogLevel::kWarn, "cannot record the kube-apiserver restart command's start; if the "
                         "agent stops while it runs, asked again it runs again",
        {{"file", options_.record_file}, {"error", std::string(s.message())}});
  }
}

void ApiServerRestarter::ForgetRun(const std::string& restart_id) const {
  if (options_.record_file.empty() || restart_id.empty()) return;
  if (std::remove(options_.record_file.c_str()) != 0 && errno != ENOENT) {
    Log(LogLevel::kWarn, "cannot remove the kube-apiserver restart record; asked again, the "
                         "failed restart is reported as cut short",
        {{"file", options_.record_file}, {"error", std::strerror(errno)}});
  }
}

bool ApiServerRestarter::Running() {
  std::lock_guard lock(mu_);
  return !running_id_.empty();
}

void ApiServerRestarter::RecordRun(const std::string& restart_id,
                                   const std::string& done) const {
  if (options_.record_file.empty() || restart_id.empty()) return;
  std::string line = done;
  std::replace(line.begin(), line.end(), '\n', ' ');
  absl::Status s = WriteFileAtomic(options_.record_file, restart_id + "\n" + line + "\n", 0600);
  if (!s.ok()) {
    Log(LogLevel::kWarn, "cannot record the kube-apiserver restart; asked again after this "
                         "agent restarts, it runs again",
        {{"file", options_.record_file}, {"error", std::string(s.message())}});
  }
}

absl::Status ApiServerRestarter::RunRestart(ApiServerRestartReport& report) {
  if (options_.method == ApiServerRestartOptions::Method::kSystemd) {
    absl::Status s = seams_.services.Restart(options_.unit, options_.restart_timeout);
    if (!s.ok()) {
      const std::string why = ReasonOf(s);
      return Failed("restarting unit " + options_.unit + " failed: " +
                        std::string(s.message()) + (why.empty() ? "" : " [" + why + "]"),
                    report.method);
    }
    report.done = "restarted unit " + options_.unit;
    return absl::OkStatus();
  }
  SubprocessOptions o;  // the default cleared environment
  o.timeout = options_.restart_timeout;
  o.max_output_bytes = 64 << 10;
  absl::StatusOr<SubprocessResult> r = seams_.run({options_.command}, o);
  if (!r.ok()) {
    return Failed("cannot run " + options_.command + ": " + std::string(r.status().message()),
                  report.method);
  }
  if (r->timed_out || r->term_signal != 0 || r->exit_code != 0) {
    return Failed("restart command " + options_.command + " " + Ending(*r), report.method);
  }
  report.done = "ran " + options_.command + " (exit 0)";
  return absl::OkStatus();
}

absl::Status ApiServerRestarter::AwaitReady(ApiServerRestartReport& report) {
  const int64_t start = seams_.steady.NowSteadyMillis();
  const int64_t deadline = start + options_.ready_timeout.count();
  std::string last = "no answer yet";
  while (true) {
    ++report.readyz_attempts;
    absl::StatusOr<HttpResponse> r = seams_.get(options_.readyz, options_.http);
    if (r.ok() && r->status == 200) {
      report.ready_ms = seams_.steady.NowSteadyMillis() - start;
      return absl::OkStatus();
    }
    last = r.ok() ? "HTTP " + std::to_string(r->status) +
                        (r->body.empty() ? "" : ": " + Tail(r->body.substr(0, 2000)))
                  : std::string(r.status().message());
    const int64_t now = seams_.steady.NowSteadyMillis();
    if (now >= deadline) break;
    if (stop_waiting_.load()) {
      Log(LogLevel::kWarn, "stopped waiting for kube-apiserver: the agent is stopping",
          {{"method", report.method}, {"url", options_.readyz.ToString()}, {"last", last}});
      return MakeError(absl::StatusCode::kUnavailable, reason::kAgentStopping,
                       "the agent is stopping: it stopped waiting for kube-apiserver's " +
                           options_.readyz.ToString() + " after " + report.done +
                           " (last: " + last + "); the coordinator asks again",
                       {{"url", options_.readyz.ToString()}, {"method", report.method}});
    }
    seams_.steady.SleepFor(std::chrono::milliseconds(
        std::min<int64_t>(options_.poll_interval.count(), deadline - now)));
  }
  return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kApiServerNotReady,
                   "kube-apiserver did not answer 200 on " + options_.readyz.ToString() +
                       " within " + std::to_string(options_.ready_timeout.count()) +
                       " ms after " + report.done + " (" +
                       std::to_string(report.readyz_attempts) + " tries; last: " + last + ")",
                   {{"url", options_.readyz.ToString()}, {"method", report.method}});
}

}  // namespace kmsfleet
