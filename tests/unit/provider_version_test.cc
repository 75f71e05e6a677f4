// Tests of the `bao-kms-provider version` output parser
// (provider_version.h; reference §2.2).
#include "kmsfleet/core/provider_version.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "test_util.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

// What a release build prints (reference §2.2, .github/workflows/release.yml).
constexpr char kReleaseOutput[] =
    "version: 0.1.0-preview.3\n"
    "commit: 9c1e5b7d04a2f3e6b8c0d1a2e3f4051627384950\n"
    "buildDate: 2026-10-01T09:12:44Z\n"
    "dirty: false\n";

testing::Rejection ExpectMalformed(std::string_view output) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(output);
  EXPECT_FALSE(build.ok()) << "accepted: " << output;
  if (build.ok()) return testing::Rejection(absl::OkStatus());
  EXPECT_EQ(build.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(build.status()), reason::kMalformedVersionOutput)
      << build.status();
  return testing::Rejection(build.status());
}

TEST(ProviderVersionTest, ParsesTheFourLinesOfAReleaseBuild) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(kReleaseOutput);
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->version, "0.1.0-preview.3");
  EXPECT_EQ(build->commit, "9c1e5b7d04a2f3e6b8c0d1a2e3f4051627384950");
  EXPECT_EQ(build->build_date, "2026-10-01T09:12:44Z");
  EXPECT_FALSE(build->dirty);
}

TEST(ProviderVersionTest, ParsesAnUnstampedDirtyBuild) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(
      "version: 0.0.0-dev\ncommit: unknown\nbuildDate: unknown\ndirty: true");
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->version, "0.0.0-dev");
  EXPECT_EQ(build->commit, "unknown");
  EXPECT_TRUE(build->dirty);
}

TEST(ProviderVersionTest, ToleratesCrlfBlankLinesAndSurroundingBlanks) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(
      "\r\nversion:   0.1.0  \r\ncommit:abc\r\n\r\n  dirty: false\r\n\r\n");
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->version, "0.1.0");
  EXPECT_EQ(build->commit, "abc");
  EXPECT_EQ(build->build_date, "");
}

TEST(ProviderVersionTest, UnknownKeysAreIgnoredEvenIfRepeated) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(
      std::string(kReleaseOutput) +
      "goVersion: go1.23.2\nplatform: linux/amd64\nplatform: again\n");
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->version, "0.1.0-preview.3");
}

TEST(ProviderVersionTest, AcceptsCobraVersionFlagForm) {
  absl::StatusOr<ProviderBuild> build =
      ParseVersionOutput("bao-kms-provider version 0.1.0-preview.2\n");
  ASSERT_TRUE(build.ok()) << build.status();
  EXPECT_EQ(build->version, "0.1.0-preview.2");
  EXPECT_EQ(build->commit, "");
  EXPECT_FALSE(build->dirty);
}

TEST(ProviderVersionTest, CobraFormMustBeTheOnlyLine) {
  ExpectMalformed("bao-kms-provider version 0.1.0\nsomething else\n");
  ExpectMalformed("bao-kms-provider version \n");
}

TEST(ProviderVersionTest, MissingVersionIsMalformed) {
  const absl::Status status =
      ExpectMalformed("commit: abc\nbuildDate: x\ndirty: false\n");
  EXPECT_THAT(status.message(), HasSubstr("no `version:` line"));
  ExpectMalformed("");
  ExpectMalformed("\n\n");
}

TEST(ProviderVersionTest, VersionMustBeOneNonEmptyWord) {
  for (const char* output : {"version:\n", "version: 0.1.0 beta\n"}) {
    const absl::Status status = ExpectMalformed(output);
    EXPECT_THAT(status.message(), HasSubstr("line 1"));
  }
}

TEST(ProviderVersionTest, DirtyMustBeTrueOrFalse) {
  const absl::Status status = ExpectMalformed("version: 0.1.0\ndirty: yes\n");
  EXPECT_THAT(status.message(), HasSubstr("line 2"));
  EXPECT_THAT(status.message(), HasSubstr("dirty: yes"));
  EXPECT_EQ(MetadataOf(status, "line"), "2");
}

TEST(ProviderVersionTest, LineWithoutKeyIsMalformed) {
  for (const char* output :
       {"version: 0.1.0\nnot a key value line\n", "version: 0.1.0\n: x\n",
        "version: 0.1.0\nbuild date: x\n"}) {
    const absl::Status status = ExpectMalformed(output);
    EXPECT_THAT(status.message(), HasSubstr("line 2")) << output;
  }
}

TEST(ProviderVersionTest, RepeatedKnownKeyIsMalformed) {
  const absl::Status status =
      ExpectMalformed("version: 0.1.0\nversion: 0.2.0\n");
  EXPECT_THAT(status.message(), HasSubstr("key version appears twice"));
}

TEST(ProviderVersionTest, OversizedOutputIsTooLarge) {
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(
      std::string(kReleaseOutput) + std::string(kMaxVersionOutputBytes, '\n'));
  ASSERT_FALSE(build.ok());
  EXPECT_EQ(ReasonOf(build.status()), reason::kInputTooLarge);
}

}  // namespace
}  // namespace kmsfleet
