// Tests of the provider facts read from /metrics (provider_metrics.h;
// reference §3.1, §3.2).
#include "kmsfleet/core/provider_metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

// Real hashes of two key_ids (reference §3.2), chosen because they hold
// both '-' and '_', which a careless label check would reject.
constexpr char kHashA[] = "UkPT2pXxYomOU_jD-ogCOXoOMmGd-JxBHK1XETCA4ps";
constexpr char kHashB[] = "I0yMMn4cdayH6jzma04Da_QgfUM-VqA9_5_0DoIBP58";

std::string HashLine(std::string_view hash, std::string_view value) {
  return std::string(kKeyIdHashMetric) + "{hash=\"" + std::string(hash) +
         "\"} " + std::string(value) + "\n";
}

// Extracts from `text`, which must fail with MALFORMED_EXPOSITION.
testing::Rejection ExpectMalformed(const std::string& text) {
  absl::StatusOr<ProviderMetrics> facts = ExtractProviderMetrics(text);
  EXPECT_FALSE(facts.ok()) << "accepted: " << text;
  if (facts.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(facts.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(facts.status()), reason::kMalformedExposition)
      << facts.status();
  return testing::Rejection(facts.status());
}

TEST(ProviderMetricsTest, ExtractsFactsFromPreview3Scrape) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(testing::ReadTestData("metrics_preview3.prom"));
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(facts->key_id_hash_status.ok()) << facts->key_id_hash_status;
  EXPECT_EQ(facts->key_id_hash, kHashA);
  EXPECT_EQ(facts->build_version, "0.1.0-preview.3");
  EXPECT_EQ(facts->rotation_state, "active");
  EXPECT_EQ(facts->key_version, 3);
  EXPECT_EQ(facts->decrypt_key_id_errors_total, 4);
  EXPECT_EQ(facts->aad_validation_errors_total, 3);  // 2 + 1 over reasons
}

TEST(ProviderMetricsTest, OlderScrapeWithoutBuildInfoHasNoBuildVersion) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(testing::ReadTestData("metrics_preview2.prom"));
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->build_version.has_value());
  EXPECT_EQ(facts->key_id_hash, kHashA);
}

TEST(ProviderMetricsTest, TwoActiveHashesAreAmbiguousAndListed) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(testing::ReadTestData("metrics_two_hashes.prom"));
  ASSERT_TRUE(facts.ok()) << facts.status();
  const absl::Status& status = facts->key_id_hash_status;
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(status), reason::kKeyIdHashAmbiguous);
  EXPECT_THAT(status.message(), HasSubstr(kHashA));
  EXPECT_THAT(status.message(), HasSubstr(kHashB));
  EXPECT_EQ(MetadataOf(status, "hashes"),
            std::string(kHashA) + "," + std::string(kHashB));
  EXPECT_EQ(facts->key_id_hash, "");
  // The other facts stay usable.
  EXPECT_EQ(facts->rotation_state, "pending");
  EXPECT_EQ(facts->key_version, 4);
}

TEST(ProviderMetricsTest, HashSeriesAtZeroMeansMissing) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(HashLine(kHashA, "0"));
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->key_id_hash_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(facts->key_id_hash_status), reason::kKeyIdHashMissing);
}

TEST(ProviderMetricsTest, ScrapeWithoutProviderSeriesHasNoFacts) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics("go_goroutines 12\n");
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(ReasonOf(facts->key_id_hash_status), reason::kKeyIdHashMissing);
  EXPECT_FALSE(facts->build_version.has_value());
  EXPECT_EQ(facts->rotation_state, "");
  EXPECT_FALSE(facts->key_version.has_value());
  EXPECT_FALSE(facts->decrypt_key_id_errors_total.has_value());
  EXPECT_FALSE(facts->aad_validation_errors_total.has_value());
}

TEST(ProviderMetricsTest, HashLabelMustBe43Base64UrlCharacters) {
  const std::string too_long = std::string(kHashA) + "A";
  const std::string standard_alphabet =
      "UkPT2pXxYomOU/jD+ogCOXoOMmGd+JxBHK1XETCA4ps";
  const std::string padded = std::string(kHashA).substr(1) + "=";
  for (const std::string& hash : {std::string("short"), too_long,
                                  standard_alphabet, padded, std::string("")}) {
    const absl::Status status = ExpectMalformed(HashLine(hash, "1"));
    EXPECT_THAT(status.message(), HasSubstr("\"" + hash + "\""));
  }
}

TEST(ProviderMetricsTest, HashSeriesWithoutHashLabelIsMalformed) {
  const absl::Status status =
      ExpectMalformed(std::string(kKeyIdHashMetric) + "{key=\"x\"} 1\n");
  EXPECT_THAT(status.message(), HasSubstr("no hash label"));
}

TEST(ProviderMetricsTest, HashValueOtherThanZeroOrOneIsMalformed) {
  const absl::Status status = ExpectMalformed(HashLine(kHashA, "2"));
  EXPECT_THAT(status.message(), HasSubstr("value 2"));
  EXPECT_EQ(MetadataOf(status, "value"), "2");
}

TEST(ProviderMetricsTest, SeveralRotationStatesAtOneAreMalformed) {
  const absl::Status status = ExpectMalformed(
      "openbao_kms_rotation_state{state=\"active\"} 1\n"
      "openbao_kms_rotation_state{state=\"pending\"} 1\n"
      "openbao_kms_rotation_state{state=\"unknown\"} 0\n");
  EXPECT_THAT(status.message(), HasSubstr("\"active\" is also 1"));
}

TEST(ProviderMetricsTest, RotationStateIsEmptyWhenNoSeriesIsOne) {
  absl::StatusOr<ProviderMetrics> facts = ExtractProviderMetrics(
      "openbao_kms_rotation_state{state=\"active\"} 0\n"
      "openbao_kms_rotation_state{state=\"pending\"} 0\n");
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->rotation_state, "");
}

TEST(ProviderMetricsTest, RotationStateWithoutStateLabelIsMalformed) {
  ExpectMalformed("openbao_kms_rotation_state 1\n");
}

TEST(ProviderMetricsTest, KeyVersionMustBeANonNegativeInteger) {
  for (const char* value : {"-1", "1.5", "NaN", "+Inf", "1e19"}) {
    const absl::Status status =
        ExpectMalformed(std::string("openbao_kms_key_version ") + value);
    EXPECT_THAT(status.message(), HasSubstr("non-negative integer")) << value;
  }
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics("openbao_kms_key_version 0\n");
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->key_version, 0);
}

TEST(ProviderMetricsTest, SecondKeyVersionSeriesIsMalformed) {
  ExpectMalformed(
      "openbao_kms_key_version{a=\"1\"} 1\nopenbao_kms_key_version 2\n");
}

TEST(ProviderMetricsTest, ErrorCountersSumOverReasons) {
  absl::StatusOr<ProviderMetrics> facts = ExtractProviderMetrics(
      "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"} 4\n"
      "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_malformed\"} 1\n"
      "openbao_kms_aad_validation_errors_total{reason=\"aad_missing\"} 0\n");
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_EQ(facts->decrypt_key_id_errors_total, 5);
  EXPECT_EQ(facts->aad_validation_errors_total, 0);
}

TEST(ProviderMetricsTest, NegativeOrNonFiniteCounterIsMalformed) {
  ExpectMalformed("openbao_kms_decrypt_key_id_errors_total{reason=\"x\"} -1\n");
  ExpectMalformed(
      "openbao_kms_aad_validation_errors_total{reason=\"x\"} NaN\n");
}

TEST(ProviderMetricsTest, BuildInfoAtZeroIsIgnored) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics("openbao_kms_build_info{version=\"0.1.0\"} 0\n");
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_FALSE(facts->build_version.has_value());
}

TEST(ProviderMetricsTest, ConflictingBuildInfoIsMalformed) {
  const absl::Status status = ExpectMalformed(
      "openbao_kms_build_info{version=\"0.1.0\",commit=\"a\"} 1\n"
      "openbao_kms_build_info{version=\"0.2.0\",commit=\"b\"} 1\n");
  EXPECT_THAT(status.message(), HasSubstr("\"0.1.0\""));
  EXPECT_THAT(status.message(), HasSubstr("version=\"0.2.0\""));
}

TEST(ProviderMetricsTest, BuildInfoWithoutVersionIsMalformed) {
  ExpectMalformed("openbao_kms_build_info{commit=\"a\"} 1\n");
}

TEST(ProviderMetricsTest, ParseErrorsOfTheScrapeAreReturned) {
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(HashLine(kHashA, "1") + HashLine(kHashA, "1"));
  ASSERT_FALSE(facts.ok());
  EXPECT_EQ(ReasonOf(facts.status()), reason::kDuplicateSeries);
}

TEST(ProviderMetricsTest, LimitsArePassedToTheParser) {
  ExpositionLimits limits;
  limits.max_bytes = 16;
  absl::StatusOr<ProviderMetrics> facts =
      ExtractProviderMetrics(HashLine(kHashA, "1"), limits);
  ASSERT_FALSE(facts.ok());
  EXPECT_EQ(ReasonOf(facts.status()), reason::kInputTooLarge);
}

}  // namespace
}  // namespace kmsfleet
