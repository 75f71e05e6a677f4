// The provider facts kmsfleet reads from one /metrics scrape (reference
// §3.1, §3.2): the active key_id hash, the build version, the rotation
// state, the Transit key version and the decrypt error counters. Series this
// module does not know are ignored, so newer providers can add metrics.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PROVIDER_METRICS_H_
#define KMSFLEET_CORE_PROVIDER_METRICS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/prometheus_text.h"

namespace kmsfleet {

// Metric names, as the provider exports them.
inline constexpr char kKeyIdHashMetric[] = "openbao_kms_status_key_id_hash";
inline constexpr char kBuildInfoMetric[] = "openbao_kms_build_info";
inline constexpr char kRotationStateMetric[] = "openbao_kms_rotation_state";
inline constexpr char kKeyVersionMetric[] = "openbao_kms_key_version";
inline constexpr char kDecryptKeyIdErrorsMetric[] =
    "openbao_kms_decrypt_key_id_errors_total";
inline constexpr char kAadValidationErrorsMetric[] =
    "openbao_kms_aad_validation_errors_total";

struct ProviderMetrics {
  // OK, with key_id_hash set, when exactly one
  // openbao_kms_status_key_id_hash{hash} series has value 1. Otherwise:
  //   kUnavailable, KEY_ID_HASH_MISSING: no series has value 1 (the provider
  //     exports none until its registry state is loaded, so asking again
  //     later may succeed);
  //   kFailedPrecondition, KEY_ID_HASH_AMBIGUOUS: several do; the message
  //     lists the hashes (metadata {"hashes": "a,b"}).
  absl::Status key_id_hash_status;
  std::string key_id_hash;  // 43-char base64url; "" unless the status is OK
  // openbao_kms_build_info{version} of the series with value 1; nullopt on
  // providers older than 0.1.0-preview.3, which do not export it.
  std::optional<std::string> build_version;
  // Label `state` of the openbao_kms_rotation_state series with value 1:
  // "active", "pending" or "unknown" (or a newer state, verbatim); "" when
  // no series has value 1.
  std::string rotation_state;
  // openbao_kms_key_version: the Transit version used for new encryptions
  // (0 if none); nullopt when the series is absent.
  std::optional<int64_t> key_version;
  // Sums over all `reason` series; nullopt when the metric has no series.
  std::optional<double> decrypt_key_id_errors_total;
  std::optional<double> aad_validation_errors_total;
};

// Parses `exposition` (see ParseExposition) and extracts the facts above.
//
// Errors (kInvalidArgument):
//   any error of ParseExposition (MALFORMED_EXPOSITION, DUPLICATE_SERIES,
//     INPUT_TOO_LARGE);
//   MALFORMED_EXPOSITION when a known series cannot be interpreted: a
//     key_id hash series without a 43-character base64url `hash` label, or
//     with a value other than 0 or 1; a build_info series at 1 without a
//     `version` label, or two at 1 with different versions; a rotation_state
//     series without a `state` label, or several at 1; a key version that is
//     not a finite non-negative integer, or more than one key version
//     series; an error counter that is negative or not finite. The message
//     names the series and the value.
// A missing or ambiguous key_id hash is not an error of this function: it
// is reported in key_id_hash_status, so the other facts stay usable.
absl::StatusOr<ProviderMetrics> ExtractProviderMetrics(
    std::string_view exposition, const ExpositionLimits& limits = {});

// Like ExtractProviderMetrics, over samples that are already parsed.
absl::StatusOr<ProviderMetrics> ExtractProviderMetricsFromSamples(
    const std::vector<Sample>& samples);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PROVIDER_METRICS_H_
