#include "kmsfleet/core/health_body.h"

#include <utility>

#include "json_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

// Reads the `status` member every health body has.
absl::Status RequiredStatus(const internal::JsonFields& fields,
                            std::string* out) {
  if (fields.Find("status") == nullptr) return fields.Missing("status");
  return fields.String("status", out);
}

}  // namespace

absl::StatusOr<ReadyBody> ParseReadyBody(std::string_view json) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object object,
      internal::ParseJsonObject(json, "/ready body", kMaxHealthBodyBytes,
                                reason::kMalformedJson));
  const internal::JsonFields fields(object, "/ready body",
                                    reason::kMalformedJson);
  ReadyBody body;
  KMSFLEET_RETURN_IF_ERROR(RequiredStatus(fields, &body.status));
  KMSFLEET_RETURN_IF_ERROR(fields.StringArray("reasons", &body.reasons));
  KMSFLEET_RETURN_IF_ERROR(fields.String("healthz", &body.healthz));
  KMSFLEET_RETURN_IF_ERROR(fields.Int64("cache_age_ms", &body.cache_age_ms));
  KMSFLEET_RETURN_IF_ERROR(fields.Bool("stale", &body.stale));
  KMSFLEET_RETURN_IF_ERROR(
      fields.String("rotation_state", &body.rotation_state));
  KMSFLEET_RETURN_IF_ERROR(
      fields.String("metadata_error_class", &body.metadata_error_class));
  KMSFLEET_RETURN_IF_ERROR(
      fields.String("deep_error_class", &body.deep_error_class));
  return body;
}

absl::StatusOr<LiveBody> ParseLiveBody(std::string_view json) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object object,
      internal::ParseJsonObject(json, "/live body", kMaxHealthBodyBytes,
                                reason::kMalformedJson));
  const internal::JsonFields fields(object, "/live body",
                                    reason::kMalformedJson);
  LiveBody body;
  KMSFLEET_RETURN_IF_ERROR(RequiredStatus(fields, &body.status));
  return body;
}

}  // namespace kmsfleet
