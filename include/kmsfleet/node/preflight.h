// Preflight of a staged provider binary (architecture.md §4 "Preflight";
// reference §2.2, §2.3, §2.6): `doctor`, `version` and, with the installed
// binary, `rotation-plan`, each as a bounded subprocess with a cleared
// environment, optionally as the provider's OS user.
// Thread-safe: free functions.
#ifndef KMSFLEET_NODE_PREFLIGHT_H_
#define KMSFLEET_NODE_PREFLIGHT_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/node/command_memo.h"

namespace kmsfleet {

struct PreflightOptions {
  std::string provider_config;
  std::string encryption_config;
  std::chrono::milliseconds timeout{30000};
  // When set, commands run as this user via setpriv (the provider's
  // `openbao-kms` user), so file permissions are checked as it sees them.
  std::string run_as;
  // Static-pod nodes (issue 10), optional: doctor run from the image
  // itself, e.g. through `ctr run` or `crictl`. An argv (no shell) whose
  // arguments may hold {image}, {config} and {encryption_config}; it must
  // print doctor's JSON report (`--output json`). Empty: doctor runs the
  // static-pod kit's binary.
  std::vector<std::string> doctor_command;
  // When set, `version` and `config` answers are reused for files that
  // have not changed since they gave them (command_memo.h). Shared by
  // copies of these options.
  std::shared_ptr<CommandMemo> memo;
};

struct PreflightResult {
  std::string binary_version;  // from `<binary> version`
  CheckReport doctor;
  std::vector<Check> warnings;  // warn and skip checks, reported
  // `config` identityFingerprint of the staged and the installed binary;
  // "" when a binary does not print one (then nothing is compared).
  std::string identity_staged, identity_installed;
  // OK, or DOCTOR_FAILED naming every failed check's id, title and message,
  // or VERSION_MISMATCH when the binary is not the version it was staged as,
  // or IDENTITY_FINGERPRINT_CHANGED when both binaries print a config
  // identity fingerprint and they differ (architecture.md §4).
  absl::Status verdict;
};

// Runs `<binary> version` and `<binary> doctor --config C
// --encryption-config E --output json`, and `config --config C` with both
// `binary` and `installed` (skipped when `installed` is ""). An error
// return means a command could not run or its output did not parse; a
// failing check is a verdict.
absl::StatusOr<PreflightResult> RunPreflight(const std::string& binary,
                                             const std::string& expected_version,
                                             const PreflightOptions& options,
                                             const std::string& installed = "");

// Checks a doctor command (PreflightOptions::doctor_command): not empty,
// starting with an absolute path, holding no placeholder but {image},
// {config} and {encryption_config}. Errors: INVALID_CONFIG, its message
// naming the offending argument (the caller names the key).
absl::Status CheckDoctorCommand(const std::vector<std::string>& command);

// doctor from an image: `options.doctor_command` with its placeholders
// filled in (`image` for {image}), judged as RunPreflight judges doctor.
// There is no `version` to compare: the image's digest is the release.
// Errors: INVALID_CONFIG when the command is empty or names an unknown
// {placeholder}; DOCTOR_FAILED when it cannot run or prints no report.
absl::StatusOr<PreflightResult> RunImageDoctor(const std::string& image,
                                               const PreflightOptions& options);

// The identityFingerprint line of `<binary> config --config C`, or "" when
// the command fails or prints none (older binaries, incomplete identity).
std::string RunIdentityFingerprint(const std::string& binary,
                                   const PreflightOptions& options);

// `<binary> version`, parsed. Errors: VERSION_COMMAND_FAILED,
// MALFORMED_VERSION_OUTPUT.
absl::StatusOr<std::string> RunVersion(const std::string& binary,
                                       const PreflightOptions& options);

// `<binary> rotation-plan --config C --output json`: the report when it
// exits 0 and reports transitMetadataStatus pass, or none at all (a binary
// older than the live Transit check, reference §2.6, whose report is of
// the local registry only: see Executor::TrustedRotationPlan); otherwise
// FailedPrecondition, ROTATION_PLAN_UNTRUSTED.
absl::StatusOr<RotationReport> RunRotationPlan(const std::string& binary,
                                               const PreflightOptions& options);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_PREFLIGHT_H_
