// Rotation reports (rotation-plan, verify-rotation; reference §2.6). One
// table describes every known key, so the JSON and text forms cannot drift
// apart.
#include <functional>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

#include "json_util.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"
#include "report_util.h"

namespace kmsfleet {
namespace {

using internal::Quoted;
using R = RotationReport;

using Member =
    std::variant<std::string R::*, bool R::*, std::optional<bool> R::*,
                 std::optional<int64_t> R::*, std::optional<uint64_t> R::*>;

// What a string value must look like beyond being a string.
enum class Rule {
  kAny,
  kKeyIdHash,
  kMetadataStatus,
  kCheckpointStatus,
  kRotationState
};

struct Field {
  std::string_view key;
  Member member;
  bool required;
  Rule rule;
};

const Field kFields[] = {
    {"transitMetadataStatus", &R::transit_metadata_status, false,
     Rule::kMetadataStatus},
    {"transitMetadataError", &R::transit_metadata_error, false, Rule::kAny},
    {"stateLoaded", &R::state_loaded, true, Rule::kAny},
    {"stateGeneration", &R::state_generation, false, Rule::kAny},
    {"stateHash", &R::state_hash, false, Rule::kAny},
    {"stateCheckpointLoaded", &R::state_checkpoint_loaded, true, Rule::kAny},
    {"stateCheckpointStatus", &R::state_checkpoint_status, false,
     Rule::kCheckpointStatus},
    {"rotationState", &R::rotation_state, true, Rule::kRotationState},
    {"activeKeyIdHash", &R::active_key_id_hash, false, Rule::kKeyIdHash},
    {"activeTransitVersion", &R::active_transit_version, false, Rule::kAny},
    {"latestTransitVersion", &R::latest_transit_version, false, Rule::kAny},
    {"pendingKeyIdHash", &R::pending_key_id_hash, false, Rule::kKeyIdHash},
    {"pendingTransitVersion", &R::pending_transit_version, false, Rule::kAny},
    {"pendingStableObservationCount", &R::pending_stable_observation_count,
     false, Rule::kAny},
    {"pendingPromotesAfter", &R::pending_promotes_after, false, Rule::kAny},
    {"stateBootstrapEligible", &R::state_bootstrap_eligible, false, Rule::kAny},
    {"stateBootstrapReason", &R::state_bootstrap_reason, false, Rule::kAny},
};

const Field* FindField(std::string_view key) {
  for (const Field& field : kFields) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

absl::Status BadValue(std::string_view key, std::string_view value,
                      std::string_view expected) {
  return MakeError(
      absl::StatusCode::kInvalidArgument, reason::kMalformedReport,
      "rotation report key \"" + std::string(key) + "\" is " + Quoted(value) +
          ", expected " + std::string(expected),
      {{"key", std::string(key)}, {"value", internal::Excerpt(value)}});
}

// Checks `value` against the field's rule. An empty value stands for an
// absent one and is judged by the required-key check instead.
absl::Status CheckRule(const Field& field, std::string_view value) {
  if (value.empty() && !field.required) return absl::OkStatus();
  const auto one_of = [&](std::initializer_list<std::string_view> allowed,
                          std::string_view expected) {
    for (std::string_view candidate : allowed) {
      if (value == candidate) return absl::OkStatus();
    }
    return BadValue(field.key, value, expected);
  };
  switch (field.rule) {
    case Rule::kAny:
      return absl::OkStatus();
    case Rule::kKeyIdHash:
      if (internal::IsKeyIdHash(value)) return absl::OkStatus();
      return BadValue(field.key, value, "43 characters of base64url");
    case Rule::kMetadataStatus:
      return one_of({"pass", "fail"}, "pass or fail");
    case Rule::kCheckpointStatus:
      return one_of({"current", "behind", "missing", "absent"},
                    "current, behind, missing or absent");
    case Rule::kRotationState:
      return one_of({"active", "pending", "unknown"},
                    "active, pending or unknown");
  }
  return absl::OkStatus();
}

// Reads the field from a JSON object.
absl::Status ReadJsonField(const internal::JsonFields& fields,
                           const Field& field, R& report) {
  if (field.required && fields.Find(field.key) == nullptr) {
    return fields.Missing(field.key);
  }
  return std::visit(
      [&](auto member) -> absl::Status {
        using T = std::remove_reference_t<decltype(report.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          KMSFLEET_RETURN_IF_ERROR(fields.String(field.key, &(report.*member)));
          return CheckRule(field, report.*member);
        } else if constexpr (std::is_same_v<T, bool>) {
          return fields.Bool(field.key, &(report.*member));
        } else if constexpr (std::is_same_v<T, std::optional<bool>>) {
          return fields.OptionalBool(field.key, &(report.*member));
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
          return fields.Int64(field.key, &(report.*member));
        } else {
          return fields.Uint64(field.key, &(report.*member));
        }
      },
      field.member);
}

// Reads the field from the text of a `key: value` line.
absl::Status ReadTextField(const Field& field, std::string_view value,
                           R& report) {
  return std::visit(
      [&](auto member) -> absl::Status {
        using T = std::remove_reference_t<decltype(report.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          KMSFLEET_RETURN_IF_ERROR(CheckRule(field, value));
          report.*member = std::string(value);
        } else if constexpr (std::is_same_v<T, bool> ||
                             std::is_same_v<T, std::optional<bool>>) {
          if (value != "true" && value != "false") {
            return BadValue(field.key, value, "true or false");
          }
          report.*member = value == "true";
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
          report.*member = internal::ParseInt64(value, /*allow_plus=*/false);
          if (!(report.*member)) {
            return BadValue(field.key, value, "an integer in the int64 range");
          }
        } else {
          report.*member = internal::ParseUint64(value);
          if (!(report.*member)) {
            return BadValue(field.key, value, "a non-negative integer");
          }
        }
        return absl::OkStatus();
      },
      field.member);
}

absl::StatusOr<R> ParseJsonRotationReport(std::string_view output) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object object,
      internal::ParseJsonObject(output, "rotation report", kMaxReportBytes,
                                reason::kMalformedJson));
  const internal::JsonFields fields(object, "rotation report",
                                    reason::kMalformedReport);
  R report;
  KMSFLEET_RETURN_IF_ERROR(internal::RequiredName(fields, &report.name));
  for (const Field& field : kFields) {
    KMSFLEET_RETURN_IF_ERROR(ReadJsonField(fields, field, report));
  }
  return report;
}

absl::Status MalformedLine(const internal::NumberedLine& line,
                           std::string_view what) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedReport,
                   "rotation report line " + std::to_string(line.number) +
                       ": " + std::string(what) + ": " + Quoted(line.text),
                   {{"line", std::to_string(line.number)}});
}

absl::StatusOr<R> ParseTextRotationReport(std::string_view output) {
  const std::vector<internal::NumberedLine> lines =
      internal::NonBlankLines(output);
  if (lines.empty()) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kMalformedReport, "rotation report is empty");
  }
  R report;
  report.name = std::string(internal::TrimBlanks(lines[0].text));
  if (report.name.find(':') != std::string::npos) {
    return MalformedLine(lines[0], "expected the report name");
  }
  std::set<std::string_view> seen;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view text = lines[i].text;
    const size_t colon = text.find(':');
    if (colon == std::string_view::npos) {
      return MalformedLine(lines[i], "expected `key: value`");
    }
    const std::string_view key = internal::TrimBlanks(text.substr(0, colon));
    const Field* field = FindField(key);
    if (field == nullptr) continue;  // newer binaries may print more
    if (!seen.insert(field->key).second) {
      return MalformedLine(lines[i],
                           "key " + std::string(key) + " appears twice");
    }
    KMSFLEET_RETURN_IF_ERROR(ReadTextField(
        *field, internal::TrimBlanks(text.substr(colon + 1)), report));
  }
  for (const Field& field : kFields) {
    if (field.required && seen.count(field.key) == 0) {
      return MakeError(
          absl::StatusCode::kInvalidArgument, reason::kMalformedReport,
          "rotation report has no \"" + std::string(field.key) + "\" line",
          {{"key", std::string(field.key)}});
    }
  }
  return report;
}

}  // namespace

absl::StatusOr<RotationReport> ParseRotationReport(std::string_view output) {
  KMSFLEET_RETURN_IF_ERROR(
      internal::CheckReportSize(output, "rotation report"));
  if (internal::LooksLikeJson(output)) return ParseJsonRotationReport(output);
  return ParseTextRotationReport(output);
}

}  // namespace kmsfleet
