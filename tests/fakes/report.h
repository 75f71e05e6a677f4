// The generic check report of the real CLI (reference §2.1): a name and a
// list of checks with status pass|warn|fail|skip, printed as text
// (`[status] id: title - message`) or as indented JSON with `message`
// omitted when empty. Only `fail` fails the command.
// Thread-compatible: plain values.
#ifndef KMSFLEET_TESTS_FAKES_REPORT_H_
#define KMSFLEET_TESTS_FAKES_REPORT_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet::fake {

enum class CheckStatus { kPass, kWarn, kFail, kSkip };
enum class OutputFormat { kText, kJson };

struct Check {
  std::string id;
  std::string title;
  CheckStatus status = CheckStatus::kPass;
  std::string message;
};

struct Report {
  std::string name;
  std::vector<Check> checks;

  bool HasFailures() const;
  void Add(std::string_view id, std::string_view title, CheckStatus status,
           std::string message);
};

std::string_view CheckStatusName(CheckStatus status);

// Lower-cases and trims like the real --output handling.
// Errors: kInvalidArgument `unsupported output format "X": expected text or
// json` (exit 2).
absl::StatusOr<OutputFormat> ParseOutputFormat(std::string_view value);

// Both renderings end with a newline.
std::string RenderReport(const Report& report, OutputFormat format);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_REPORT_H_
