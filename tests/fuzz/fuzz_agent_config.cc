// Fuzzes kmsfleetd's strict YAML config (agent_config.h): no input
// crashes the reader (yaml-cpp's exceptions stop inside it), and every
// refusal names the file.
#include "daemon/agent_config.h"
#include "fuzz_check.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kmsfleet::AgentConfig> config =
      kmsfleet::ParseAgentConfig(kmsfleet::fuzz::AsText(data, size), "kmsfleet.yaml");
  if (!config.ok()) {
    CheckError(config.status());
    Require(kmsfleet::MetadataOf(config.status(), "file") == "kmsfleet.yaml");
    return 0;
  }
  Require(!config->node.empty());
  return 0;
}
