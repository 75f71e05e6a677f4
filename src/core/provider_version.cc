#include "kmsfleet/core/provider_version.h"

#include <algorithm>
#include <functional>
#include <set>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

// cobra's default version template: "{{.Name}} version {{.Version}}".
constexpr std::string_view kCobraPrefix = "bao-kms-provider version ";

absl::Status Malformed(std::string_view what, size_t line_number = 0,
                       std::string_view line = {}) {
  std::string message = "provider version output";
  if (line_number > 0) {
    message += " line " + std::to_string(line_number);
  }
  message += ": " + std::string(what);
  if (line_number == 0) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kMalformedVersionOutput, message);
  }
  message += ": " + internal::Quoted(line);
  return MakeError(absl::StatusCode::kInvalidArgument,
                   reason::kMalformedVersionOutput, message,
                   {{"line", std::to_string(line_number)}});
}

bool IsKnownKey(std::string_view key) {
  return key == "version" || key == "commit" || key == "buildDate" ||
         key == "dirty";
}

bool HasBlank(std::string_view text) {
  return text.find_first_of(" \t") != std::string_view::npos;
}

// Stores one known key's value; unknown keys are ignored.
absl::Status Apply(std::string_view key, std::string_view value, size_t number,
                   std::string_view line, ProviderBuild& build) {
  if (key == "version") {
    const bool printable_word = std::all_of(value.begin(), value.end(), [](char c) {
      return c > ' ' && c < 0x7F;
    });
    if (value.empty() || !printable_word) {
      return Malformed("version must be one non-empty word of printable ASCII", number,
                       line);
    }
    build.version = std::string(value);
  } else if (key == "commit") {
    // Compared and shown, never interpreted: kept, made safe for protobuf.
    build.commit = internal::ValidUtf8Text(value);
  } else if (key == "buildDate") {
    build.build_date = internal::ValidUtf8Text(value);
  } else if (key == "dirty") {
    if (value != "true" && value != "false") {
      return Malformed("dirty must be true or false", number, line);
    }
    build.dirty = value == "true";
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProviderBuild> ParseVersionOutput(std::string_view output) {
  if (output.size() > kMaxVersionOutputBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     "provider version output is " +
                         std::to_string(output.size()) +
                         " bytes, more than the limit of " +
                         std::to_string(kMaxVersionOutputBytes));
  }
  const std::vector<internal::NumberedLine> lines =
      internal::NonBlankLines(output);
  ProviderBuild build;
  if (lines.size() == 1) {
    const std::string_view only = internal::TrimBlanks(lines[0].text);
    if (only.substr(0, kCobraPrefix.size()) == kCobraPrefix) {
      const std::string_view version =
          internal::TrimBlanks(only.substr(kCobraPrefix.size()));
      KMSFLEET_RETURN_IF_ERROR(
          Apply("version", version, lines[0].number, lines[0].text, build));
      return build;
    }
  }
  std::set<std::string, std::less<>> seen;
  for (const auto& [number, line] : lines) {  // NumberedLine
    const size_t colon = line.find(':');
    const std::string_view key =
        colon == std::string_view::npos
            ? std::string_view()
            : internal::TrimBlanks(line.substr(0, colon));
    if (key.empty() || HasBlank(key)) {
      return Malformed("expected a `key: value` line", number, line);
    }
    if (IsKnownKey(key) && !seen.insert(std::string(key)).second) {
      return Malformed("key " + std::string(key) + " appears twice", number,
                       line);
    }
    const std::string_view value = internal::TrimBlanks(line.substr(colon + 1));
    KMSFLEET_RETURN_IF_ERROR(Apply(key, value, number, line, build));
  }
  if (build.version.empty()) {
    return Malformed("no `version:` line in " + internal::Quoted(output, 200));
  }
  return build;
}

}  // namespace kmsfleet
