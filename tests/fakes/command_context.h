// What every subcommand receives, the real binary's exit codes (reference
// §2.1, internal/cli/exit.go) and the one place errors are printed, so the
// legacy exit-code mapping cannot be forgotten by a single command.
// Single-threaded: used by the command's main thread.
#ifndef KMSFLEET_TESTS_FAKES_COMMAND_CONTEXT_H_
#define KMSFLEET_TESTS_FAKES_COMMAND_CONTEXT_H_

#include <string>

#include "absl/status/statusor.h"
#include "cli_args.h"
#include "provider_config.h"
#include "report.h"
#include "scenario.h"
#include "version_info.h"

namespace kmsfleet::fake {

// Process exit codes; values are the upstream contract, never renumber.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,
  kExitUsage = 2,
  kExitConfig = 3,
  kExitCheckFailed = 4,
  kExitRuntime = 5,
};

struct CommandContext {
  const ParsedArgs& args;
  VersionInfo version;
  ScenarioSource& scenario;

  // Prints "Error: <message>" to stderr and returns the exit code, mapping 2
  // and 3 to 1 when the scenario asks for pre-"Unreleased" exit codes.
  int Fail(ExitCode code, const std::string& message);

  // Loads --config (with scenario config_error applied). On failure prints
  // the error and stores the exit code in *exit_code.
  std::optional<ProviderConfig> LoadConfig(int* exit_code);

  // Parses --output; on failure prints the usage error and stores the exit
  // code in *exit_code.
  std::optional<OutputFormat> Output(int* exit_code);
};

// Returns the ExitCode as the current scenario would see it (legacy: 2/3->1).
int MapExitCode(const Scenario& scenario, ExitCode code);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_COMMAND_CONTEXT_H_
