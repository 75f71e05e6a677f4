// Tests of the Prometheus text format 0.0.4 parser (prometheus_text.h).
// What it accepts follows the Prometheus Go text parser, which promtool
// uses; the fixtures are checked with promtool by the
// promtool_fixture_check test.
#include "kmsfleet/core/prometheus_text.h"

#include <cmath>
#include <limits>
#include <ostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr double kInf = std::numeric_limits<double>::infinity();

// Parses `text`, which must succeed, and returns its only sample.
Sample OnlySample(std::string_view text) {
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(text);
  EXPECT_TRUE(samples.ok()) << samples.status();
  if (!samples.ok()) return {};
  EXPECT_EQ(samples->size(), 1u);
  if (samples->size() != 1) return {};
  return samples->front();
}

// Parses `text`, which must fail with `reason`, and returns the status.
testing::Rejection ExpectRejected(std::string_view text,
                                  std::string_view reason,
                                  const ExpositionLimits& limits = {}) {
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(text, limits);
  EXPECT_FALSE(samples.ok()) << "accepted: " << text;
  if (samples.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(samples.status()), reason) << samples.status();
  return testing::Rejection(samples.status());
}

TEST(PrometheusTextTest, ParsesRealisticProviderScrape) {
  const std::string text = testing::ReadTestData("metrics_preview3.prom");
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(text);
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_EQ(samples->size(), 114u);
  const Sample& first = samples->front();
  EXPECT_EQ(first.name, "go_gc_duration_seconds");
  EXPECT_EQ(*first.FindLabel("quantile"), "0");
  EXPECT_DOUBLE_EQ(first.value, 3.1e-05);
  const Sample& last = samples->back();
  EXPECT_EQ(last.name, "process_virtual_memory_max_bytes");
  EXPECT_DOUBLE_EQ(last.value, 1.8446744073709552e+19);
  EXPECT_FALSE(last.timestamp_ms.has_value());
}

TEST(PrometheusTextTest, HistogramBucketsKeepTheirLeLabel) {
  const std::string text = testing::ReadTestData("metrics_preview3.prom");
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(text);
  ASSERT_TRUE(samples.ok()) << samples.status();
  int buckets = 0;
  for (const Sample& sample : *samples) {
    if (sample.name != "openbao_kms_grpc_duration_seconds_bucket") continue;
    ++buckets;
    if (*sample.FindLabel("method") == "decrypt" &&
        *sample.FindLabel("le") == "+Inf") {
      EXPECT_EQ(sample.value, 1834);
    }
  }
  EXPECT_EQ(buckets, 3 * 13);  // three methods, 12 bounds and +Inf
}

TEST(PrometheusTextTest, ReturnsHelpAndTypeMetadata) {
  const std::string text = testing::ReadTestData("metrics_preview3.prom");
  absl::StatusOr<Exposition> exposition = ParseExpositionWithMetadata(text);
  ASSERT_TRUE(exposition.ok()) << exposition.status();
  const FamilyMetadata* histogram = nullptr;
  for (const FamilyMetadata& family : exposition->families) {
    if (family.name == "openbao_kms_grpc_duration_seconds") histogram = &family;
  }
  ASSERT_NE(histogram, nullptr);
  EXPECT_EQ(histogram->type, MetricType::kHistogram);
  EXPECT_EQ(histogram->help, "KMS v2 handler latency in seconds.");
  EXPECT_EQ(exposition->families.front().type, MetricType::kSummary);
}

TEST(PrometheusTextTest, HelpEscapesAreDecodedAndOthersKept) {
  absl::StatusOr<Exposition> exposition =
      ParseExpositionWithMetadata("# HELP m a\\\\b\\nc \\t d\nm 1\n");
  ASSERT_TRUE(exposition.ok()) << exposition.status();
  ASSERT_EQ(exposition->families.size(), 1u);
  EXPECT_EQ(exposition->families[0].help, "a\\b\nc \\t d");
}

TEST(PrometheusTextTest, LabelValueEscapesAreDecoded) {
  const Sample sample = OnlySample("m{a=\"x\\\\y\\\"z\\nw\"} 1\n");
  ASSERT_EQ(sample.labels.size(), 1u);
  EXPECT_EQ(sample.labels[0].value, "x\\y\"z\nw");
}

TEST(PrometheusTextTest, LabelsKeepTheirWrittenOrder) {
  const Sample sample = OnlySample("m{zeta=\"1\",alpha=\"2\",mid=\"\"} 1\n");
  ASSERT_EQ(sample.labels.size(), 3u);
  EXPECT_EQ(sample.labels[0].name, "zeta");
  EXPECT_EQ(sample.labels[1].name, "alpha");
  EXPECT_EQ(sample.labels[2].name, "mid");
  EXPECT_EQ(*sample.FindLabel("mid"), "");
  EXPECT_EQ(sample.FindLabel("absent"), nullptr);
}

TEST(PrometheusTextTest, TrailingCommaAndEmptyLabelSetAreAccepted) {
  EXPECT_EQ(OnlySample("m{a=\"b\",} 1").labels.size(), 1u);
  EXPECT_EQ(OnlySample("m{} 1").labels.size(), 0u);
}

TEST(PrometheusTextTest, BlanksAroundTokensAreAccepted) {
  const Sample sample =
      OnlySample("  m \t{ a = \"b\" ,\tc=\"d\" }\t 2.5   1700000000000  \n");
  EXPECT_EQ(sample.name, "m");
  ASSERT_EQ(sample.labels.size(), 2u);
  EXPECT_EQ(*sample.FindLabel("c"), "d");
  EXPECT_EQ(sample.value, 2.5);
  EXPECT_EQ(sample.timestamp_ms, 1700000000000);
}

TEST(PrometheusTextTest, CrlfLineEndingsAreAccepted) {
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(
      "# HELP m help\r\n# TYPE m gauge\r\nm{a=\"b\"} 1\r\nn 2\r\n");
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 2u);
  EXPECT_EQ(samples->at(0).value, 1);
  EXPECT_EQ(samples->at(1).value, 2);
}

TEST(PrometheusTextTest, FinalLineWithoutNewlineIsAccepted) {
  EXPECT_EQ(OnlySample("b 2").value, 2);
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition("a 1\nb 2");
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_EQ(samples->size(), 2u);
  EXPECT_EQ(samples->back().name, "b");
}

TEST(PrometheusTextTest, EmptyInputHasNoSamples) {
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition("");
  ASSERT_TRUE(samples.ok());
  EXPECT_TRUE(samples->empty());
}

TEST(PrometheusTextTest, BlankLinesAndPlainCommentsAreIgnored) {
  absl::StatusOr<Exposition> exposition = ParseExpositionWithMetadata(
      "\n   \n#\n# just a comment\n#comment\n# HELP\n# HELP m\n# TYPE m\n"
      "# HELPER x y\nm 1\n");
  ASSERT_TRUE(exposition.ok()) << exposition.status();
  EXPECT_EQ(exposition->samples.size(), 1u);
  // `# TYPE m` with no type, like the Prometheus parser, says nothing.
  EXPECT_TRUE(exposition->families.empty());
}

TEST(PrometheusTextTest, MetricNamesMayContainColonsAndStartWithUnderscore) {
  EXPECT_EQ(OnlySample("job:rate5m:sum 1").name, "job:rate5m:sum");
  EXPECT_EQ(OnlySample("_x 1").name, "_x");
  EXPECT_EQ(OnlySample(":x 1").name, ":x");
}

TEST(PrometheusTextTest, TypeNamesAreCaseInsensitive) {
  absl::StatusOr<Exposition> exposition =
      ParseExpositionWithMetadata("# TYPE m COUNTER\nm 1\n");
  ASSERT_TRUE(exposition.ok()) << exposition.status();
  EXPECT_EQ(exposition->families[0].type, MetricType::kCounter);
  EXPECT_EQ(MetricTypeName(MetricType::kCounter), "counter");
}

struct ValueCase {
  const char* text;
  double expected;
};

// Names the parameterized test after the value text, for ctest.
void PrintTo(const ValueCase& c, std::ostream* os) { *os << c.text; }

class AcceptedValueTest : public ::testing::TestWithParam<ValueCase> {};

// Values are read as Go's strconv.ParseFloat reads them.
TEST_P(AcceptedValueTest, ValueIsReadAsGoReadsIt) {
  const Sample sample = OnlySample(std::string("m ") + GetParam().text);
  if (std::isnan(GetParam().expected)) {
    EXPECT_TRUE(std::isnan(sample.value)) << GetParam().text;
  } else {
    EXPECT_EQ(sample.value, GetParam().expected) << GetParam().text;
  }
}

INSTANTIATE_TEST_SUITE_P(
    GoParseFloat, AcceptedValueTest,
    ::testing::Values(
        ValueCase{"NaN", std::nan("")}, ValueCase{"nan", std::nan("")},
        ValueCase{"+Inf", kInf}, ValueCase{"-Inf", -kInf},
        ValueCase{"Inf", kInf}, ValueCase{"inf", kInf},
        ValueCase{"+infinity", kInf}, ValueCase{"-Infinity", -kInf},
        ValueCase{"0", 0}, ValueCase{"-0", 0}, ValueCase{"+3", 3},
        ValueCase{"1834", 1834}, ValueCase{"1e3", 1000},
        ValueCase{"-1.5E-3", -0.0015}, ValueCase{".5", 0.5}, ValueCase{"5.", 5},
        ValueCase{"1.7597836118721488e+09", 1.7597836118721488e+09},
        // Too small for a double: Go rounds to zero rather than failing.
        ValueCase{"1e-400", 0}, ValueCase{"0.000001e-330", 0}));

class RejectedValueTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RejectedValueTest, ValueGoRejectsIsMalformed) {
  const absl::Status status = ExpectRejected(std::string("m ") + GetParam(),
                                             reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("line 1"));
  EXPECT_THAT(status.message(), HasSubstr(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(GoParseFloat, RejectedValueTest,
                         ::testing::Values("+NaN", "-nan", "infin", "Infinityy",
                                           "0x1p3", "1_000", "1e", "e3", ".",
                                           "1.2.3", "1e400", "-1e400", "one",
                                           "1,5", "--1"));

TEST(PrometheusTextTest, MissingValueIsMalformed) {
  const absl::Status status =
      ExpectRejected("m{a=\"b\"}\n", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("missing sample value"));
}

TEST(PrometheusTextTest, TimestampIsAnInt64OfMilliseconds) {
  EXPECT_EQ(OnlySample("m 1 1700000000000").timestamp_ms, 1700000000000);
  EXPECT_EQ(OnlySample("m 1 -5").timestamp_ms, -5);
  EXPECT_EQ(OnlySample("m 1 +5").timestamp_ms, 5);
}

TEST(PrometheusTextTest, InvalidTimestampIsMalformed) {
  for (const char* text :
       {"m 1 1.5", "m 1 9223372036854775808", "m 1 1e3", "m 1 +-5", "m 1 x"}) {
    const absl::Status status =
        ExpectRejected(text, reason::kMalformedExposition);
    EXPECT_THAT(status.message(), HasSubstr("invalid timestamp")) << text;
  }
}

TEST(PrometheusTextTest, TextAfterTimestampIsMalformed) {
  const absl::Status status =
      ExpectRejected("m 1 2 3\n", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("after the timestamp"));
}

TEST(PrometheusTextTest, InvalidMetricNamesAreMalformed) {
  for (const char* text : {"1abc 1", "a-b 1", "{a=\"b\"} 1", "é 1", "a.b 1"}) {
    const absl::Status status =
        ExpectRejected(text, reason::kMalformedExposition);
    EXPECT_THAT(status.message(), HasSubstr("metric name")) << text;
  }
}

TEST(PrometheusTextTest, InvalidLabelNamesAreMalformed) {
  for (const char* text : {"m{1a=\"x\"} 1", "m{a:b=\"x\"} 1", "m{,} 1",
                           "m{a=\"x\",,} 1", "m{\"a\"=\"x\"} 1"}) {
    ExpectRejected(text, reason::kMalformedExposition);
  }
}

TEST(PrometheusTextTest, ReservedNameLabelIsMalformed) {
  const absl::Status status =
      ExpectRejected("m{__name__=\"x\"} 1", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("__name__ is reserved"));
}

TEST(PrometheusTextTest, DuplicateLabelNameIsMalformed) {
  const absl::Status status = ExpectRejected("m{a=\"1\",b=\"2\",a=\"3\"} 1",
                                             reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("duplicate label name a"));
}

TEST(PrometheusTextTest, UnknownEscapeInLabelValueIsMalformed) {
  const absl::Status status =
      ExpectRejected("m{a=\"x\\ty\"} 1", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("invalid escape sequence \\t"));
}

TEST(PrometheusTextTest, LabelSyntaxErrorsAreMalformed) {
  for (const char* text : {"m{a=\"unterminated} 1", "m{a \"x\"} 1", "m{a=x} 1",
                           "m{a=\"x\" b=\"y\"} 1", "m{a=\"x\"", "m{a=\"x\\"}) {
    ExpectRejected(text, reason::kMalformedExposition);
  }
}

TEST(PrometheusTextTest, Utf8LabelValuesAreAccepted) {
  EXPECT_EQ(OnlySample("m{a=\"h\xC3\xA9llo \xE2\x9C\x93\"} 1").labels[0].value,
            "h\xC3\xA9llo \xE2\x9C\x93");
}

TEST(PrometheusTextTest, LabelValueThatIsNotUtf8IsMalformed) {
  // A lone continuation byte, an overlong '/', and a UTF-16 surrogate.
  for (const char* text :
       {"m{a=\"\x80\"} 1", "m{a=\"\xC0\xAF\"} 1", "m{a=\"\xED\xA0\x80\"} 1"}) {
    const absl::Status status =
        ExpectRejected(text, reason::kMalformedExposition);
    EXPECT_THAT(status.message(), HasSubstr("not valid UTF-8"));
  }
}

TEST(PrometheusTextTest, ErrorNamesLineNumberAndOffendingText) {
  const absl::Status status = ExpectRejected(
      "# TYPE a gauge\na 1\nb{x=\"1\" 2\nc 3\n", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("line 3"));
  EXPECT_THAT(status.message(), HasSubstr("b{x=\"1\" 2"));
  EXPECT_EQ(MetadataOf(status, "line"), "3");
  EXPECT_EQ(MetadataOf(status, "column"), "9");
}

TEST(PrometheusTextTest, OffendingTextIsTruncatedAndPrintable) {
  const std::string long_name(200, 'x');
  absl::Status status =
      ExpectRejected(long_name + " one", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr(std::string(80, 'x') + "..."));
  EXPECT_THAT(status.message(), Not(HasSubstr(std::string(81, 'x'))));

  status =
      ExpectRejected(std::string("m\0\x01 1", 5), reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("m\\x00\\x01 1"));
}

TEST(PrometheusTextTest, DuplicateSeriesIsRejectedWhateverTheLabelOrder) {
  const absl::Status status = ExpectRejected(
      "m{a=\"1\",b=\"2\"} 1\nm{b=\"2\",a=\"1\"} 2\n", reason::kDuplicateSeries);
  EXPECT_THAT(status.message(), HasSubstr("m{b=\"2\",a=\"1\"}"));
  EXPECT_THAT(status.message(), HasSubstr("first seen on line 1"));
  EXPECT_EQ(MetadataOf(status, "line"), "2");
}

TEST(PrometheusTextTest, DuplicateUnlabelledSeriesIsRejected) {
  ExpectRejected("m 1\nm 1 1700000000000\n", reason::kDuplicateSeries);
}

TEST(PrometheusTextTest, SeriesDifferingInOneLabelValueAreDistinct) {
  absl::StatusOr<std::vector<Sample>> samples =
      ParseExposition("m{a=\"1\"} 1\nm{a=\"2\"} 1\nm 1\nm{a=\"1\",b=\"\"} 1\n");
  ASSERT_TRUE(samples.ok()) << samples.status();
  EXPECT_EQ(samples->size(), 4u);
}

TEST(PrometheusTextTest, LabelBytesCannotForgeADuplicate) {
  // Naive concatenation would make both keys `m a=1,b=2`.
  absl::StatusOr<std::vector<Sample>> samples =
      ParseExposition("m{a=\"1,b=2\"} 1\nm{a=\"1\",b=\"2\"} 1\n");
  ASSERT_TRUE(samples.ok()) << samples.status();
}

TEST(PrometheusTextTest, SecondTypeLineIsMalformed) {
  const absl::Status status = ExpectRejected(
      "# TYPE m gauge\n# TYPE m counter\nm 1\n", reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("second TYPE line for metric m"));
  EXPECT_EQ(MetadataOf(status, "line"), "2");
}

TEST(PrometheusTextTest, SecondHelpLineIsMalformed) {
  const absl::Status status = ExpectRejected("# HELP m one\n# HELP m two\n",
                                             reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("second HELP line for metric m"));
}

TEST(PrometheusTextTest, TypeLineAfterSamplesIsMalformed) {
  ExpectRejected("m 1\n# TYPE m gauge\n", reason::kMalformedExposition);
  const absl::Status status = ExpectRejected("h_count 1\n# TYPE h histogram\n",
                                             reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("after samples of h_count"));
}

TEST(PrometheusTextTest, UnknownTypeIsMalformed) {
  const absl::Status status = ExpectRejected("# TYPE m gauge_histogram\n",
                                             reason::kMalformedExposition);
  EXPECT_THAT(status.message(), HasSubstr("unknown metric type"));
  EXPECT_THAT(status.message(), HasSubstr("gauge_histogram"));
}

TEST(PrometheusTextTest, InvalidNameInCommentIsMalformed) {
  ExpectRejected("# HELP 1m text\n", reason::kMalformedExposition);
  ExpectRejected("# TYPE m-x gauge\n", reason::kMalformedExposition);
}

TEST(PrometheusTextTest, HistogramBucketNeedsNumericLe) {
  const char* kHeader = "# TYPE h histogram\n";
  ExpectRejected(std::string(kHeader) + "h_bucket 1\n",
                 reason::kMalformedExposition);
  ExpectRejected(std::string(kHeader) + "h_bucket{le=\"big\"} 1\n",
                 reason::kMalformedExposition);
  absl::StatusOr<std::vector<Sample>> samples =
      ParseExposition(std::string(kHeader) +
                      "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum "
                      "0.7\nh_count 2\n");
  EXPECT_TRUE(samples.ok()) << samples.status();
}

TEST(PrometheusTextTest, SummaryNeedsNumericQuantile) {
  ExpectRejected("# TYPE s summary\ns 1\n", reason::kMalformedExposition);
  absl::StatusOr<std::vector<Sample>> samples = ParseExposition(
      "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 4\n");
  EXPECT_TRUE(samples.ok()) << samples.status();
}

TEST(PrometheusTextTest, InputLargerThanLimitIsTooLarge) {
  ExpositionLimits limits;
  limits.max_bytes = 10;
  const absl::Status status =
      ExpectRejected("abcdef 1\ng 2\n", reason::kInputTooLarge, limits);
  EXPECT_EQ(MetadataOf(status, "size_bytes"), "13");
}

TEST(PrometheusTextTest, LineLongerThanLimitIsTooLarge) {
  ExpositionLimits limits;
  limits.max_line_bytes = 8;
  EXPECT_TRUE(ParseExposition("abcdef 1\r\n", limits).ok());
  const absl::Status status =
      ExpectRejected("a 1\nabcdefg 1\n", reason::kInputTooLarge, limits);
  EXPECT_EQ(MetadataOf(status, "line"), "2");
}

TEST(PrometheusTextTest, MoreSamplesThanLimitIsTooLarge) {
  ExpositionLimits limits;
  limits.max_samples = 2;
  EXPECT_TRUE(ParseExposition("a 1\nb 1\n", limits).ok());
  ExpectRejected("a 1\nb 1\nc 1\n", reason::kInputTooLarge, limits);
}

TEST(PrometheusTextTest, MoreLabelsThanLimitIsTooLarge) {
  ExpositionLimits limits;
  limits.max_labels_per_sample = 2;
  EXPECT_TRUE(ParseExposition("m{a=\"1\",b=\"2\"} 1", limits).ok());
  ExpectRejected("m{a=\"1\",b=\"2\",c=\"3\"} 1", reason::kInputTooLarge,
                 limits);
}

TEST(PrometheusTextTest, SeriesToStringEscapesLabelValues) {
  const Sample sample = OnlySample("m{a=\"q\\\"b\\\\n\\n\",b=\"\"} 1");
  EXPECT_EQ(SeriesToString(sample), "m{a=\"q\\\"b\\\\n\\n\",b=\"\"}");
  EXPECT_EQ(SeriesToString(OnlySample("m 1")), "m");
}

}  // namespace
}  // namespace kmsfleet
