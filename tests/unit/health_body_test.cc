// Tests of the /ready and /live body parsers (health_body.h; reference §3).
#include "kmsfleet/core/health_body.h"

#include <ostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

testing::Rejection ExpectReadyRejected(std::string_view json,
                                       std::string_view reason) {
  absl::StatusOr<ReadyBody> body = ParseReadyBody(json);
  EXPECT_FALSE(body.ok()) << "accepted: " << json;
  if (body.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(body.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(body.status()), reason) << body.status();
  return testing::Rejection(body.status());
}

TEST(HealthBodyTest, ParsesReadyBodyOfA200) {
  absl::StatusOr<ReadyBody> body =
      ParseReadyBody(testing::ReadTestData("ready_200.json"));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->status, "ok");
  EXPECT_THAT(body->reasons, IsEmpty());
  EXPECT_EQ(body->healthz, "ok");
  EXPECT_EQ(body->cache_age_ms, 4218);
  EXPECT_FALSE(body->stale);
  EXPECT_EQ(body->rotation_state, "active");
  EXPECT_EQ(body->metadata_error_class, "");
  EXPECT_EQ(body->deep_error_class, "");
}

TEST(HealthBodyTest, ParsesReadyBodyOfA503) {
  absl::StatusOr<ReadyBody> body =
      ParseReadyBody(testing::ReadTestData("ready_503.json"));
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->status, "unavailable");
  EXPECT_THAT(body->reasons, ElementsAre("status_stale", "deep_probe_failed"));
  EXPECT_EQ(body->healthz, "unhealthy");
  EXPECT_EQ(body->cache_age_ms, 131004);
  EXPECT_TRUE(body->stale);
  EXPECT_EQ(body->deep_error_class, "openbao_unavailable");
}

TEST(HealthBodyTest, DiagnosticsUnavailableBodyHasOnlyStatusAndReasons) {
  absl::StatusOr<ReadyBody> body = ParseReadyBody(
      R"({"status":"unavailable","reasons":["diagnostics_unavailable"]})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_THAT(body->reasons, ElementsAre("diagnostics_unavailable"));
  EXPECT_FALSE(body->cache_age_ms.has_value());
  EXPECT_FALSE(body->stale);
}

TEST(HealthBodyTest, ReasonsMayBeEmptyNullOrAbsent) {
  for (const char* json :
       {R"({"status":"ok","reasons":[]})", R"({"status":"ok","reasons":null})",
        R"({"status":"ok"})"}) {
    absl::StatusOr<ReadyBody> body = ParseReadyBody(json);
    ASSERT_TRUE(body.ok()) << json << ": " << body.status();
    EXPECT_THAT(body->reasons, IsEmpty()) << json;
  }
}

TEST(HealthBodyTest, NullReadsLikeAnAbsentKey) {
  absl::StatusOr<ReadyBody> body = ParseReadyBody(
      R"({"status":"ok","healthz":null,"cache_age_ms":null,"stale":null})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->healthz, "");
  EXPECT_FALSE(body->cache_age_ms.has_value());
}

TEST(HealthBodyTest, UnknownKeysAreIgnored) {
  absl::StatusOr<ReadyBody> body = ParseReadyBody(
      R"({"status":"ok","persistence_warning":{"class":"deferred"},"x":[1]})");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(body->status, "ok");
}

struct WrongType {
  const char* json;
  const char* key;
  const char* shown;  // how the message shows the value
};

void PrintTo(const WrongType& c, std::ostream* os) {
  *os << c.key << "=" << c.shown;
}

class ReadyWrongTypeTest : public ::testing::TestWithParam<WrongType> {};

TEST_P(ReadyWrongTypeTest, WrongTypeIsMalformedNamingKeyAndValue) {
  const absl::Status status =
      ExpectReadyRejected(GetParam().json, reason::kMalformedJson);
  EXPECT_THAT(status.message(),
              HasSubstr(std::string("\"") + GetParam().key + "\""));
  EXPECT_THAT(status.message(), HasSubstr(GetParam().shown));
  EXPECT_EQ(MetadataOf(status, "key"), GetParam().key);
  EXPECT_EQ(MetadataOf(status, "value"), GetParam().shown);
}

INSTANTIATE_TEST_SUITE_P(
    ReadyBody, ReadyWrongTypeTest,
    ::testing::Values(
        WrongType{R"({"status":"ok","stale":"yes"})", "stale", R"("yes")"},
        WrongType{R"({"status":"ok","cache_age_ms":"12"})", "cache_age_ms",
                  R"("12")"},
        WrongType{R"({"status":"ok","cache_age_ms":1.5})", "cache_age_ms",
                  "1.5E0"},
        WrongType{R"({"status":"ok","cache_age_ms":9223372036854775808})",
                  "cache_age_ms", "9223372036854775808"},
        WrongType{R"({"status":"ok","reasons":"status_stale"})", "reasons",
                  R"("status_stale")"},
        WrongType{R"({"status":"ok","reasons":["a",1]})", "reasons",
                  R"(["a",1])"},
        WrongType{R"({"status":1})", "status", "1"},
        WrongType{R"({"status":"ok","healthz":true})", "healthz", "true"},
        WrongType{R"({"status":"ok","rotation_state":{}})", "rotation_state",
                  "{}"}));

TEST(HealthBodyTest, MissingStatusIsMalformed) {
  for (const char* json : {R"({"reasons":[]})", R"({"status":null})"}) {
    const absl::Status status =
        ExpectReadyRejected(json, reason::kMalformedJson);
    EXPECT_THAT(status.message(), HasSubstr("no \"status\" key"));
  }
}

TEST(HealthBodyTest, TextThatIsNotAJsonObjectIsMalformed) {
  for (const char* json :
       {"", "[]", "\"ok\"", "{", "{\"status\":\"ok\"} x", "ok",
        "{\"status\":\"ok\",}", "{\"status\":\"\xC3\x28\"}"}) {
    ExpectReadyRejected(json, reason::kMalformedJson);
  }
}

TEST(HealthBodyTest, DeepNestingIsMalformed) {
  const std::string deep = R"({"status":"ok","x":)" + std::string(100, '[') +
                           std::string(100, ']') + "}";
  ExpectReadyRejected(deep, reason::kMalformedJson);
}

TEST(HealthBodyTest, OversizedBodyIsTooLarge) {
  std::string big = R"({"status":"ok","pad":")";
  big += std::string(kMaxHealthBodyBytes, 'x') + "\"}";
  ExpectReadyRejected(big, reason::kInputTooLarge);
  absl::StatusOr<LiveBody> live = ParseLiveBody(big);
  ASSERT_FALSE(live.ok());
  EXPECT_EQ(ReasonOf(live.status()), reason::kInputTooLarge);
}

TEST(HealthBodyTest, ParsesLiveBodies) {
  absl::StatusOr<LiveBody> ok = ParseLiveBody("{\"status\":\"ok\"}\n");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, "ok");
  absl::StatusOr<LiveBody> down = ParseLiveBody(R"({"status":"unavailable"})");
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->status, "unavailable");
}

TEST(HealthBodyTest, LiveBodyWithoutStringStatusIsMalformed) {
  for (const char* json : {"{}", R"({"status":false})", "null"}) {
    absl::StatusOr<LiveBody> body = ParseLiveBody(json);
    ASSERT_FALSE(body.ok()) << json;
    EXPECT_EQ(ReasonOf(body.status()), reason::kMalformedJson);
  }
}

}  // namespace
}  // namespace kmsfleet
