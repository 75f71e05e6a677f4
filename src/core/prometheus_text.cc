#include "kmsfleet/core/prometheus_text.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "parse_util.h"
#include "prometheus_lexer.h"

namespace kmsfleet {
namespace {

using internal::Excerpt;
using internal::LineCursor;

constexpr std::string_view kBucketSuffix = "_bucket";
constexpr std::string_view kSumSuffix = "_sum";
constexpr std::string_view kCountSuffix = "_count";

std::optional<MetricType> MetricTypeFromName(std::string_view name) {
  const std::string lower = internal::AsciiLower(name);
  for (MetricType type :
       {MetricType::kUntyped, MetricType::kCounter, MetricType::kGauge,
        MetricType::kHistogram, MetricType::kSummary}) {
    if (lower == MetricTypeName(type)) return type;
  }
  return std::nullopt;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() > suffix.size() &&
         text.substr(text.size() - suffix.size()) == suffix;
}

// A key that is equal for two samples exactly when they are the same
// series: the name and the labels sorted by name, each length-prefixed so
// that no choice of bytes in a value can make two series collide.
std::string SeriesKey(const Sample& sample) {
  std::vector<const Label*> labels;
  labels.reserve(sample.labels.size());
  for (const Label& label : sample.labels) labels.push_back(&label);
  std::sort(labels.begin(), labels.end(),
            [](const Label* a, const Label* b) { return a->name < b->name; });
  std::string key = std::to_string(sample.name.size()) + ":" + sample.name;
  for (const Label* label : labels) {
    key += std::to_string(label->name.size()) + ":" + label->name;
    key += std::to_string(label->value.size()) + ":" + label->value;
  }
  return key;
}

// Parses one exposition, line by line. Single use.
class ExpositionParser {
 public:
  explicit ExpositionParser(const ExpositionLimits& limits) : limits_(limits) {}

  absl::StatusOr<Exposition> Parse(std::string_view text);

 private:
  absl::Status ParseLine(std::string_view line);
  absl::Status ParseComment(LineCursor& cursor);
  absl::Status ParseHelp(std::string_view name, std::string_view text);
  absl::Status ParseType(std::string_view name, std::string_view text);
  absl::Status ParseSample(LineCursor& cursor);
  absl::Status ParseLabels(LineCursor& cursor, Sample& sample);
  absl::Status ParseValueAndTimestamp(LineCursor& cursor, Sample& sample);
  absl::Status CheckFamilyRules(const Sample& sample, size_t column);
  absl::Status AddSample(Sample sample);

  FamilyMetadata& Family(std::string_view name);
  const FamilyMetadata* FindFamily(std::string_view name) const;

  // An error at `column` of the current line, naming the line.
  absl::Status Malformed(std::string_view what, size_t column) const;

  const ExpositionLimits& limits_;
  Exposition result_;
  size_t line_number_ = 0;
  std::string_view line_;
  std::unordered_map<std::string, size_t> family_index_;  // into families
  std::unordered_set<std::string> typed_;  // names with a TYPE line
  std::unordered_set<std::string> sampled_names_;
  std::unordered_map<std::string, size_t> series_lines_;  // SeriesKey -> line
};

absl::Status ExpositionParser::Malformed(std::string_view what,
                                         size_t column) const {
  return MakeError(absl::StatusCode::kInvalidArgument,
                   reason::kMalformedExposition,
                   "metrics exposition line " + std::to_string(line_number_) +
                       ", column " + std::to_string(column) + ": " +
                       std::string(what) + ": " + internal::Quoted(line_),
                   {{"line", std::to_string(line_number_)},
                    {"column", std::to_string(column)}});
}

absl::StatusOr<Exposition> ExpositionParser::Parse(std::string_view text) {
  if (text.size() > limits_.max_bytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     "metrics exposition is " + std::to_string(text.size()) +
                         " bytes, more than the limit of " +
                         std::to_string(limits_.max_bytes),
                     {{"size_bytes", std::to_string(text.size())},
                      {"limit_bytes", std::to_string(limits_.max_bytes)}});
  }
  for (std::string_view line : internal::SplitLines(text)) {
    ++line_number_;
    line_ = line;
    if (line.size() > limits_.max_line_bytes) {
      return MakeError(
          absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
          "metrics exposition line " + std::to_string(line_number_) + " is " +
              std::to_string(line.size()) + " bytes, more than the limit of " +
              std::to_string(limits_.max_line_bytes) + ": " +
              internal::Quoted(line),
          {{"line", std::to_string(line_number_)},
           {"limit_bytes", std::to_string(limits_.max_line_bytes)}});
    }
    KMSFLEET_RETURN_IF_ERROR(ParseLine(line));
  }
  return std::move(result_);
}

absl::Status ExpositionParser::ParseLine(std::string_view line) {
  LineCursor cursor(line);
  cursor.SkipBlanks();
  if (cursor.AtEnd()) return absl::OkStatus();
  if (cursor.Consume('#')) return ParseComment(cursor);
  return ParseSample(cursor);
}

// Mirrors the Prometheus parser: only `# HELP name text` and `# TYPE name
// type` mean anything; a keyword or name with nothing after it is a plain
// comment, but a keyword followed by an invalid name is an error.
absl::Status ExpositionParser::ParseComment(LineCursor& cursor) {
  cursor.SkipBlanks();
  const std::string_view keyword = cursor.ReadToken();
  if (keyword != "HELP" && keyword != "TYPE") return absl::OkStatus();
  cursor.SkipBlanks();
  if (cursor.AtEnd()) return absl::OkStatus();
  const size_t name_column = cursor.column();
  const std::string_view name = cursor.ReadMetricName();
  if (name.empty() ||
      (!cursor.AtEnd() && cursor.Peek() != ' ' && cursor.Peek() != '\t')) {
    return Malformed(
        "invalid metric name in " + std::string(keyword) + " comment",
        name_column);
  }
  cursor.SkipBlanks();
  if (cursor.AtEnd()) return absl::OkStatus();
  const size_t text_column = cursor.column();
  const std::string_view text = cursor.ReadRest();
  absl::Status status =
      keyword == "HELP" ? ParseHelp(name, text) : ParseType(name, text);
  if (!status.ok())
    return Malformed(std::string(status.message()), text_column);
  return absl::OkStatus();
}

absl::Status ExpositionParser::ParseHelp(std::string_view name,
                                         std::string_view text) {
  FamilyMetadata& family = Family(name);
  if (family.help) {
    return absl::InvalidArgumentError("second HELP line for metric " +
                                      std::string(name));
  }
  family.help = internal::UnescapeHelp(text);
  return absl::OkStatus();
}

absl::Status ExpositionParser::ParseType(std::string_view name,
                                         std::string_view text) {
  const std::string_view type_name = internal::TrimBlanks(text);
  const std::optional<MetricType> type = MetricTypeFromName(type_name);
  if (!type) {
    return absl::InvalidArgumentError(
        "unknown metric type " + internal::Quoted(type_name) +
        " (expected counter, gauge, histogram, summary or untyped)");
  }
  const std::string key(name);
  if (typed_.count(key) != 0) {
    return absl::InvalidArgumentError("second TYPE line for metric " + key);
  }
  // A TYPE line must come before the family's samples: the samples were
  // already read as untyped, so a later TYPE would change their meaning.
  std::vector<std::string> names = {key};
  if (*type == MetricType::kHistogram || *type == MetricType::kSummary) {
    names.push_back(key + std::string(kSumSuffix));
    names.push_back(key + std::string(kCountSuffix));
  }
  if (*type == MetricType::kHistogram) {
    names.push_back(key + std::string(kBucketSuffix));
  }
  for (const std::string& sampled : names) {
    if (sampled_names_.count(sampled) != 0) {
      return absl::InvalidArgumentError("TYPE line for metric " + key +
                                        " after samples of " + sampled);
    }
  }
  typed_.insert(key);
  Family(name).type = *type;
  return absl::OkStatus();
}

absl::Status ExpositionParser::ParseSample(LineCursor& cursor) {
  Sample sample;
  const size_t name_column = cursor.column();
  sample.name = std::string(cursor.ReadMetricName());
  if (sample.name.empty()) return Malformed("invalid metric name", name_column);
  if (!cursor.AtEnd() && cursor.Peek() != ' ' && cursor.Peek() != '\t' &&
      cursor.Peek() != '{') {
    return Malformed("invalid character in metric name", cursor.column());
  }
  cursor.SkipBlanks();
  if (cursor.Consume('{'))
    KMSFLEET_RETURN_IF_ERROR(ParseLabels(cursor, sample));
  KMSFLEET_RETURN_IF_ERROR(ParseValueAndTimestamp(cursor, sample));
  KMSFLEET_RETURN_IF_ERROR(CheckFamilyRules(sample, name_column));
  return AddSample(std::move(sample));
}

absl::Status ExpositionParser::ParseLabels(LineCursor& cursor, Sample& sample) {
  for (;;) {
    cursor.SkipBlanks();
    // Reached directly after '{' or after a ',': an empty label set or a
    // trailing comma, both of which the format allows.
    if (cursor.Consume('}')) return absl::OkStatus();
    const size_t column = cursor.column();
    Label label;
    label.name = std::string(cursor.ReadLabelName());
    if (label.name.empty()) return Malformed("invalid label name", column);
    if (label.name == "__name__") {
      return Malformed("label name __name__ is reserved", column);
    }
    for (const Label& other : sample.labels) {
      if (other.name == label.name) {
        return Malformed("duplicate label name " + label.name, column);
      }
    }
    if (sample.labels.size() >= limits_.max_labels_per_sample) {
      return MakeError(
          absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
          "metrics exposition line " + std::to_string(line_number_) +
              ": sample has more than " +
              std::to_string(limits_.max_labels_per_sample) +
              " labels: " + internal::Quoted(line_),
          {{"line", std::to_string(line_number_)}});
    }
    cursor.SkipBlanks();
    if (!cursor.Consume('=')) {
      return Malformed("expected '=' after label name " + label.name,
                       cursor.column());
    }
    cursor.SkipBlanks();
    if (!cursor.Consume('"')) {
      return Malformed("expected '\"' to open the value of label " + label.name,
                       cursor.column());
    }
    if (std::optional<std::string> error =
            cursor.ReadQuotedLabelValue(&label.value)) {
      return Malformed(*error, cursor.column());
    }
    sample.labels.push_back(std::move(label));
    cursor.SkipBlanks();
    if (cursor.Consume('}')) return absl::OkStatus();
    if (!cursor.Consume(',')) {
      return Malformed("expected ',' or '}' after a label value",
                       cursor.column());
    }
  }
}

absl::Status ExpositionParser::ParseValueAndTimestamp(LineCursor& cursor,
                                                      Sample& sample) {
  cursor.SkipBlanks();
  const size_t value_column = cursor.column();
  const std::string_view value = cursor.ReadToken();
  if (value.empty()) return Malformed("missing sample value", value_column);
  const std::optional<double> parsed = internal::ParseGoFloat(value);
  if (!parsed) {
    return Malformed("invalid sample value " + internal::Quoted(value),
                     value_column);
  }
  sample.value = *parsed;
  cursor.SkipBlanks();
  if (cursor.AtEnd()) return absl::OkStatus();
  const size_t timestamp_column = cursor.column();
  const std::string_view timestamp = cursor.ReadToken();
  sample.timestamp_ms = internal::ParseInt64(timestamp, /*allow_plus=*/true);
  if (!sample.timestamp_ms) {
    return Malformed("invalid timestamp " + internal::Quoted(timestamp) +
                         " (expected int64 milliseconds)",
                     timestamp_column);
  }
  cursor.SkipBlanks();
  if (!cursor.AtEnd()) {
    return Malformed("unexpected text after the timestamp", cursor.column());
  }
  return absl::OkStatus();
}

// Histogram buckets and summary quantiles carry their bound in a label; a
// series without a numeric one cannot be interpreted.
absl::Status ExpositionParser::CheckFamilyRules(const Sample& sample,
                                                size_t column) {
  const std::string_view name = sample.name;
  if (EndsWith(name, kBucketSuffix)) {
    const FamilyMetadata* family =
        FindFamily(name.substr(0, name.size() - kBucketSuffix.size()));
    if (family != nullptr && family->type == MetricType::kHistogram) {
      const std::string* le = sample.FindLabel("le");
      if (le == nullptr || !internal::ParseGoFloat(*le)) {
        return Malformed("histogram bucket needs a numeric le label", column);
      }
    }
    return absl::OkStatus();
  }
  const FamilyMetadata* family = FindFamily(name);
  if (family != nullptr && family->type == MetricType::kSummary) {
    const std::string* quantile = sample.FindLabel("quantile");
    if (quantile == nullptr || !internal::ParseGoFloat(*quantile)) {
      return Malformed("summary sample needs a numeric quantile label", column);
    }
  }
  return absl::OkStatus();
}

absl::Status ExpositionParser::AddSample(Sample sample) {
  if (result_.samples.size() >= limits_.max_samples) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     "metrics exposition has more than " +
                         std::to_string(limits_.max_samples) +
                         " samples (line " + std::to_string(line_number_) + ")",
                     {{"line", std::to_string(line_number_)},
                      {"limit_samples", std::to_string(limits_.max_samples)}});
  }
  auto [it, inserted] = series_lines_.emplace(SeriesKey(sample), line_number_);
  if (!inserted) {
    const std::string series = Excerpt(SeriesToString(sample), 200);
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kDuplicateSeries,
                     "metrics exposition line " + std::to_string(line_number_) +
                         " repeats series " + series + " first seen on line " +
                         std::to_string(it->second),
                     {{"line", std::to_string(line_number_)},
                      {"first_line", std::to_string(it->second)},
                      {"series", series}});
  }
  sampled_names_.insert(sample.name);
  result_.samples.push_back(std::move(sample));
  return absl::OkStatus();
}

FamilyMetadata& ExpositionParser::Family(std::string_view name) {
  auto [it, inserted] =
      family_index_.emplace(std::string(name), result_.families.size());
  if (inserted) {
    result_.families.emplace_back();
    result_.families.back().name = std::string(name);
  }
  return result_.families[it->second];
}

const FamilyMetadata* ExpositionParser::FindFamily(
    std::string_view name) const {
  auto it = family_index_.find(std::string(name));
  return it == family_index_.end() ? nullptr : &result_.families[it->second];
}

}  // namespace

const std::string* Sample::FindLabel(std::string_view label_name) const {
  for (const Label& label : labels) {
    if (label.name == label_name) return &label.value;
  }
  return nullptr;
}

std::string_view MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kUntyped:
      return "untyped";
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kSummary:
      return "summary";
  }
  return "untyped";
}

absl::StatusOr<std::vector<Sample>> ParseExposition(
    std::string_view text, const ExpositionLimits& limits) {
  KMSFLEET_ASSIGN_OR_RETURN(Exposition exposition,
                            ParseExpositionWithMetadata(text, limits));
  return std::move(exposition.samples);
}

absl::StatusOr<Exposition> ParseExpositionWithMetadata(
    std::string_view text, const ExpositionLimits& limits) {
  return ExpositionParser(limits).Parse(text);
}

std::string SeriesToString(const Sample& sample) {
  std::string out = sample.name;
  if (sample.labels.empty()) return out;
  out += '{';
  for (size_t i = 0; i < sample.labels.size(); ++i) {
    if (i > 0) out += ',';
    out += sample.labels[i].name + "=\"" +
           internal::EscapeLabelValue(sample.labels[i].value) + "\"";
  }
  out += '}';
  return out;
}

}  // namespace kmsfleet
