// Fuzzes `bao-kms-provider version` output (provider_version.h). An
// accepted output, printed again in the four-line form the provider uses
// (reference §2.2), parses to the same build.
#include "fuzz_check.h"
#include "kmsfleet/core/provider_version.h"

using kmsfleet::ProviderBuild;
using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

namespace {

std::string Print(const ProviderBuild& b) {
  std::string out = "version: " + b.version + "\n";
  if (!b.commit.empty()) out += "commit: " + b.commit + "\n";
  if (!b.build_date.empty()) out += "buildDate: " + b.build_date + "\n";
  out += std::string("dirty: ") + (b.dirty ? "true" : "false") + "\n";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<ProviderBuild> build =
      kmsfleet::ParseVersionOutput(kmsfleet::fuzz::AsText(data, size));
  if (!build.ok()) {
    CheckError(build.status());
    return 0;
  }
  Require(!build->version.empty());
  for (char c : build->version) Require(c != ' ' && c != '\t' && c != '\n');
  absl::StatusOr<ProviderBuild> again = kmsfleet::ParseVersionOutput(Print(*build));
  Require(again.ok());
  Require(again->version == build->version && again->commit == build->commit &&
          again->build_date == build->build_date && again->dirty == build->dirty);
  return 0;
}
