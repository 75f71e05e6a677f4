#include "report_util.h"

#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::internal {

absl::Status CheckReportSize(std::string_view output, std::string_view what) {
  if (output.size() <= kMaxReportBytes) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                   std::string(what) + " is " + std::to_string(output.size()) +
                       " bytes, more than the limit of " +
                       std::to_string(kMaxReportBytes),
                   {{"size_bytes", std::to_string(output.size())},
                    {"limit_bytes", std::to_string(kMaxReportBytes)}});
}

bool LooksLikeJson(std::string_view output) {
  const size_t first = output.find_first_not_of(" \t\r\n");
  return first != std::string_view::npos && output[first] == '{';
}

absl::Status RequiredName(const JsonFields& fields, std::string* out) {
  const boost::json::value* name = fields.Find("name");
  if (name == nullptr) return fields.Missing("name");
  if (!name->is_string() || name->get_string().empty()) {
    return fields.WrongType("name", *name, "a non-empty string");
  }
  *out = std::string(name->get_string().data(), name->get_string().size());
  return absl::OkStatus();
}

}  // namespace kmsfleet::internal
