// In-process checks of the fake's pure pieces: the ordering and parsing
// rules that decide what the binary prints.
#include <gtest/gtest.h>

#include "duration.h"
#include "http_handlers.h"
#include "key_material.h"
#include "kmsfleet/node/key_id_hash.h"
#include "metrics_text.h"
#include "report.h"
#include "scenario.h"
#include "version_info.h"

namespace kmsfleet::fake {
namespace {

TEST(VersionOrderTest, OnlyTheReleasedPreviewsPredateTheTransitMetadataCheck) {
  for (const char* old : {"0.1.0-preview.1", "0.1.0-preview.3", "0.1.0-preview.3+b7", "0.0.9"}) {
    EXPECT_TRUE(PredatesTransitMetadataCheck(old)) << old;
  }
  for (const char* newer : {"0.1.0-preview.4", "0.1.0-preview.10", "0.1.0", "0.2.0",
                            "0.2.0-evil", "1.0.0", "dev", "0.1.0-preview.3x"}) {
    EXPECT_FALSE(PredatesTransitMetadataCheck(newer)) << newer;
  }
}

TEST(FakeVersionTest, SemVerOrdersPreviewsNumericallyAndReleasesLast) {
  EXPECT_LT(CompareSemVer("0.1.0-preview.2", "0.1.0-preview.3"), 0);
  EXPECT_GT(CompareSemVer("0.1.0-preview.10", "0.1.0-preview.3"), 0);
  EXPECT_GT(CompareSemVer("0.1.0", "0.1.0-preview.3"), 0);
  EXPECT_LT(CompareSemVer("0.0.0-dev", "0.1.0-preview.1"), 0);
  EXPECT_EQ(CompareSemVer("0.1.0-preview.3", "0.1.0-preview.3"), 0);
}

TEST(FakeVersionTest, CommitIsFortyHexAndStablePerVersion) {
  VersionInfo a = DescribeVersion("0.1.0-preview.2");
  EXPECT_EQ(a.commit.size(), 40u);
  EXPECT_EQ(a.commit.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a.commit, DescribeVersion("0.1.0-preview.2").commit);
  EXPECT_NE(a.commit, DescribeVersion("0.1.0-preview.3").commit);
}

// The default key must exercise label values with both '-' and '_'
// (reference §3.1: the hash label is not normalised).
TEST(FakeKeyTest, DefaultKeyHashContainsDashAndUnderscore) {
  std::string key_id = DeriveKeyId(kDefaultKeySeed, 1);
  ASSERT_TRUE(IsWellFormedKeyId(key_id)) << key_id;
  std::string hash = kmsfleet::KeyIdHash(key_id);
  EXPECT_NE(hash.find('-'), std::string::npos) << hash;
  EXPECT_NE(hash.find('_'), std::string::npos) << hash;
}

TEST(FakeKeyTest, CiphertextOnlyDecryptsUnderItsKey) {
  std::string a = DeriveKeyId("a", 1), b = DeriveKeyId("a", 2);
  std::string ciphertext = FakeEncrypt(a, "secret dek");
  EXPECT_EQ(FakeDecrypt(a, ciphertext), "secret dek");
  EXPECT_FALSE(FakeDecrypt(b, ciphertext).has_value());
}

TEST(FakeScenarioTest, UnknownKeyIsRejectedNamingFileAndKey) {
  auto parsed = ParseScenario("key_version: 2\nkey_idd: x\n", "/tmp/s.yaml", {});
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("/tmp/s.yaml"), std::string::npos);
  EXPECT_NE(parsed.status().message().find("\"key_idd\""), std::string::npos);
}

TEST(FakeScenarioTest, FakeSetOverridesTheFile) {
  auto parsed = ParseScenario("key_version: 2\nready: true\n", "f",
                              {"ready=false", "doctor={fail: [transit.metadata]}"});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->key_version, 2);
  EXPECT_FALSE(parsed->ready);
  EXPECT_EQ(parsed->doctor_fail.count("transit.metadata"), 1u);
}

TEST(FakeScenarioTest, TypoInDoctorCheckIdIsAnError) {
  EXPECT_FALSE(ParseScenario("doctor: {fail: [transit.metdata]}", "f", {}).ok());
}

TEST(FakeScenarioTest, EmptyKeyIdMeansNoActiveKey) {
  auto parsed = ParseScenario("key_id: \"\"\n", "f", {});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->ActiveKeyId(), "");
  EXPECT_EQ(ReadyReasons(*parsed), std::vector<std::string>{"state_unavailable"});
}

TEST(FakeScenarioTest, NotReadyDefaultsToDeepProbeFailed) {
  auto parsed = ParseScenario("ready: false\n", "f", {});
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(ReadyReasons(*parsed), std::vector<std::string>{"deep_probe_failed"});
}

TEST(FakeReportTest, JsonOmitsEmptyMessageAndIndentsTwoSpaces) {
  Report report{"doctor", {}};
  report.Add("a.b", "Title", CheckStatus::kPass, "");
  EXPECT_EQ(RenderReport(report, OutputFormat::kJson),
            "{\n  \"name\": \"doctor\",\n  \"checks\": [\n    {\n"
            "      \"id\": \"a.b\",\n      \"title\": \"Title\",\n"
            "      \"status\": \"pass\"\n    }\n  ]\n}\n");
}

TEST(FakeReportTest, OutputFormatIsTrimmedAndCaseFolded) {
  EXPECT_EQ(*ParseOutputFormat(" JSON "), OutputFormat::kJson);
  auto xml = ParseOutputFormat("xml");
  ASSERT_FALSE(xml.ok());
  EXPECT_EQ(xml.status().message(), "unsupported output format \"xml\": expected text or json");
}

TEST(FakeDurationTest, ParsesGoDurations) {
  EXPECT_EQ(ParseGoDuration("1m30s"), std::chrono::seconds(90));
  EXPECT_EQ(ParseGoDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_FALSE(ParseGoDuration("10").has_value());
  EXPECT_FALSE(ParseGoDuration("soon").has_value());
}

TEST(FakeMetricsTest, BuildInfoFollowsVersionUnlessScenarioSays) {
  Scenario scenario;
  scenario.key_seed = kDefaultKeySeed;
  MetricsInputs inputs;
  inputs.scenario = &scenario;
  inputs.version = DescribeVersion("0.1.0-preview.2");
  EXPECT_EQ(RenderMetrics(inputs).find("openbao_kms_build_info"), std::string::npos);
  inputs.version = DescribeVersion("0.1.0-preview.3");
  EXPECT_NE(RenderMetrics(inputs).find("openbao_kms_build_info{version=\"0.1.0-preview.3\""),
            std::string::npos);
  scenario.build_info = false;
  EXPECT_EQ(RenderMetrics(inputs).find("openbao_kms_build_info"), std::string::npos);
}

TEST(FakeMetricsTest, RotationStateHasThreeSeriesWithOneSet) {
  Scenario scenario;
  scenario.key_seed = kDefaultKeySeed;
  scenario.rotation_state = "pending";
  MetricsInputs inputs;
  inputs.scenario = &scenario;
  std::string text = RenderMetrics(inputs);
  EXPECT_NE(text.find("openbao_kms_rotation_state{state=\"active\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("openbao_kms_rotation_state{state=\"pending\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("openbao_kms_rotation_state{state=\"unknown\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace kmsfleet::fake
