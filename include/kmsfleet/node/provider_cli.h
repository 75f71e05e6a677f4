// The provider's own commands the executor runs (reference §2): `version`,
// `doctor` with `config` (the preflight), and `rotation-plan`. The real one
// runs them as bounded subprocesses (preflight.h); tests answer from a
// script.
// Thread-safe: the real one keeps only answers that depend on nothing but
// unchanged files (command_memo.h).
#ifndef KMSFLEET_NODE_PROVIDER_CLI_H_
#define KMSFLEET_NODE_PROVIDER_CLI_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/node/preflight.h"

namespace kmsfleet {

class ProviderCli {
 public:
  virtual ~ProviderCli() = default;
  // `<binary> version`. Errors as RunVersion.
  virtual absl::StatusOr<std::string> Version(const std::string& binary) = 0;
  // Preflight of `binary` as `expected_version` beside `installed`, as
  // RunPreflight: a failing check is a verdict, not an error.
  virtual absl::StatusOr<PreflightResult> Preflight(
      const std::string& binary, const std::string& expected_version,
      const std::string& installed) = 0;
  // doctor run from `image` by the configured command, as RunImageDoctor.
  virtual absl::StatusOr<PreflightResult> PreflightImage(const std::string& image) = 0;
  // `<binary> rotation-plan`, as RunRotationPlan.
  virtual absl::StatusOr<RotationReport> RotationPlan(const std::string& binary) = 0;
  // Asks `binary`'s commands whose answers are kept (command_memo.h:
  // `version`, and `config` of the provider's config) ahead of need, so
  // that a later preflight or swap finds them. Nothing is reported; a
  // failure is asked again when needed. No-op without a memo.
  virtual void LearnKeptAnswers(const std::string& binary) { (void)binary; }
};

// With a CommandMemo of its own unless `options.memo` is set.
std::unique_ptr<ProviderCli> NewProcessProviderCli(PreflightOptions options);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_PROVIDER_CLI_H_
