// Fuzzes the Prometheus text parser and the provider-metrics extraction
// (prometheus_text.h, provider_metrics.h) with arbitrary bytes. Besides
// crashes and sanitizer reports, it traps when:
//   - an error has no reason, or a message that is not printable ASCII
//     (messages travel in protobuf strings and logs);
//   - parsed samples, written back in the text format, do not parse to the
//     same samples.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "kmsfleet/core/prometheus_text.h"
#include "kmsfleet/core/provider_metrics.h"
#include "kmsfleet/core/status.h"

namespace {

using kmsfleet::Sample;

void Require(bool condition) {
  if (!condition) __builtin_trap();
}

void CheckError(const absl::Status& status) {
  Require(!kmsfleet::ReasonOf(status).empty());
  for (char c : status.message()) Require(c >= 0x20 && c < 0x7F);
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[40];
  // 17 significant digits read back as the same double.
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

std::string Write(const std::vector<Sample>& samples) {
  std::string out;
  for (const Sample& sample : samples) {
    out += kmsfleet::SeriesToString(sample) + " " + FormatValue(sample.value);
    if (sample.timestamp_ms) out += " " + std::to_string(*sample.timestamp_ms);
    out += "\n";
  }
  return out;
}

bool SameValue(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

bool SameSample(const Sample& a, const Sample& b) {
  if (a.name != b.name || a.timestamp_ms != b.timestamp_ms ||
      !SameValue(a.value, b.value) || a.labels.size() != b.labels.size()) {
    return false;
  }
  for (size_t i = 0; i < a.labels.size(); ++i) {
    if (a.labels[i].name != b.labels[i].name ||
        a.labels[i].value != b.labels[i].value) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // Small limits so the fuzzer also reaches the INPUT_TOO_LARGE paths.
  kmsfleet::ExpositionLimits limits;
  limits.max_bytes = 1 << 16;
  limits.max_line_bytes = 1 << 12;
  limits.max_samples = 512;
  limits.max_labels_per_sample = 8;

  absl::StatusOr<std::vector<Sample>> samples =
      kmsfleet::ParseExposition(text, limits);
  if (!samples.ok()) {
    CheckError(samples.status());
  } else {
    absl::StatusOr<std::vector<Sample>> again =
        kmsfleet::ParseExposition(Write(*samples));
    Require(again.ok());
    Require(again->size() == samples->size());
    for (size_t i = 0; i < samples->size(); ++i) {
      Require(SameSample((*samples)[i], (*again)[i]));
    }
  }

  absl::StatusOr<kmsfleet::ProviderMetrics> facts =
      kmsfleet::ExtractProviderMetrics(text, limits);
  if (!facts.ok()) {
    CheckError(facts.status());
  } else if (!facts->key_id_hash_status.ok()) {
    CheckError(facts->key_id_hash_status);
  }
  return 0;
}
