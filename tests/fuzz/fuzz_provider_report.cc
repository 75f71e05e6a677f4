// Fuzzes the report-style output of `doctor`, `probe`, `verify-key`,
// `rotation-plan` and `verify-rotation` (provider_report.h), JSON and
// text. A check report, written back as JSON, parses to the same checks.
#include <boost/json.hpp>
#include <set>

#include "fuzz_check.h"
#include "kmsfleet/core/provider_report.h"

using kmsfleet::CheckReport;
using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

namespace {

std::string AsJson(const CheckReport& r) {
  boost::json::array checks;
  for (const kmsfleet::Check& c : r.checks) {
    boost::json::object o{{"id", c.id},
                          {"title", c.title},
                          {"status", std::string(kmsfleet::CheckStatusName(c.status))}};
    if (!c.message.empty()) o["message"] = c.message;
    checks.push_back(std::move(o));
  }
  return boost::json::serialize(boost::json::object{{"name", r.name}, {"checks", checks}});
}

void CheckReportProperties(const CheckReport& r) {
  std::set<std::string> ids;
  for (const kmsfleet::Check& c : r.checks) {
    Require(!c.id.empty() && ids.insert(c.id).second);
  }
  absl::StatusOr<CheckReport> again = kmsfleet::ParseCheckReport(AsJson(r));
  Require(again.ok() && again->name == r.name && again->checks.size() == r.checks.size());
  for (size_t i = 0; i < r.checks.size(); ++i) {
    const kmsfleet::Check& a = r.checks[i];
    const kmsfleet::Check& b = again->checks[i];
    Require(a.id == b.id && a.title == b.title && a.status == b.status &&
            a.message == b.message);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<CheckReport> report = kmsfleet::ParseCheckReport(text);
  if (report.ok()) {
    CheckReportProperties(*report);
  } else {
    CheckError(report.status());
  }
  absl::StatusOr<kmsfleet::RotationReport> rotation = kmsfleet::ParseRotationReport(text);
  if (!rotation.ok()) CheckError(rotation.status());
  return 0;
}
