// Tests of the check-report parser and exit-code classification
// (provider_report.h; reference §2.1, §2.3, §2.5).
#include "kmsfleet/core/provider_report.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

testing::Rejection ExpectRejected(std::string_view output,
                                  std::string_view reason) {
  absl::StatusOr<CheckReport> report = ParseCheckReport(output);
  EXPECT_FALSE(report.ok()) << "accepted: " << output;
  if (report.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(report.status()), reason) << report.status();
  return testing::Rejection(report.status());
}

TEST(CheckReportTest, ParsesDoctorJsonWithAWarning) {
  absl::StatusOr<CheckReport> report =
      ParseCheckReport(testing::ReadTestData("doctor_warn.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->name, "doctor");
  ASSERT_EQ(report->checks.size(), 14u);
  EXPECT_EQ(report->checks.front().id, "config.load");
  EXPECT_EQ(report->checks.back().id, "kms.status_encrypt");
  // A warning does not fail doctor (reference §2.1).
  EXPECT_FALSE(report->HasFailures());
  const Check* encryption = report->Find("kubernetes.encryption_config");
  ASSERT_NE(encryption, nullptr);
  EXPECT_EQ(encryption->status, CheckStatus::kWarn);
  EXPECT_EQ(encryption->title, "EncryptionConfiguration");
  EXPECT_EQ(encryption->message, "identity fallback remains configured");
  EXPECT_EQ(report->Find("oauth2.local"), nullptr);  // absent is not a pass
}

TEST(CheckReportTest, ParsesDoctorJsonWithAFailureAndSkips) {
  absl::StatusOr<CheckReport> report =
      ParseCheckReport(testing::ReadTestData("doctor_fail.json"));
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->HasFailures());
  const Check* auth = report->Find("openbao.auth");
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->status, CheckStatus::kFail);
  EXPECT_EQ(report->Find("transit.probe")->status, CheckStatus::kSkip);
}

// The text form is the default output; it must read the same as JSON.
TEST(CheckReportTest, TextFormReadsTheSameAsJsonForm) {
  for (const char* base : {"doctor_warn", "doctor_fail"}) {
    absl::StatusOr<CheckReport> json =
        ParseCheckReport(testing::ReadTestData(std::string(base) + ".json"));
    absl::StatusOr<CheckReport> text =
        ParseCheckReport(testing::ReadTestData(std::string(base) + ".txt"));
    ASSERT_TRUE(json.ok()) << json.status();
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(text->name, json->name);
    ASSERT_EQ(text->checks.size(), json->checks.size()) << base;
    for (size_t i = 0; i < json->checks.size(); ++i) {
      SCOPED_TRACE(json->checks[i].id);
      EXPECT_EQ(text->checks[i].id, json->checks[i].id);
      EXPECT_EQ(text->checks[i].title, json->checks[i].title);
      EXPECT_EQ(text->checks[i].status, json->checks[i].status);
      EXPECT_EQ(text->checks[i].message, json->checks[i].message);
    }
  }
}

TEST(CheckReportTest, TextMessageStartsAfterTheFirstDashSeparator) {
  absl::StatusOr<CheckReport> report = ParseCheckReport(
      "probe\n[fail] kms.key_id: Active key ID - active key differs - check "
      "node identity\n[pass] socket.path: Socket path\n");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->name, "probe");
  EXPECT_EQ(report->checks[0].title, "Active key ID");
  EXPECT_EQ(report->checks[0].message,
            "active key differs - check node identity");
  EXPECT_EQ(report->checks[1].title, "Socket path");
  EXPECT_EQ(report->checks[1].message, "");
}

TEST(CheckReportTest, ProbeKeyIdMessageIsTheRawKeyId) {
  absl::StatusOr<CheckReport> report = ParseCheckReport(R"({
  "name": "probe",
  "checks": [
    {"id": "kms.key_id", "title": "Active key ID", "status": "pass",
     "message": "obk2.C46vNXvepxK6uGknEYrdo2c18AZ9Ipmv-D8ZEAuvOhM"},
    {"id": "client.identity", "title": "Client identity", "status": "warn"}
  ]
})");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->Find("kms.key_id")->message,
            "obk2.C46vNXvepxK6uGknEYrdo2c18AZ9Ipmv-D8ZEAuvOhM");
  EXPECT_EQ(report->Find("client.identity")->message, "");
}

TEST(CheckReportTest, ChecksNullOrAbsentMeansNoChecks) {
  for (const char* json :
       {R"({"name":"doctor"})", R"({"name":"doctor","checks":null})",
        R"({"name":"doctor","checks":[]})"}) {
    absl::StatusOr<CheckReport> report = ParseCheckReport(json);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_TRUE(report->checks.empty());
    EXPECT_FALSE(report->HasFailures());
  }
  absl::StatusOr<CheckReport> text = ParseCheckReport("doctor\n");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_TRUE(text->checks.empty());
}

TEST(CheckReportTest, UnknownJsonKeysAreIgnored) {
  absl::StatusOr<CheckReport> report = ParseCheckReport(
      R"({"name":"doctor","schema":2,"checks":[{"id":"a","title":"A",)"
      R"("status":"pass","durationMs":3}]})");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_EQ(report->checks.size(), 1u);
}

TEST(CheckReportTest, UnknownStatusIsMalformedNamingCheckAndValue) {
  for (const char* output :
       {R"({"name":"doctor","checks":[{"id":"transit.probe","title":"T",)"
        R"("status":"PASS"}]})",
        "doctor\n[PASS] transit.probe: Transit probe\n"}) {
    const absl::Status status =
        ExpectRejected(output, reason::kMalformedReport);
    EXPECT_THAT(status.message(), HasSubstr("transit.probe"));
    EXPECT_THAT(status.message(), HasSubstr("\"PASS\""));
    EXPECT_EQ(MetadataOf(status, "check_id"), "transit.probe");
    EXPECT_EQ(MetadataOf(status, "value"), "PASS");
  }
}

TEST(CheckReportTest, InvalidCheckIdIsMalformed) {
  for (const char* output :
       {R"({"name":"d","checks":[{"id":"a b","title":"T","status":"pass"}]})",
        R"({"name":"d","checks":[{"id":"","title":"T","status":"pass"}]})",
        "d\n[pass] a/b: T\n", "d\n[pass] : T\n"}) {
    const absl::Status status =
        ExpectRejected(output, reason::kMalformedReport);
    EXPECT_THAT(status.message(), HasSubstr("check id")) << output;
  }
}

TEST(CheckReportTest, RepeatedCheckIdIsMalformed) {
  const absl::Status status = ExpectRejected(
      "doctor\n[pass] a.b: A\n[fail] a.b: A again\n", reason::kMalformedReport);
  EXPECT_THAT(status.message(), HasSubstr("check a.b appears twice"));
}

TEST(CheckReportTest, MissingOrIllTypedJsonMembersAreMalformed) {
  struct Case {
    const char* json;
    const char* key;
  };
  for (const Case& c : {
           Case{R"({"checks":[]})", "name"},
           Case{R"({"name":"","checks":[]})", "name"},
           Case{R"({"name":7})", "name"},
           Case{R"({"name":"d","checks":{}})", "checks"},
           Case{R"({"name":"d","checks":[{"title":"T","status":"pass"}]})",
                "id"},
           Case{R"({"name":"d","checks":[{"id":"a","status":"pass"}]})",
                "title"},
           Case{R"({"name":"d","checks":[{"id":"a","title":"T"}]})", "status"},
           Case{R"({"name":"d","checks":[{"id":"a","title":"T",)"
                R"("status":"pass","message":5}]})",
                "message"},
       }) {
    const absl::Status status =
        ExpectRejected(c.json, reason::kMalformedReport);
    EXPECT_THAT(status.message(), HasSubstr(std::string("\"") + c.key + "\""))
        << c.json;
  }
}

TEST(CheckReportTest, CheckThatIsNotAnObjectIsMalformed) {
  const absl::Status status = ExpectRejected(
      R"({"name":"d","checks":["pass"]})", reason::kMalformedReport);
  EXPECT_THAT(status.message(), HasSubstr("checks[0]"));
}

TEST(CheckReportTest, InvalidJsonIsMalformedJson) {
  ExpectRejected("{\"name\": \"doctor\", ", reason::kMalformedJson);
  ExpectRejected("  {]", reason::kMalformedJson);
}

TEST(CheckReportTest, TextLineThatIsNotACheckIsMalformedNamingTheLine) {
  for (const char* output :
       {"doctor\n[pass] a: A\nError: running provider probe failed\n",
        "doctor\n\n[pass]a: A\n", "doctor\n[pass] a: A\n[pass b: B\n",
        "doctor\n[pass] a: A\n[pass] b B\n"}) {
    const absl::Status status =
        ExpectRejected(output, reason::kMalformedReport);
    EXPECT_THAT(status.message(), HasSubstr("line 3")) << output;
  }
}

TEST(CheckReportTest, TextWithoutNameIsMalformed) {
  ExpectRejected("", reason::kMalformedReport);
  ExpectRejected(" \n\t\n", reason::kMalformedReport);
  const absl::Status status =
      ExpectRejected("[pass] a: A\n", reason::kMalformedReport);
  EXPECT_THAT(status.message(), HasSubstr("expected the report name"));
}

TEST(CheckReportTest, OversizedOutputIsTooLarge) {
  ExpectRejected("doctor\n" + std::string(kMaxReportBytes, ' '),
                 reason::kInputTooLarge);
}

TEST(CheckReportTest, CheckStatusNamesAreTheWireValues) {
  EXPECT_EQ(CheckStatusName(CheckStatus::kPass), "pass");
  EXPECT_EQ(CheckStatusName(CheckStatus::kWarn), "warn");
  EXPECT_EQ(CheckStatusName(CheckStatus::kFail), "fail");
  EXPECT_EQ(CheckStatusName(CheckStatus::kSkip), "skip");
}

TEST(ExitCodeTest, DocumentedCodesMapToTheirMeanings) {
  EXPECT_EQ(ClassifyExit(0, ""), ExitMeaning::kOk);
  EXPECT_EQ(ClassifyExit(1, ""), ExitMeaning::kError);
  EXPECT_EQ(ClassifyExit(2, ""), ExitMeaning::kUsage);
  EXPECT_EQ(ClassifyExit(3, ""), ExitMeaning::kConfig);
  EXPECT_EQ(ClassifyExit(4, "running provider probe failed"),
            ExitMeaning::kCheckFailed);
  EXPECT_EQ(ClassifyExit(5, ""), ExitMeaning::kRuntime);
}

TEST(ExitCodeTest, NewerCodesAreTrustedWhateverStderrSays) {
  EXPECT_EQ(ClassifyExit(5, "unknown flag: --x"), ExitMeaning::kRuntime);
  EXPECT_EQ(ClassifyExit(4, "load config: x"), ExitMeaning::kCheckFailed);
}

TEST(ExitCodeTest, OtherCodesAreUnknown) {
  for (int code : {-1, 6, 126, 127, 137, 255}) {
    EXPECT_EQ(ClassifyExit(code, "unknown flag"), ExitMeaning::kUnknown)
        << code;
  }
}

// Older binaries exit 1 where newer ones exit 2 (reference §2.1).
TEST(ExitCodeTest, OlderBinaryUsageErrorsExitingOneAreUsage) {
  for (const char* stderr_text : {
           "Error: unknown command \"rotate\" for \"bao-kms-provider\"",
           "Error: unknown flag: --outptu",
           "Error: unknown shorthand flag: 'x' in -x",
           "unsupported output format \"yaml\": expected text or json",
           "Error: invalid argument \"ten\" for \"--timeout\" flag: time: "
           "invalid duration \"ten\"",
           "Error: flag needs an argument: --config",
           "Error: accepts 0 arg(s), received 1",
           "Error: required flag(s) \"values\" not set",
       }) {
    EXPECT_EQ(ClassifyExit(1, stderr_text), ExitMeaning::kUsage) << stderr_text;
  }
}

// Older binaries exit 1 where newer ones exit 3 (reference §2.1).
TEST(ExitCodeTest, OlderBinaryConfigErrorsExitingOneAreConfig) {
  for (const char* stderr_text : {
           "Error: load config: open /etc/openbao-kms/config.yaml: no such "
           "file or directory",
           "Error: config validation failed: server.socketPath must be "
           "absolute",
           "Error: invalid configuration: openbao.address is required",
           "Error: unsupported configVersion \"v1\"",
       }) {
    EXPECT_EQ(ClassifyExit(1, stderr_text), ExitMeaning::kConfig)
        << stderr_text;
  }
}

TEST(ExitCodeTest, ConfigPathAloneDoesNotMakeAConfigError) {
  EXPECT_EQ(ClassifyExit(1,
                         "Error: write /etc/openbao-kms/config.yaml: "
                         "read-only file system"),
            ExitMeaning::kError);
  EXPECT_EQ(ClassifyExit(1, "Error: transit probe failed: connection refused"),
            ExitMeaning::kError);
}

TEST(ExitCodeTest, ExitMeaningNamesAreStable) {
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kOk), "ok");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kError), "error");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kUsage), "usage");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kConfig), "config");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kCheckFailed), "check_failed");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kRuntime), "runtime");
  EXPECT_EQ(ExitMeaningName(ExitMeaning::kUnknown), "unknown");
}

}  // namespace
}  // namespace kmsfleet
