// Tests of the rotation-report parser (provider_report.h; reference §2.6).
#include <ostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

constexpr char kHashA[] = "UkPT2pXxYomOU_jD-ogCOXoOMmGd-JxBHK1XETCA4ps";
constexpr char kHashB[] = "I0yMMn4cdayH6jzma04Da_QgfUM-VqA9_5_0DoIBP58";

// The smallest report a binary without local state prints.
constexpr char kNoStateJson[] = R"({
  "name": "rotation-plan",
  "transitMetadataStatus": "pass",
  "stateLoaded": false,
  "stateCheckpointLoaded": false,
  "stateCheckpointStatus": "absent",
  "stateBootstrapEligible": true,
  "stateBootstrapReason": "initial state for an unrotated key",
  "rotationState": "unknown"
})";

testing::Rejection ExpectRejected(std::string_view output,
                                  std::string_view reason) {
  absl::StatusOr<RotationReport> report = ParseRotationReport(output);
  EXPECT_FALSE(report.ok()) << "accepted: " << output;
  if (report.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(report.status()), reason) << report.status();
  return testing::Rejection(report.status());
}

// `json` with the member `"key": old` text replaced by `"key": value`.
std::string Replace(std::string json, std::string_view from,
                    std::string_view to) {
  const size_t at = json.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) json.replace(at, from.size(), to);
  return json;
}

TEST(RotationReportTest, ParsesConvergedPlan) {
  absl::StatusOr<RotationReport> report =
      ParseRotationReport(testing::ReadTestData("rotation_plan_active.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->name, "rotation-plan");
  EXPECT_EQ(report->transit_metadata_status, "pass");
  EXPECT_TRUE(report->state_loaded);
  EXPECT_EQ(report->state_generation, 7u);
  EXPECT_EQ(report->state_hash,
            "krs1.Pq7ZcYv2Lm9sT0aB4nE6wR1xK3dF8gH5jU2iO7lM0qA");
  EXPECT_TRUE(report->state_checkpoint_loaded);
  EXPECT_EQ(report->state_checkpoint_status, "current");
  EXPECT_EQ(report->rotation_state, "active");
  EXPECT_EQ(report->active_key_id_hash, kHashA);
  EXPECT_EQ(report->active_transit_version, 3);
  EXPECT_EQ(report->latest_transit_version, 3);
  EXPECT_EQ(report->pending_key_id_hash, "");
  EXPECT_FALSE(report->pending_transit_version.has_value());
  EXPECT_FALSE(report->state_bootstrap_eligible.has_value());
}

TEST(RotationReportTest, ParsesPendingPlan) {
  absl::StatusOr<RotationReport> report =
      ParseRotationReport(testing::ReadTestData("rotation_plan_pending.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->rotation_state, "pending");
  EXPECT_EQ(report->latest_transit_version, 4);
  EXPECT_EQ(report->pending_key_id_hash, kHashB);
  EXPECT_EQ(report->pending_transit_version, 4);
  EXPECT_EQ(report->pending_stable_observation_count, 3);
  EXPECT_EQ(report->pending_promotes_after, "2026-10-02T14:05:00Z");
}

TEST(RotationReportTest, TextFormReadsTheSameAsJsonForm) {
  absl::StatusOr<RotationReport> json =
      ParseRotationReport(testing::ReadTestData("rotation_plan_pending.json"));
  absl::StatusOr<RotationReport> text =
      ParseRotationReport(testing::ReadTestData("rotation_plan_pending.txt"));
  ASSERT_TRUE(json.ok()) << json.status();
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->name, json->name);
  EXPECT_EQ(text->transit_metadata_status, json->transit_metadata_status);
  EXPECT_EQ(text->state_loaded, json->state_loaded);
  EXPECT_EQ(text->state_generation, json->state_generation);
  EXPECT_EQ(text->state_hash, json->state_hash);
  EXPECT_EQ(text->state_checkpoint_loaded, json->state_checkpoint_loaded);
  EXPECT_EQ(text->state_checkpoint_status, json->state_checkpoint_status);
  EXPECT_EQ(text->rotation_state, json->rotation_state);
  EXPECT_EQ(text->active_key_id_hash, json->active_key_id_hash);
  EXPECT_EQ(text->active_transit_version, json->active_transit_version);
  EXPECT_EQ(text->latest_transit_version, json->latest_transit_version);
  EXPECT_EQ(text->pending_key_id_hash, json->pending_key_id_hash);
  EXPECT_EQ(text->pending_transit_version, json->pending_transit_version);
  EXPECT_EQ(text->pending_stable_observation_count,
            json->pending_stable_observation_count);
  // The value holds colons; only the first one separates the key.
  EXPECT_EQ(text->pending_promotes_after, json->pending_promotes_after);
}

TEST(RotationReportTest, VerifyRotationExtraKeysAreIgnored) {
  absl::StatusOr<RotationReport> report =
      ParseRotationReport(testing::ReadTestData("verify_rotation.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->name, "verify-rotation");
  EXPECT_EQ(report->rotation_state, "active");
}

TEST(RotationReportTest, ReportWithoutStateCarriesBootstrapFields) {
  absl::StatusOr<RotationReport> report = ParseRotationReport(kNoStateJson);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(report->state_loaded);
  EXPECT_EQ(report->state_checkpoint_status, "absent");
  EXPECT_EQ(report->state_bootstrap_eligible, true);
  EXPECT_EQ(report->state_bootstrap_reason,
            "initial state for an unrotated key");
  EXPECT_FALSE(report->state_generation.has_value());
}

// Binaries before the Unreleased line print no transitMetadata* keys.
TEST(RotationReportTest, OlderBinaryWithoutMetadataStatusReadsAsEmpty) {
  const std::string json =
      Replace(kNoStateJson, R"("transitMetadataStatus": "pass",)", "");
  absl::StatusOr<RotationReport> report = ParseRotationReport(json);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->transit_metadata_status, "");
}

TEST(RotationReportTest, FailedMetadataReadCarriesTheRedactedError) {
  const std::string json = Replace(
      kNoStateJson, R"("transitMetadataStatus": "pass",)",
      R"("transitMetadataStatus": "fail", "transitMetadataError": "permission denied",)");
  absl::StatusOr<RotationReport> report = ParseRotationReport(json);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->transit_metadata_status, "fail");
  EXPECT_EQ(report->transit_metadata_error, "permission denied");
}

TEST(RotationReportTest, MissingRequiredKeyIsMalformed) {
  for (const char* member :
       {R"("name": "rotation-plan",)", R"("stateLoaded": false,)",
        R"("stateCheckpointLoaded": false,)"}) {
    const absl::Status status = ExpectRejected(
        Replace(kNoStateJson, member, ""), reason::kMalformedReport);
    EXPECT_THAT(status.message(), HasSubstr("has no")) << member;
  }
  const absl::Status status = ExpectRejected(Replace(kNoStateJson, R"(,
  "rotationState": "unknown")",
                                                     ""),
                                             reason::kMalformedReport);
  EXPECT_EQ(MetadataOf(status, "key"), "rotationState");
}

struct BadMember {
  const char* from;
  const char* to;
  const char* key;
  const char* value;  // as the message shows it
};

void PrintTo(const BadMember& c, std::ostream* os) {
  *os << c.key << "=" << c.value;
}

class RotationBadMemberTest : public ::testing::TestWithParam<BadMember> {};

TEST_P(RotationBadMemberTest, IsMalformedNamingKeyAndValue) {
  const absl::Status status =
      ExpectRejected(Replace(kNoStateJson, GetParam().from, GetParam().to),
                     reason::kMalformedReport);
  EXPECT_THAT(status.message(),
              HasSubstr(std::string("\"") + GetParam().key + "\""));
  EXPECT_THAT(status.message(), HasSubstr(GetParam().value));
  EXPECT_EQ(MetadataOf(status, "key"), GetParam().key);
}

INSTANTIATE_TEST_SUITE_P(
    Json, RotationBadMemberTest,
    ::testing::Values(
        BadMember{R"("unknown")", R"("paused")", "rotationState", "paused"},
        BadMember{R"("unknown")", R"("")", "rotationState", "\"\""},
        BadMember{R"("absent")", R"("stale")", "stateCheckpointStatus",
                  "stale"},
        BadMember{R"("pass")", R"("ok")", "transitMetadataStatus", "ok"},
        BadMember{R"("stateLoaded": false)", R"("stateLoaded": "false")",
                  "stateLoaded", R"("false")"},
        BadMember{R"("stateLoaded": false,)",
                  R"("stateLoaded": false, "stateGeneration": -1,)",
                  "stateGeneration", "-1"},
        BadMember{R"("stateLoaded": false,)",
                  R"("stateLoaded": false, "activeTransitVersion": 1.5,)",
                  "activeTransitVersion", "1.5"},
        BadMember{R"("stateLoaded": false,)",
                  R"("stateLoaded": false, "activeKeyIdHash": "abc",)",
                  "activeKeyIdHash", "abc"},
        BadMember{R"("stateBootstrapEligible": true)",
                  R"("stateBootstrapEligible": 1)", "stateBootstrapEligible",
                  "1"}));

TEST(RotationReportTest, TextValuesAreCheckedByType) {
  const std::string base =
      "rotation-plan\nstateLoaded: true\nstateCheckpointLoaded: true\n"
      "rotationState: active\n";
  struct Case {
    std::string line;
    const char* key;
  };
  for (const Case& c :
       {Case{"stateGeneration: seven\n", "stateGeneration"},
        Case{"stateGeneration: -7\n", "stateGeneration"},
        Case{"activeTransitVersion: 3.0\n", "activeTransitVersion"},
        Case{"stateBootstrapEligible: yes\n", "stateBootstrapEligible"},
        Case{"pendingKeyIdHash: short\n", "pendingKeyIdHash"},
        Case{"stateCheckpointStatus: stale\n", "stateCheckpointStatus"}}) {
    const absl::Status status =
        ExpectRejected(base + c.line, reason::kMalformedReport);
    EXPECT_EQ(MetadataOf(status, "key"), c.key) << c.line;
  }
  const absl::Status bad_bool = ExpectRejected(
      "rotation-plan\nstateLoaded: TRUE\n", reason::kMalformedReport);
  EXPECT_THAT(bad_bool.message(), HasSubstr("\"TRUE\""));
}

TEST(RotationReportTest, TextLinesMustBeKeyValue) {
  const absl::Status status =
      ExpectRejected("rotation-plan\nstateLoaded: true\nno colon here\n",
                     reason::kMalformedReport);
  EXPECT_THAT(status.message(), HasSubstr("line 3"));
  EXPECT_EQ(MetadataOf(status, "line"), "3");
}

TEST(RotationReportTest, TextKeyGivenTwiceIsMalformed) {
  const absl::Status status = ExpectRejected(
      "rotation-plan\nrotationState: active\nrotationState: pending\n",
      reason::kMalformedReport);
  EXPECT_THAT(status.message(), HasSubstr("appears twice"));
}

TEST(RotationReportTest, TextWithoutRequiredLineIsMalformed) {
  const absl::Status status = ExpectRejected(
      "rotation-plan\nstateLoaded: true\nrotationState: active\n",
      reason::kMalformedReport);
  EXPECT_EQ(MetadataOf(status, "key"), "stateCheckpointLoaded");
  ExpectRejected("", reason::kMalformedReport);
  ExpectRejected("stateLoaded: true\n", reason::kMalformedReport);
}

TEST(RotationReportTest, TextUnknownKeysAreIgnored) {
  absl::StatusOr<RotationReport> report = ParseRotationReport(
      "verify-rotation\r\nstateLoaded: false\r\nstateCheckpointLoaded: "
      "false\r\n"
      "rotationState: unknown\r\nconfidence: limited\r\nlimitations: local "
      "registry: cannot prove everything\r\n");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->name, "verify-rotation");
  EXPECT_EQ(report->rotation_state, "unknown");
}

TEST(RotationReportTest, InvalidJsonIsMalformedJson) {
  ExpectRejected("{\"name\":", reason::kMalformedJson);
}

TEST(RotationReportTest, OversizedOutputIsTooLarge) {
  ExpectRejected(std::string(kMaxReportBytes + 1, '\n'),
                 reason::kInputTooLarge);
}

}  // namespace
}  // namespace kmsfleet
