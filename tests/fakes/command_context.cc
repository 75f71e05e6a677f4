#include "command_context.h"

#include <iostream>

namespace kmsfleet::fake {

int MapExitCode(const Scenario& scenario, ExitCode code) {
  // Before the "Unreleased CLI exit-code corrections" usage and config
  // errors exited 1 (reference §2.1).
  if (scenario.legacy_exit_codes && (code == kExitUsage || code == kExitConfig)) {
    return kExitError;
  }
  return code;
}

int CommandContext::Fail(ExitCode code, const std::string& message) {
  std::cerr << "Error: " << message << "\n";
  return MapExitCode(*scenario.Current(), code);
}

std::optional<ProviderConfig> CommandContext::LoadConfig(int* exit_code) {
  AddressOverrides overrides;
  if (args.Has("metrics-address")) overrides.metrics_address = args.Flag("metrics-address");
  if (args.Has("health-address")) overrides.health_address = args.Flag("health-address");
  std::optional<std::string> flag;
  if (args.Has("config")) flag = args.Flag("config");
  auto config = LoadProviderConfig(ResolveConfigPath(flag), overrides);
  if (!config.ok()) {
    *exit_code = Fail(kExitConfig, std::string(config.status().message()));
    return std::nullopt;
  }
  if (auto injected = scenario.Current()->config_error) {
    *exit_code = Fail(kExitConfig, "validate config " + config->path + ": " + *injected);
    return std::nullopt;
  }
  return *config;
}

std::optional<OutputFormat> CommandContext::Output(int* exit_code) {
  auto format = ParseOutputFormat(args.Flag("output", "text"));
  if (!format.ok()) {
    *exit_code = Fail(kExitUsage, std::string(format.status().message()));
    return std::nullopt;
  }
  return *format;
}

}  // namespace kmsfleet::fake
