// Fuzzes the operator's release compatibility policy file
// (compat_policy.h): no input crashes the YAML reader, and every refusal
// has a reason and names the file.
#include "fuzz_check.h"
#include "kmsfleet/core/compat_policy.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kmsfleet::CompatPolicy> policy =
      kmsfleet::ParseCompatPolicy(kmsfleet::fuzz::AsText(data, size), "policy.yaml");
  if (!policy.ok()) {
    CheckError(policy.status());
    Require(policy.status().message().find("policy.yaml") != std::string_view::npos);
  }
  return 0;
}
