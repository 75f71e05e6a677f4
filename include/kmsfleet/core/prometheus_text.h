// A parser for the Prometheus text exposition format 0.0.4, the format the
// provider serves on /metrics (reference §3.1; architecture.md §3, the
// core's parsers). It accepts what the Prometheus Go text parser accepts,
// plus CRLF line endings, and rejects everything else with the 1-based line
// number and the offending text, so a scrape is either fully understood or
// clearly refused. Input is bounded (ExpositionLimits) because it comes from
// the network.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PROMETHEUS_TEXT_H_
#define KMSFLEET_CORE_PROMETHEUS_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

struct Label {
  std::string name;
  std::string value;  // unescaped
};

struct Sample {
  std::string name;           // metric name, e.g. openbao_kms_key_version
  std::vector<Label> labels;  // in the order written
  double value = 0;           // NaN, +Inf, -Inf supported
  std::optional<int64_t> timestamp_ms;

  // Returns the value of label `name`, or nullptr if absent.
  const std::string* FindLabel(std::string_view name) const;
};

enum class MetricType { kUntyped, kCounter, kGauge, kHistogram, kSummary };

// "untyped", "counter", "gauge", "histogram", "summary": the spelling of the
// TYPE line.
std::string_view MetricTypeName(MetricType type);

// What the HELP and TYPE comments said about one metric family.
struct FamilyMetadata {
  std::string name;
  MetricType type = MetricType::kUntyped;  // kUntyped when no TYPE line
  std::optional<std::string> help;         // unescaped; nullopt without HELP
};

struct Exposition {
  std::vector<Sample> samples;           // in input order
  std::vector<FamilyMetadata> families;  // in order of first HELP/TYPE line
};

struct ExpositionLimits {
  size_t max_bytes = 4 << 20;
  size_t max_samples = 200000;
  size_t max_line_bytes = 64 << 10;  // excluding the line ending
  size_t max_labels_per_sample = 64;
};

// Parses `text` and returns its samples in input order.
//
// Accepted: `# HELP name text` (escapes \\ and \n), `# TYPE name
// counter|gauge|histogram|summary|untyped`, other `#` comments, blank lines,
// LF or CRLF line endings, a final line without a newline, spaces and tabs
// between tokens, label values with the escapes \\ \" \n, an empty label set
// or one with a trailing comma, values as Go's strconv.ParseFloat reads them
// in decimal (including NaN, Inf, +Inf, -Inf and Infinity in any case), and
// an optional int64 millisecond timestamp.
//
// Errors (all absl::StatusCode::kInvalidArgument: the same bytes will never
// parse):
//   MALFORMED_EXPOSITION: a syntax error, an invalid metric or label name, an
//     unknown escape, a label value that is not UTF-8, a duplicate label
//     name within a sample, the reserved label `__name__`, a second HELP or
//     TYPE line for a name, a TYPE line after that family's samples, or a
//     histogram bucket without a numeric `le` (summary quantile without a
//     numeric `quantile`). The message names the line number and the
//     offending text (at most 80 bytes); metadata {"line": N}.
//   DUPLICATE_SERIES: two samples with the same name and label set, whatever
//     the label order; the message names the series and both lines;
//     metadata {"line": N, "series": ...}.
//   INPUT_TOO_LARGE: `text` exceeds limits.max_bytes, a line exceeds
//     limits.max_line_bytes, a sample has more than
//     limits.max_labels_per_sample labels, or there are more than
//     limits.max_samples samples.
absl::StatusOr<std::vector<Sample>> ParseExposition(
    std::string_view text, const ExpositionLimits& limits = {});

// Like ParseExposition, and also returns the HELP and TYPE metadata.
absl::StatusOr<Exposition> ParseExpositionWithMetadata(
    std::string_view text, const ExpositionLimits& limits = {});

// Returns `sample` written as a series selector, e.g.
// `up{job="a",le="0.5"}`, with label values escaped as in the format. Used
// in messages.
std::string SeriesToString(const Sample& sample);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PROMETHEUS_TEXT_H_
