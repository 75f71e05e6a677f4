// Parsers for the provider's health bodies, /ready and /live (reference §3,
// internal/health/handler.go). The HTTP status code is what decides
// readiness; the body explains it, so the parsers keep every documented
// field and ignore keys they do not know.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_HEALTH_BODY_H_
#define KMSFLEET_CORE_HEALTH_BODY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Bodies larger than this are refused; real ones are under 1 KiB.
inline constexpr size_t kMaxHealthBodyBytes = 1 << 20;

struct ReadyBody {
  std::string status;                // "ok" | "unavailable"
  std::vector<std::string> reasons;  // e.g. "status_stale"; may be empty
  std::string healthz;               // "" when omitted
  std::optional<int64_t> cache_age_ms;
  bool stale = false;                // false when omitted
  std::string rotation_state;        // "active" | "pending" | "unknown" | ""
  std::string metadata_error_class;  // "" when omitted
  std::string deep_error_class;      // "" when omitted
};

// Parses a /ready body such as
//   {"status":"ok","reasons":[],"healthz":"ok","cache_age_ms":1200,
//    "stale":false,"rotation_state":"active"}.
// `status` is required; every other key may be absent or null (`reasons`
// then reads as empty). Unknown keys are ignored.
// Errors (kInvalidArgument):
//   INPUT_TOO_LARGE: more than kMaxHealthBodyBytes;
//   MALFORMED_JSON: not a JSON object, nested deeper than 32 levels, no
//     `status`, or a known key of the wrong type (the message names the key
//     and the value; metadata {"key", "value"}).
absl::StatusOr<ReadyBody> ParseReadyBody(std::string_view json);

struct LiveBody {
  std::string status;  // "ok" | "unavailable"
};

// Parses a /live body, {"status":"ok"} or {"status":"unavailable"}, with
// the same rules and errors as ParseReadyBody.
absl::StatusOr<LiveBody> ParseLiveBody(std::string_view json);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_HEALTH_BODY_H_
