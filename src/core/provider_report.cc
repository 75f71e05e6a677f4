// Check reports and exit codes; rotation reports are in rotation_report.cc.
#include "kmsfleet/core/provider_report.h"

#include <array>
#include <set>
#include <utility>

#include "guard_util.h"
#include "json_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"
#include "report_util.h"

namespace kmsfleet {
namespace {

using internal::Quoted;

constexpr std::array<CheckStatus, 4> kAllStatuses = {
    CheckStatus::kPass, CheckStatus::kWarn, CheckStatus::kFail,
    CheckStatus::kSkip};

absl::Status MalformedReport(const std::string& message, Metadata metadata) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedReport,
                   message, metadata);
}

bool IsCheckIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

bool IsCheckId(std::string_view id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (!IsCheckIdChar(c)) return false;
  }
  return true;
}

// Validates the id and the status text of one check, and that the id is
// new; `where` says where the check was found, for messages.
absl::Status CompleteCheck(std::string_view status_text, std::string_view where,
                           std::set<std::string, std::less<>>& seen_ids,
                           Check& check) {
  if (!IsCheckId(check.id)) {
    return MalformedReport(std::string(where) + ": check id " +
                               Quoted(check.id) +
                               " is not one or more of [A-Za-z0-9_.-]",
                           {{"check_id", internal::Excerpt(check.id)}});
  }
  std::optional<CheckStatus> status;
  for (CheckStatus candidate : kAllStatuses) {
    if (status_text == CheckStatusName(candidate)) status = candidate;
  }
  if (!status) {
    return MalformedReport(
        std::string(where) + ": check " + check.id + " has status " +
            Quoted(status_text) + ", expected pass, warn, fail or skip",
        {{"check_id", check.id}, {"value", internal::Excerpt(status_text)}});
  }
  check.status = *status;
  if (!seen_ids.insert(check.id).second) {
    return MalformedReport(
        std::string(where) + ": check " + check.id + " appears twice",
        {{"check_id", check.id}});
  }
  return absl::OkStatus();
}

absl::StatusOr<Check> ParseJsonCheck(const boost::json::value& value,
                                     size_t index,
                                     std::set<std::string, std::less<>>& seen) {
  const std::string where =
      "check report checks[" + std::to_string(index) + "]";
  if (!value.is_object()) {
    return MalformedReport(
        where + " is " + internal::JsonExcerpt(value) + ", expected an object",
        {{"index", std::to_string(index)}});
  }
  const internal::JsonFields fields(value.get_object(), where,
                                    reason::kMalformedReport);
  Check check;
  std::string status_text;
  for (auto [key, out] :
       {std::pair{"id", &check.id}, std::pair{"title", &check.title},
        std::pair{"status", &status_text}}) {
    if (fields.Find(key) == nullptr) return fields.Missing(key);
    KMSFLEET_RETURN_IF_ERROR(fields.String(key, out));
  }
  KMSFLEET_RETURN_IF_ERROR(fields.String("message", &check.message));
  KMSFLEET_RETURN_IF_ERROR(CompleteCheck(status_text, where, seen, check));
  return check;
}

absl::StatusOr<CheckReport> ParseJsonCheckReport(std::string_view output) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object object,
      internal::ParseJsonObject(output, "check report", kMaxReportBytes,
                                reason::kMalformedJson));
  const internal::JsonFields fields(object, "check report",
                                    reason::kMalformedReport);
  CheckReport report;
  KMSFLEET_RETURN_IF_ERROR(internal::RequiredName(fields, &report.name));
  const boost::json::value* checks = fields.Find("checks");
  if (checks == nullptr) return report;
  if (!checks->is_array()) {
    return fields.WrongType("checks", *checks, "an array of checks");
  }
  std::set<std::string, std::less<>> seen;
  size_t index = 0;
  for (const boost::json::value& item : checks->get_array()) {
    KMSFLEET_ASSIGN_OR_RETURN(Check check, ParseJsonCheck(item, index++, seen));
    report.checks.push_back(std::move(check));
  }
  return report;
}

// Parses `[status] id: title` or `[status] id: title - message`.
absl::StatusOr<Check> ParseTextCheck(std::string_view line, size_t number,
                                     std::set<std::string, std::less<>>& seen) {
  const std::string where = "check report line " + std::to_string(number);
  const auto malformed = [&] {
    return MalformedReport(
        where +
            ": expected `[status] id: title` or `[status] id: title - "
            "message`: " +
            Quoted(line),
        {{"line", std::to_string(number)}});
  };
  const std::string_view text = internal::TrimBlanks(line);
  const size_t close = text.find(']');
  if (text.empty() || text.front() != '[' || close == std::string_view::npos ||
      text.substr(close + 1, 1) != " ") {
    return malformed();
  }
  const std::string_view status_text = text.substr(1, close - 1);
  std::string_view rest = text.substr(close + 2);
  const size_t colon = rest.find(':');
  if (colon == std::string_view::npos) return malformed();
  Check check;
  check.id = std::string(rest.substr(0, colon));
  rest = internal::TrimBlanks(rest.substr(colon + 1));
  // Titles are fixed strings without " - "; messages may contain it, so
  // the first occurrence is the separator.
  const size_t dash = rest.find(" - ");
  // Free text from the provider goes into protobuf strings: UTF-8 only.
  check.title = internal::ValidUtf8Text(rest.substr(0, dash));
  if (dash != std::string_view::npos) {
    check.message = internal::ValidUtf8Text(rest.substr(dash + 3));
  }
  KMSFLEET_RETURN_IF_ERROR(CompleteCheck(status_text, where, seen, check));
  return check;
}

absl::StatusOr<CheckReport> ParseTextCheckReport(std::string_view output) {
  const std::vector<internal::NumberedLine> lines =
      internal::NonBlankLines(output);
  if (lines.empty()) {
    return MalformedReport("check report is empty", {});
  }
  CheckReport report;
  report.name = internal::ValidUtf8Text(internal::TrimBlanks(lines[0].text));
  if (report.name.front() == '[') {
    return MalformedReport("check report line " +
                               std::to_string(lines[0].number) +
                               ": expected the report name, found a check: " +
                               Quoted(lines[0].text),
                           {{"line", std::to_string(lines[0].number)}});
  }
  std::set<std::string, std::less<>> seen;
  for (size_t i = 1; i < lines.size(); ++i) {
    KMSFLEET_ASSIGN_OR_RETURN(
        Check check, ParseTextCheck(lines[i].text, lines[i].number, seen));
    report.checks.push_back(std::move(check));
  }
  return report;
}

}  // namespace

std::string_view CheckStatusName(CheckStatus status) {
  switch (status) {
    case CheckStatus::kPass:
      return "pass";
    case CheckStatus::kWarn:
      return "warn";
    case CheckStatus::kFail:
      return "fail";
    case CheckStatus::kSkip:
      return "skip";
  }
  return "fail";
}

bool CheckReport::HasFailures() const {
  for (const Check& check : checks) {
    if (check.status == CheckStatus::kFail) return true;
  }
  return false;
}

const Check* CheckReport::Find(std::string_view id) const {
  for (const Check& check : checks) {
    if (check.id == id) return &check;
  }
  return nullptr;
}

absl::StatusOr<CheckReport> ParseCheckReport(std::string_view output) {
  KMSFLEET_RETURN_IF_ERROR(internal::CheckReportSize(output, "check report"));
  if (internal::LooksLikeJson(output)) return ParseJsonCheckReport(output);
  return ParseTextCheckReport(output);
}

std::string_view ExitMeaningName(ExitMeaning meaning) {
  switch (meaning) {
    case ExitMeaning::kOk:
      return "ok";
    case ExitMeaning::kError:
      return "error";
    case ExitMeaning::kUsage:
      return "usage";
    case ExitMeaning::kConfig:
      return "config";
    case ExitMeaning::kCheckFailed:
      return "check_failed";
    case ExitMeaning::kRuntime:
      return "runtime";
    case ExitMeaning::kUnknown:
      return "unknown";
  }
  return "unknown";
}

ExitMeaning ClassifyExit(int exit_code, std::string_view stderr_text) {
  switch (exit_code) {
    case 0:
      return ExitMeaning::kOk;
    case 1:
      break;
    case 2:
      return ExitMeaning::kUsage;
    case 3:
      return ExitMeaning::kConfig;
    case 4:
      return ExitMeaning::kCheckFailed;
    case 5:
      return ExitMeaning::kRuntime;
    default:
      return ExitMeaning::kUnknown;
  }
  // Usage first: a usage message may quote a flag such as --config.
  static constexpr std::string_view kUsageMarkers[] = {
      "unknown command",        "unknown flag",
      "unknown shorthand flag", "unsupported output format",
      "invalid argument",       "flag needs an argument",
      "required flag",          "arg(s)",
      "unexpected argument"};
  static constexpr std::string_view kConfigMarkers[] = {
      "load config",       "loading config",  "config load",
      "config validation", "validate config", "validating config",
      "invalid config",    "parse config",    "parsing config",
      "read config",       "reading config",  "configuration",
      "configversion",     "config file"};
  const std::string lower = internal::AsciiLower(stderr_text);
  for (std::string_view marker : kUsageMarkers) {
    if (lower.find(marker) != std::string::npos) return ExitMeaning::kUsage;
  }
  for (std::string_view marker : kConfigMarkers) {
    if (lower.find(marker) != std::string::npos) return ExitMeaning::kConfig;
  }
  return ExitMeaning::kError;
}

std::string RotationUnderWayWhy(const RotationReport& report) {
  if (report.rotation_state != "active") {
    return "rotationState " + internal::ValueOrNone(report.rotation_state);
  }
  if (!report.pending_key_id_hash.empty()) return "pending key " + report.pending_key_id_hash;
  if (report.pending_transit_version) {
    return "pending Transit version " + std::to_string(*report.pending_transit_version);
  }
  if (report.active_transit_version && report.latest_transit_version &&
      *report.latest_transit_version > *report.active_transit_version) {
    return "latest Transit version " + std::to_string(*report.latest_transit_version) +
           " above the active " + std::to_string(*report.active_transit_version);
  }
  return "";
}

std::string CheckpointNotCurrentWhy(const RotationReport& report) {
  const std::string& status = report.state_checkpoint_status;
  if (status.empty() || status == "current") return "";
  return "stateCheckpointStatus " + status;
}

}  // namespace kmsfleet
