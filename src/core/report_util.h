// Helpers shared by the check-report and rotation-report parsers (not a
// public header).
// Thread-safe: free functions over values.
#ifndef KMSFLEET_SRC_CORE_REPORT_UTIL_H_
#define KMSFLEET_SRC_CORE_REPORT_UTIL_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "json_util.h"

namespace kmsfleet::internal {

// INPUT_TOO_LARGE (kInvalidArgument) when `output` exceeds kMaxReportBytes.
absl::Status CheckReportSize(std::string_view output, std::string_view what);

// True when the first byte that is not whitespace is '{': the provider
// printed its JSON form.
bool LooksLikeJson(std::string_view output);

// Reads the required, non-empty string member "name" of a report.
absl::Status RequiredName(const JsonFields& fields, std::string* out);

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_CORE_REPORT_UTIL_H_
