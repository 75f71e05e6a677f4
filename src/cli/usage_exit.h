// How kmsfleetctl and kmsfleetd end on a command line CLI11 refuses: exit
// 2, the documented usage error, not CLI11's own codes (105 to 114, which
// a script cannot tell from a command's result); --help and --version
// still exit 0.
#ifndef KMSFLEET_CLI_USAGE_EXIT_H_
#define KMSFLEET_CLI_USAGE_EXIT_H_

#include <CLI/CLI.hpp>
#include <optional>

namespace kmsfleet {

inline constexpr int kUsageExitCode = 2;

// Parses `argv` into `app`. Returns nullopt to go on, or the exit code,
// after CLI11 printed the help, the version or the error.
inline std::optional<int> ParseCommandLine(CLI::App& app, int argc, const char* const* argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int printed = app.exit(e);
    return printed == 0 ? 0 : kUsageExitCode;
  }
  return std::nullopt;
}

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_USAGE_EXIT_H_
