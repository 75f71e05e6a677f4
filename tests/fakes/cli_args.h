// Command-line parsing for fake-bao-kms-provider, shaped like the cobra
// command tree of the real binary (reference §2.1): persistent flags accepted
// before or after the subcommand, `--flag value` and `--flag=value`, and
// cobra's one-line error texts for unknown commands and flags.
//
// Hand-written rather than CLI11 because the point is to reproduce cobra's
// exact error strings and exit codes, which CLI11 words differently.
// Thread-compatible: plain values.
#ifndef KMSFLEET_TESTS_FAKES_CLI_ARGS_H_
#define KMSFLEET_TESTS_FAKES_CLI_ARGS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kmsfleet::fake {

struct ParsedArgs {
  // Subcommand path, e.g. {"doctor"} or {"config", "schema"}; empty for the
  // bare root command.
  std::vector<std::string> command;
  // Last value of each value flag, keyed without the leading dashes.
  std::map<std::string, std::string> flags;
  // Every --fake-set KEY=VALUE, in order (later ones win).
  std::vector<std::string> fake_sets;
  bool version_flag = false;  // root --version
  bool help = false;          // -h / --help anywhere
  // Set when the command line is invalid usage (exit 2); the fields above
  // still hold what was parsed before the error, so the scenario (which may
  // ask for legacy exit codes) can be loaded first.
  std::optional<std::string> usage_error;

  // Returns the flag's value or `fallback` when it was not given.
  std::string Flag(const std::string& name,
                   const std::string& fallback = "") const;
  bool Has(const std::string& name) const { return flags.count(name) != 0; }
};

// Parses argv[1..argc). Never fails: usage problems land in usage_error.
ParsedArgs ParseArgs(int argc, const char* const* argv);

// True when `command` names a subcommand the real binary registers
// (whether or not this fake implements it).
bool IsKnownCommand(const std::string& command);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_CLI_ARGS_H_
