// The provider's commands as bounded subprocesses (preflight.h).
#include "kmsfleet/node/provider_cli.h"

#include <future>

namespace kmsfleet {
namespace {

class ProcessProviderCli final : public ProviderCli {
 public:
  explicit ProcessProviderCli(PreflightOptions options) : options_(std::move(options)) {}

  // kmsfleet::ProviderCli
  absl::StatusOr<std::string> Version(const std::string& binary) override {
    return RunVersion(binary, options_);
  }
  absl::StatusOr<PreflightResult> Preflight(const std::string& binary,
                                            const std::string& expected_version,
                                            const std::string& installed) override {
    return RunPreflight(binary, expected_version, options_, installed);
  }
  absl::StatusOr<PreflightResult> PreflightImage(const std::string& image) override {
    return RunImageDoctor(image, options_);
  }
  absl::StatusOr<RotationReport> RotationPlan(const std::string& binary) override {
    return RunRotationPlan(binary, options_);
  }
  void LearnKeptAnswers(const std::string& binary) override {
    // Together: the two commands only read.
    auto version = std::async(std::launch::async, [&] { return RunVersion(binary, options_); });
    RunIdentityFingerprint(binary, options_);
    version.wait();
  }

 private:
  PreflightOptions options_;
};

}  // namespace

std::unique_ptr<ProviderCli> NewProcessProviderCli(PreflightOptions options) {
  if (!options.memo) options.memo = std::make_shared<CommandMemo>();
  return std::make_unique<ProcessProviderCli>(std::move(options));
}

}  // namespace kmsfleet
