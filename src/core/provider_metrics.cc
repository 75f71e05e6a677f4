#include "kmsfleet/core/provider_metrics.h"

#include <cmath>
#include <utility>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

using internal::FormatDouble;

// A known series whose content cannot be interpreted.
absl::Status MalformedSeries(const Sample& sample, std::string_view what) {
  const std::string series = internal::Excerpt(SeriesToString(sample), 200);
  const std::string value = FormatDouble(sample.value);
  return MakeError(absl::StatusCode::kInvalidArgument,
                   reason::kMalformedExposition,
                   "metrics series " + series + " with value " + value + ": " +
                       std::string(what),
                   {{"series", series}, {"value", value}});
}

// Gauges that flag one member of a set are 0 or 1; anything else means we
// do not understand the provider, which is worth stopping for.
absl::Status RequireZeroOrOne(const Sample& sample) {
  if (sample.value == 0 || sample.value == 1) return absl::OkStatus();
  return MalformedSeries(sample, "expected 0 or 1");
}

// Collects facts sample by sample. Single use.
class Extractor {
 public:
  absl::Status Observe(const Sample& sample);
  ProviderMetrics Finish() &&;

 private:
  absl::Status ObserveKeyIdHash(const Sample& sample);
  absl::Status ObserveBuildInfo(const Sample& sample);
  absl::Status ObserveRotationState(const Sample& sample);
  absl::Status ObserveKeyVersion(const Sample& sample);
  static absl::Status AddToCounter(const Sample& sample,
                                   std::optional<double>& total);

  ProviderMetrics facts_;
  std::vector<std::string> active_hashes_;
};

absl::Status Extractor::Observe(const Sample& sample) {
  const std::string& name = sample.name;
  if (name == kKeyIdHashMetric) return ObserveKeyIdHash(sample);
  if (name == kBuildInfoMetric) return ObserveBuildInfo(sample);
  if (name == kRotationStateMetric) return ObserveRotationState(sample);
  if (name == kKeyVersionMetric) return ObserveKeyVersion(sample);
  if (name == kDecryptKeyIdErrorsMetric) {
    return AddToCounter(sample, facts_.decrypt_key_id_errors_total);
  }
  if (name == kAadValidationErrorsMetric) {
    return AddToCounter(sample, facts_.aad_validation_errors_total);
  }
  return absl::OkStatus();
}

absl::Status Extractor::ObserveKeyIdHash(const Sample& sample) {
  const std::string* hash = sample.FindLabel("hash");
  if (hash == nullptr) return MalformedSeries(sample, "has no hash label");
  if (!internal::IsKeyIdHash(*hash)) {
    return MalformedSeries(sample, "hash label " + internal::Quoted(*hash) +
                                       " is not 43 characters of base64url");
  }
  KMSFLEET_RETURN_IF_ERROR(RequireZeroOrOne(sample));
  if (sample.value == 1) active_hashes_.push_back(*hash);
  return absl::OkStatus();
}

absl::Status Extractor::ObserveBuildInfo(const Sample& sample) {
  // Info metrics are 1 for the running binary; a 0 series says nothing.
  if (sample.value != 1) return absl::OkStatus();
  const std::string* version = sample.FindLabel("version");
  if (version == nullptr || version->empty()) {
    return MalformedSeries(sample, "has no version label");
  }
  if (facts_.build_version && *facts_.build_version != *version) {
    return MalformedSeries(sample,
                           "a second build_info series at 1 (the "
                           "other has version " +
                               internal::Quoted(*facts_.build_version) + ")");
  }
  facts_.build_version = *version;
  return absl::OkStatus();
}

absl::Status Extractor::ObserveRotationState(const Sample& sample) {
  const std::string* state = sample.FindLabel("state");
  if (state == nullptr) return MalformedSeries(sample, "has no state label");
  KMSFLEET_RETURN_IF_ERROR(RequireZeroOrOne(sample));
  if (sample.value != 1) return absl::OkStatus();
  if (!facts_.rotation_state.empty()) {
    return MalformedSeries(sample, "state " +
                                       internal::Quoted(facts_.rotation_state) +
                                       " is also 1; exactly one state may be");
  }
  if (state->empty())
    return MalformedSeries(sample, "has an empty state label");
  facts_.rotation_state = *state;
  return absl::OkStatus();
}

absl::Status Extractor::ObserveKeyVersion(const Sample& sample) {
  if (facts_.key_version) {
    return MalformedSeries(sample, "is a second key version series");
  }
  // 2^63: doubles at or above it do not fit an int64_t.
  constexpr double kInt64Limit = 9223372036854775808.0;
  const double value = sample.value;
  if (!std::isfinite(value) || value < 0 || value >= kInt64Limit ||
      std::floor(value) != value) {
    return MalformedSeries(sample, "expected a non-negative integer");
  }
  facts_.key_version = static_cast<int64_t>(value);
  return absl::OkStatus();
}

absl::Status Extractor::AddToCounter(const Sample& sample,
                                     std::optional<double>& total) {
  if (!std::isfinite(sample.value) || sample.value < 0) {
    return MalformedSeries(sample, "a counter must be finite and >= 0");
  }
  total = total.value_or(0) + sample.value;
  return absl::OkStatus();
}

ProviderMetrics Extractor::Finish() && {
  if (active_hashes_.size() == 1) {
    facts_.key_id_hash = active_hashes_.front();
    facts_.key_id_hash_status = absl::OkStatus();
  } else if (active_hashes_.empty()) {
    facts_.key_id_hash_status = MakeError(
        absl::StatusCode::kUnavailable, reason::kKeyIdHashMissing,
        std::string("no ") + kKeyIdHashMetric +
            " series has value 1: the provider reports no active key_id; it "
            "exports one once its registry state is loaded, so retry, and "
            "check `rotation-plan` if it persists");
  } else {
    std::string hashes;
    for (const std::string& hash : active_hashes_) {
      if (!hashes.empty()) hashes += ",";
      hashes += hash;
    }
    facts_.key_id_hash_status = MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kKeyIdHashAmbiguous,
        std::to_string(active_hashes_.size()) + " " + kKeyIdHashMetric +
            " series have value 1 (" + hashes +
            "); a provider has exactly one active key_id, so stop and "
            "compare `rotation-plan` on this node with its peers",
        {{"hashes", hashes}});
  }
  return std::move(facts_);
}

}  // namespace

absl::StatusOr<ProviderMetrics> ExtractProviderMetricsFromSamples(
    const std::vector<Sample>& samples) {
  Extractor extractor;
  for (const Sample& sample : samples) {
    KMSFLEET_RETURN_IF_ERROR(extractor.Observe(sample));
  }
  return std::move(extractor).Finish();
}

absl::StatusOr<ProviderMetrics> ExtractProviderMetrics(
    std::string_view exposition, const ExpositionLimits& limits) {
  KMSFLEET_ASSIGN_OR_RETURN(std::vector<Sample> samples,
                            ParseExposition(exposition, limits));
  return ExtractProviderMetricsFromSamples(samples);
}

}  // namespace kmsfleet
