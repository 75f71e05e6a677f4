#include "provider_main.h"

#include <cstdlib>
#include <iostream>

#include "cli_args.h"
#include "commands.h"

namespace kmsfleet::fake {
namespace {

constexpr char kUsage[] = R"(bao-kms-provider (fake) - Kubernetes KMS v2 plugin test double

Usage:
  bao-kms-provider [command]

Available Commands:
  config           Print the configuration summary
  doctor           Run pre-flight diagnostics
  probe            Probe a running provider over its socket
  rotation-plan    Report local rotation state
  serve            Serve the KMS v2 API
  verify-key       Verify the Transit key and registry state
  verify-rotation  Report rotation convergence
  version          Print version information

Flags:
      --config string            configuration file
      --health-address string    override server.healthAddress
      --log-level string         override logging.level
      --metrics-address string   override server.metricsAddress
      --version                  version for bao-kms-provider
  fake-only:
      --fake-version string      pretend to be this release
      --scenario string          scenario YAML file (see README.md)
      --fake-set KEY=VALUE       override one scenario key (repeatable)
)";

int Dispatch(CommandContext& ctx, char** argv, GrpcCommandRunner run_grpc_command) {
  const ParsedArgs& args = ctx.args;
  if (args.version_flag) {
    std::cout << "bao-kms-provider version " << ctx.version.version << "\n";
    return kExitOk;
  }
  if (args.help || args.command.empty() || args.command.front() == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  const std::string& name = args.command.front();
  if (name == "version") return RunVersion(ctx);
  if (name == "config") {
    return args.command.size() > 1 ? RunConfigSchema(ctx) : RunConfig(ctx);
  }
  if (name == "doctor") return RunDoctor(ctx);
  if (name == "verify-key") return RunVerifyKey(ctx);
  if (name == "rotation-plan") return RunRotationPlan(ctx, false);
  if (name == "verify-rotation") return RunRotationPlan(ctx, true);
  if (name == "probe" || name == "serve") return run_grpc_command(ctx, argv);
  return ctx.Fail(kExitError, "the fake does not implement \"" + name + "\"");
}

}  // namespace

int ProviderMain(int argc, char** argv, GrpcCommandRunner run_grpc_command) {
  ParsedArgs args = ParseArgs(argc, argv);
  std::string scenario_path = args.Flag("scenario");
  if (!args.Has("scenario")) {
    if (const char* env = std::getenv(kScenarioEnv)) scenario_path = env;
  }
  // The scenario loads before usage errors are reported because it decides
  // whether they exit 2 or the legacy 1.
  auto scenario = ScenarioSource::Open(scenario_path, args.fake_sets);
  if (!scenario.ok()) {
    std::cerr << "Error: " << scenario.status().message() << "\n";
    return kExitConfig;
  }
  std::optional<std::string> fake_version;
  if (args.Has("fake-version")) fake_version = args.Flag("fake-version");
  CommandContext ctx{args, ResolveVersion(fake_version), **scenario};
  if (args.usage_error) return ctx.Fail(kExitUsage, *args.usage_error);
  return Dispatch(ctx, argv, run_grpc_command);
}

}  // namespace kmsfleet::fake
