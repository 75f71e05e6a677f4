#include "kmsfleet/node/preflight.h"

#include <algorithm>
#include <future>

#include "kmsfleet/core/provider_version.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/subprocess.h"

namespace kmsfleet {
namespace {

absl::StatusOr<SubprocessResult> Run(const std::string& binary,
                                     std::vector<std::string> args,
                                     const PreflightOptions& options) {
  args.insert(args.begin(), binary);
  KMSFLEET_ASSIGN_OR_RETURN(std::vector<std::string> argv,
                            AsUser(options.run_as, std::move(args)));
  SubprocessOptions sub;
  sub.timeout = options.timeout;
  sub.max_output_bytes = kMaxReportBytes;
  return RunSubprocess(argv, sub);
}

absl::Status CommandFailed(std::string_view reason_code, const std::string& what,
                           const SubprocessResult& r) {
  std::string why = r.timed_out          ? "timed out"
                    : r.term_signal != 0 ? "was killed by signal " +
                                               std::to_string(r.term_signal)
                                         : "exited " + std::to_string(r.exit_code);
  std::string err = r.stderr_text.substr(0, 512);
  return MakeError(absl::StatusCode::kFailedPrecondition, reason_code,
                   what + " " + why + (err.empty() ? "" : ": " + err),
                   {{"exit_code", std::to_string(r.exit_code)}});
}

// A failed rotation-plan (exit 4: authentication or the Transit metadata
// read failed) still prints its report; what it says there, such as
// `transitMetadataStatus: fail` and the redacted error, is the reason the
// operator needs, so it goes into the message beside the exit code.
absl::Status RotationPlanFailed(const std::string& binary, const SubprocessResult& r) {
  absl::Status failed = CommandFailed(reason::kRotationPlanUntrusted,
                                      binary + " rotation-plan", r);
  absl::StatusOr<RotationReport> report = ParseRotationReport(r.stdout_text);
  if (!report.ok() || report->transit_metadata_status.empty()) return failed;
  std::string said = "transitMetadataStatus: " + report->transit_metadata_status;
  if (!report->transit_metadata_error.empty()) {
    said += ", transitMetadataError: " + report->transit_metadata_error;
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kRotationPlanUntrusted,
                   std::string(failed.message()) + " (report: " + said + ")",
                   {{"exit_code", std::to_string(r.exit_code)},
                    {"transit_metadata_status", report->transit_metadata_status},
                    {"transit_metadata_error", report->transit_metadata_error}});
}

// Reads doctor's report from `r` (the run of `what`) into `out`: the
// checks, the warnings, and a DOCTOR_FAILED verdict naming every failed
// check. An error when there is no report to judge.
absl::Status JudgeDoctor(const std::string& what, const SubprocessResult& r,
                         PreflightResult& out) {
  if (r.timed_out || r.term_signal != 0 || r.truncated) {
    return CommandFailed(reason::kDoctorFailed, what + " doctor", r);
  }
  absl::StatusOr<CheckReport> report = ParseCheckReport(r.stdout_text);
  if (!report.ok()) {
    // Exit 2/3 and no report: the binary cannot even load the config.
    return CommandFailed(reason::kDoctorFailed, what + " doctor", r);
  }
  if (report->checks.empty()) {
    // Not a doctor report (a runner that printed something else and
    // exited 0): nothing was checked, so nothing passed.
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kDoctorFailed,
                     what + " doctor printed no checks: \"" + r.stdout_text.substr(0, 200) + "\"",
                     {{"exit_code", std::to_string(r.exit_code)}});
  }
  out.doctor = *std::move(report);
  std::string failed;
  for (const Check& c : out.doctor.checks) {
    if (c.status == CheckStatus::kFail) {
      failed += (failed.empty() ? "" : "; ") + c.id + " (" + c.title + "): " + c.message;
    } else if (c.status != CheckStatus::kPass) {
      out.warnings.push_back(c);  // skip is not a pass; report it
    }
  }
  if (!failed.empty() || r.exit_code != 0) {
    out.verdict = MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kDoctorFailed,
        "doctor of " + what + " failed: " +
            (failed.empty() ? "exit " + std::to_string(r.exit_code) : failed),
        {{"binary", what}});
  }
  return absl::OkStatus();
}

// `arg` with each {placeholder} replaced; an unknown one is an error.
absl::StatusOr<std::string> FillPlaceholders(
    const std::string& arg, const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out;
  for (size_t pos = 0; pos < arg.size();) {
    const size_t open = arg.find('{', pos);
    if (open == std::string::npos) {
      out += arg.substr(pos);
      break;
    }
    const size_t close = arg.find('}', open);
    const std::string name = arg.substr(open + 1, close == std::string::npos ? 0 : close - open - 1);
    auto it = std::find_if(values.begin(), values.end(),
                           [&](const auto& v) { return v.first == name; });
    if (close == std::string::npos || it == values.end()) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                       "\"" + arg + "\" holds an unknown placeholder; use {image}, {config} or "
                       "{encryption_config}");
    }
    out += arg.substr(pos, open - pos) + it->second;
    pos = close + 1;
  }
  return out;
}

using Placeholders = std::vector<std::pair<std::string, std::string>>;

// `command` with its placeholders filled in from `values`.
absl::StatusOr<std::vector<std::string>> FillCommand(const std::vector<std::string>& command,
                                                     const Placeholders& values) {
  if (command.empty()) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig, "is empty");
  }
  if (command.front().empty() || command.front().front() != '/') {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "must start with an absolute path, got \"" + command.front() + "\"");
  }
  std::vector<std::string> argv;
  for (const std::string& arg : command) {
    KMSFLEET_ASSIGN_OR_RETURN(std::string filled, FillPlaceholders(arg, values));
    argv.push_back(std::move(filled));
  }
  return argv;
}

}  // namespace

absl::Status CheckDoctorCommand(const std::vector<std::string>& command) {
  return FillCommand(command, {{"image", ""}, {"config", ""}, {"encryption_config", ""}})
      .status();
}

absl::StatusOr<PreflightResult> RunImageDoctor(const std::string& image,
                                               const PreflightOptions& options) {
  const Placeholders values = {
      {"image", image},
      {"config", options.provider_config},
      {"encryption_config", options.encryption_config}};
  absl::StatusOr<std::vector<std::string>> filled = FillCommand(options.doctor_command, values);
  if (!filled.ok()) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "static_pod.doctor_command " + std::string(filled.status().message()),
                     {{"key", "static_pod.doctor_command"}});
  }
  std::vector<std::string> argv = *std::move(filled);
  const std::string program = argv.front();
  argv.erase(argv.begin());
  KMSFLEET_ASSIGN_OR_RETURN(SubprocessResult r, Run(program, std::move(argv), options));
  PreflightResult out;
  KMSFLEET_RETURN_IF_ERROR(JudgeDoctor(program + " (image " + image + ")", r, out));
  return out;
}

absl::StatusOr<std::string> RunVersionOnce(const std::string& binary,
                                           const PreflightOptions& options) {
  KMSFLEET_ASSIGN_OR_RETURN(SubprocessResult r, Run(binary, {"version"}, options));
  if (r.exit_code != 0 || r.timed_out || r.term_signal != 0) {
    return CommandFailed(reason::kVersionCommandFailed, binary + " version", r);
  }
  KMSFLEET_ASSIGN_OR_RETURN(ProviderBuild build, ParseVersionOutput(r.stdout_text));
  return build.version;
}

absl::StatusOr<std::string> RunVersion(const std::string& binary,
                                       const PreflightOptions& options) {
  if (!options.memo) return RunVersionOnce(binary, options);
  return options.memo->Answer("version", {binary},
                              [&] { return RunVersionOnce(binary, options); });
}

// The fingerprint, "" when the command prints none (both depend only on
// the binary and the config file), or an error when it failed.
absl::StatusOr<std::string> RunIdentityFingerprintOnce(const std::string& binary,
                                                       const PreflightOptions& options) {
  KMSFLEET_ASSIGN_OR_RETURN(
      SubprocessResult r, Run(binary, {"config", "--config", options.provider_config}, options));
  if (r.exit_code != 0 || r.timed_out || r.term_signal != 0) {
    return CommandFailed(reason::kInvalidConfig, binary + " config", r);
  }
  constexpr std::string_view kKey = "identityFingerprint:";
  std::string_view out = r.stdout_text;
  for (size_t pos = 0; pos < out.size();) {
    size_t end = std::min(out.find('\n', pos), out.size());
    std::string_view line = out.substr(pos, end - pos);
    pos = end + 1;
    if (line.substr(0, kKey.size()) != kKey) continue;
    line.remove_prefix(kKey.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    return std::string(line);
  }
  return std::string();
}

std::string RunIdentityFingerprint(const std::string& binary,
                                   const PreflightOptions& options) {
  // `config` reads the binary and the config file only (reference §2.8).
  absl::StatusOr<std::string> fingerprint =
      options.memo ? options.memo->Answer(
                         "config", {binary, options.provider_config},
                         [&] { return RunIdentityFingerprintOnce(binary, options); })
                   : RunIdentityFingerprintOnce(binary, options);
  return fingerprint.ok() ? *std::move(fingerprint) : "";
}

absl::StatusOr<PreflightResult> RunPreflight(const std::string& binary,
                                             const std::string& expected_version,
                                             const PreflightOptions& options,
                                             const std::string& installed) {
  // The four commands only read the config, OpenBao and Transit, and do
  // not depend on each other: run together, the preflight costs the
  // slowest of them rather than their sum. They are judged below in a
  // fixed order (version, doctor, identity), so the first failure in that
  // order is the one reported, however the runs interleave.
  auto version = std::async(std::launch::async, RunVersion, binary, std::cref(options));
  auto doctor = std::async(std::launch::async, Run, binary,
                           std::vector<std::string>{"doctor", "--config", options.provider_config,
                                                    "--encryption-config",
                                                    options.encryption_config, "--output", "json"},
                           std::cref(options));
  std::future<std::string> identity_staged, identity_installed;
  if (!installed.empty()) {
    identity_staged = std::async(std::launch::async, RunIdentityFingerprint, binary,
                                 std::cref(options));
    identity_installed = std::async(std::launch::async, RunIdentityFingerprint, installed,
                                    std::cref(options));
  }
  // Every command is waited for before returning, whatever the verdict:
  // none outlives the call.
  absl::StatusOr<std::string> version_out = version.get();
  absl::StatusOr<SubprocessResult> doctor_out = doctor.get();
  std::string staged_id = identity_staged.valid() ? identity_staged.get() : "";
  std::string installed_id = identity_installed.valid() ? identity_installed.get() : "";

  PreflightResult out;
  KMSFLEET_ASSIGN_OR_RETURN(out.binary_version, std::move(version_out));
  KMSFLEET_ASSIGN_OR_RETURN(SubprocessResult r, std::move(doctor_out));
  KMSFLEET_RETURN_IF_ERROR(JudgeDoctor(binary, r, out));
  if (out.verdict.ok() && out.binary_version != expected_version) {
    out.verdict = MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kVersionMismatch,
        binary + " reports version " + out.binary_version + ", staged as " +
            expected_version,
        {{"binary", binary}, {"version", out.binary_version}});
  }
  if (!installed.empty() && out.verdict.ok()) {
    out.identity_staged = std::move(staged_id);
    out.identity_installed = std::move(installed_id);
    if (!out.identity_staged.empty() && !out.identity_installed.empty() &&
        out.identity_staged != out.identity_installed) {
      // The new binary would derive another provider identity from the
      // same config, and with it other key_ids (reference §4.2).
      out.verdict = MakeError(
          absl::StatusCode::kFailedPrecondition, reason::kIdentityChanged,
          binary + " computes config identity " + out.identity_staged + ", the installed " +
              installed + " computes " + out.identity_installed,
          {{"staged", out.identity_staged}, {"installed", out.identity_installed}});
    }
  }
  return out;
}

absl::StatusOr<RotationReport> RunRotationPlan(const std::string& binary,
                                               const PreflightOptions& options) {
  KMSFLEET_ASSIGN_OR_RETURN(
      SubprocessResult r,
      Run(binary,
          {"rotation-plan", "--config", options.provider_config, "--output", "json"},
          options));
  if (r.exit_code != 0 || r.timed_out || r.term_signal != 0) {
    return RotationPlanFailed(binary, r);
  }
  KMSFLEET_ASSIGN_OR_RETURN(RotationReport report, ParseRotationReport(r.stdout_text));
  // None at all: a binary older than the live Transit check; the executor
  // decides what to ask instead (Executor::TrustedRotationPlan).
  if (!report.transit_metadata_status.empty() && report.transit_metadata_status != "pass") {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kRotationPlanUntrusted,
                     binary + " rotation-plan reports transitMetadataStatus \"" +
                         report.transit_metadata_status + "\", not pass",
                     {{"binary", binary}});
  }
  return report;
}

}  // namespace kmsfleet
