// `version`, `config` and `config schema`: print-only commands.
#include <iostream>

#include "commands.h"

namespace kmsfleet::fake {

int RunVersion(CommandContext& ctx) {
  // Exactly four lines; kmsfleet and the upstream package test parse them
  // with `sed -n 's/^version: //p'`.
  std::cout << "version: " << ctx.version.version << "\n"
            << "commit: " << ctx.version.commit << "\n"
            << "buildDate: " << ctx.version.build_date << "\n"
            << "dirty: " << (ctx.version.dirty ? "true" : "false") << "\n";
  return kExitOk;
}

int RunConfig(CommandContext& ctx) {
  int exit_code = kExitOk;
  std::optional<ProviderConfig> config = ctx.LoadConfig(&exit_code);
  if (!config) return exit_code;
  std::cout << "configVersion: " << config->config_version << "\n"
            << "socketPath: " << config->socket_path << "\n"
            << "metricsAddress: " << config->metrics_address << "\n"
            << "healthAddress: " << config->health_address << "\n"
            << "authMethod: " << config->auth_method << "\n";
  if (std::string fingerprint = config->IdentityFingerprint(); !fingerprint.empty()) {
    std::cout << "identityFingerprint: " << fingerprint << "\n";
  }
  return kExitOk;
}

int RunConfigSchema(CommandContext&) {
  // A stub of the real JSON Schema: enough for a caller that checks it is
  // JSON and pins configVersion.
  std::cout << R"({
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "bao-kms-provider configuration",
  "type": "object",
  "additionalProperties": false,
  "required": [
    "configVersion"
  ],
  "properties": {
    "configVersion": {
      "const": "v1alpha1"
    }
  }
}
)";
  return kExitOk;
}

}  // namespace kmsfleet::fake
