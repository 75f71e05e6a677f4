// Fuzzes the reader of the provider's config.yaml (provider_config.h):
// what it accepts has absolute paths and an http(s) OpenBao address, and
// every refusal names the file.
#include "fuzz_check.h"
#include "kmsfleet/core/provider_config.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kmsfleet::ProviderConfigFacts> facts =
      kmsfleet::ParseProviderConfig(kmsfleet::fuzz::AsText(data, size), "config.yaml");
  if (!facts.ok()) {
    CheckError(facts.status());
    Require(kmsfleet::MetadataOf(facts.status(), "file") == "config.yaml");
    return 0;
  }
  Require(facts->state_path.empty() || facts->state_path.front() == '/');
  Require(facts->openbao_ca_cert_file.empty() || facts->openbao_ca_cert_file.front() == '/');
  const std::string& a = facts->openbao_address;
  Require(a.empty() || a.rfind("http://", 0) == 0 || a.rfind("https://", 0) == 0);
  return 0;
}
