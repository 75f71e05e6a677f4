#include "report.h"

#include <algorithm>
#include <cctype>

#include <boost/json.hpp>

#include "json_pretty.h"

namespace kmsfleet::fake {

bool Report::HasFailures() const {
  return std::any_of(checks.begin(), checks.end(), [](const Check& check) {
    return check.status == CheckStatus::kFail;
  });
}

void Report::Add(std::string_view id, std::string_view title,
                 CheckStatus status, std::string message) {
  checks.push_back(
      {std::string(id), std::string(title), status, std::move(message)});
}

std::string_view CheckStatusName(CheckStatus status) {
  switch (status) {
    case CheckStatus::kPass: return "pass";
    case CheckStatus::kWarn: return "warn";
    case CheckStatus::kFail: return "fail";
    case CheckStatus::kSkip: return "skip";
  }
  return "fail";  // unreachable: the switch covers the enum
}

absl::StatusOr<OutputFormat> ParseOutputFormat(std::string_view value) {
  std::string normal;
  for (char c : value) {
    if (!std::isspace(static_cast<unsigned char>(c))) {
      normal += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  if (normal == "text") return OutputFormat::kText;
  if (normal == "json") return OutputFormat::kJson;
  return absl::InvalidArgumentError("unsupported output format \"" +
                                    std::string(value) +
                                    "\": expected text or json");
}

std::string RenderReport(const Report& report, OutputFormat format) {
  if (format == OutputFormat::kText) {
    std::string out = report.name + "\n";
    for (const Check& check : report.checks) {
      out += "[" + std::string(CheckStatusName(check.status)) + "] " + check.id +
             ": " + check.title;
      if (!check.message.empty()) out += " - " + check.message;
      out += "\n";
    }
    return out;
  }
  boost::json::array checks;
  for (const Check& check : report.checks) {
    boost::json::object item;
    item["id"] = check.id;
    item["title"] = check.title;
    item["status"] = CheckStatusName(check.status);
    if (!check.message.empty()) item["message"] = check.message;
    checks.push_back(std::move(item));
  }
  boost::json::object root;
  root["name"] = report.name;
  root["checks"] = std::move(checks);
  return PrettyJson(root) + "\n";
}

}  // namespace kmsfleet::fake
