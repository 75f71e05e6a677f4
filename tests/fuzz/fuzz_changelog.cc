// Fuzzes the CHANGELOG.md reader (changelog.h): no input crashes it, and
// every refusal has a reason.
#include "fuzz_check.h"
#include "kmsfleet/core/changelog.h"

using kmsfleet::fuzz::CheckError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kmsfleet::Changelog> log =
      kmsfleet::ParseChangelog(kmsfleet::fuzz::AsText(data, size), "CHANGELOG.md");
  if (!log.ok()) CheckError(log.status());
  return 0;
}
