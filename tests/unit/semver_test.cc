// Tests of strict SemVer 2.0.0 parsing and precedence (semver.h).
#include "kmsfleet/core/semver.h"

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

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

SemVer MustParse(std::string_view text) {
  absl::StatusOr<SemVer> version = SemVer::Parse(text);
  EXPECT_TRUE(version.ok()) << version.status();
  return version.ok() ? *version : SemVer();
}

// Checks that `chain` is strictly increasing in every pair, both ways.
void ExpectStrictlyIncreasing(const std::vector<std::string>& chain) {
  for (size_t i = 0; i < chain.size(); ++i) {
    for (size_t j = 0; j < chain.size(); ++j) {
      const SemVer a = MustParse(chain[i]);
      const SemVer b = MustParse(chain[j]);
      SCOPED_TRACE(chain[i] + " vs " + chain[j]);
      if (i < j) {
        EXPECT_LT(a.Compare(b), 0);
        EXPECT_TRUE(a < b);
      } else if (i > j) {
        EXPECT_GT(a.Compare(b), 0);
        EXPECT_TRUE(a > b);
      } else {
        EXPECT_EQ(a.Compare(b), 0);
        EXPECT_TRUE(a == b);
      }
    }
  }
}

TEST(SemVerTest, ParsesCorePrereleaseAndBuild) {
  const SemVer version = MustParse("0.1.0-preview.3+sha.9c1e5b7");
  EXPECT_EQ(version.major(), 0u);
  EXPECT_EQ(version.minor(), 1u);
  EXPECT_EQ(version.patch(), 0u);
  EXPECT_THAT(version.prerelease(), ElementsAre("preview", "3"));
  EXPECT_EQ(version.build(), "sha.9c1e5b7");
  EXPECT_TRUE(version.is_prerelease());
}

TEST(SemVerTest, ReleaseHasNoPrerelease) {
  const SemVer version = MustParse("10.20.30");
  EXPECT_EQ(version.major(), 10u);
  EXPECT_THAT(version.prerelease(), IsEmpty());
  EXPECT_EQ(version.build(), "");
  EXPECT_FALSE(version.is_prerelease());
}

TEST(SemVerTest, DefaultIsZeroZeroZero) {
  EXPECT_EQ(SemVer().ToString(), "0.0.0");
  EXPECT_TRUE(SemVer() == MustParse("0.0.0"));
}

TEST(SemVerTest, ToStringRoundTrips) {
  for (const char* text :
       {"0.0.0", "1.2.3", "0.1.0-preview.3", "1.0.0-alpha-a.b-c+build.1-aef",
        "1.2.3----RC-SNAPSHOT.12.9.1--.12+788", "18446744073709551615.0.0"}) {
    EXPECT_EQ(MustParse(text).ToString(), text);
  }
}

TEST(SemVerTest, AcceptsEdgesTheGrammarAllows) {
  for (const char* text :
       {"1.2.3-0", "1.2.3-0a", "1.2.3-a0", "1.2.3-0-0", "1.2.3+001",
        "1.2.3+0.0", "1.2.3--", "1.0.0-x-y-z.--", "1.0.0-alpha+beta"}) {
    EXPECT_TRUE(SemVer::Parse(text).ok()) << text;
  }
}

// The example of SemVer 2.0.0 §11.4, in order.
TEST(SemVerTest, SpecPrecedenceChainIsOrdered) {
  ExpectStrictlyIncreasing({"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta",
                            "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
                            "1.0.0-rc.1", "1.0.0"});
}

// The example of SemVer 2.0.0 §11.2.
TEST(SemVerTest, CoreNumbersCompareNumerically) {
  ExpectStrictlyIncreasing(
      {"1.0.0", "2.0.0", "2.1.0", "2.1.1", "2.10.0", "10.0.0"});
}

TEST(SemVerTest, ProviderPreviewsOrderAsReleased) {
  ExpectStrictlyIncreasing({"0.0.0-dev", "0.1.0-preview.1", "0.1.0-preview.2",
                            "0.1.0-preview.3", "0.1.0-preview.10", "0.1.0",
                            "0.1.1-preview.1", "0.2.0"});
}

TEST(SemVerTest, NumericIdentifiersRankBelowAlphanumericOnes) {
  ExpectStrictlyIncreasing(
      {"1.0.0-2", "1.0.0-10", "1.0.0-10a", "1.0.0-A", "1.0.0-a", "1.0.0-a.1"});
}

TEST(SemVerTest, NumericIdentifiersBeyond64BitsCompareNumerically) {
  ExpectStrictlyIncreasing({"1.0.0-9999", "1.0.0-99999999999999999999",
                            "1.0.0-100000000000000000000"});
}

TEST(SemVerTest, BuildMetadataIsIgnoredForPrecedence) {
  const SemVer a = MustParse("1.0.0+20130313144700");
  const SemVer b = MustParse("1.0.0+exp.sha.5114f85");
  EXPECT_EQ(a.Compare(b), 0);
  EXPECT_TRUE(a == b);
  EXPECT_FALSE(a < b);
  EXPECT_TRUE(a <= b && a >= b);
  EXPECT_NE(a.ToString(), b.ToString());
}

TEST(SemVerTest, OperatorsFollowCompare) {
  const SemVer low = MustParse("0.1.0-preview.2");
  const SemVer high = MustParse("0.1.0-preview.3");
  EXPECT_TRUE(low < high);
  EXPECT_TRUE(low <= high);
  EXPECT_TRUE(high > low);
  EXPECT_TRUE(high >= low);
  EXPECT_TRUE(low != high);
  EXPECT_FALSE(low == high);
}

struct Rejected {
  std::string text;
  const char* rule;  // a phrase the message must contain
};

// Prints the text, escaped and cut short, to name the test for ctest.
void PrintTo(const Rejected& c, std::ostream* os) {
  const std::string_view text = std::string_view(c.text).substr(0, 24);
  *os << "'";
  for (char ch : text) {
    if (ch >= 0x21 && ch < 0x7F) {
      *os << ch;
    } else {
      *os << "%" << std::hex << (static_cast<unsigned>(ch) & 0xFF) << std::dec;
    }
  }
  *os << (c.text.size() > text.size() ? "...'" : "'");
}

class SemVerRejectTest : public ::testing::TestWithParam<Rejected> {};

TEST_P(SemVerRejectTest, IsInvalidNamingTextAndRule) {
  absl::StatusOr<SemVer> version = SemVer::Parse(GetParam().text);
  ASSERT_FALSE(version.ok()) << "accepted: " << GetParam().text;
  EXPECT_EQ(version.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(version.status()), reason::kInvalidSemver);
  EXPECT_THAT(version.status().message(), HasSubstr(GetParam().rule));
  // Short printable texts appear verbatim; others are cut or escaped.
  const std::string& text = GetParam().text;
  const bool printable = std::all_of(
      text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
  if (text.size() <= 80 && printable) {
    EXPECT_THAT(version.status().message(),
                HasSubstr("\"" + GetParam().text + "\""));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Grammar, SemVerRejectTest,
    ::testing::Values(
        Rejected{"v1.2.3", "leading 'v'"}, Rejected{"V1.2.3", "leading 'v'"},
        Rejected{"", "empty"}, Rejected{"1.2", "MAJOR.MINOR.PATCH"},
        Rejected{"1", "MAJOR.MINOR.PATCH"},
        Rejected{"1.2.3.4", "MAJOR.MINOR.PATCH"},
        Rejected{"1..3", "minor \"\" is not a non-empty decimal number"},
        Rejected{"1.2.", "patch"}, Rejected{"a.b.c", "major"},
        Rejected{"01.2.3", "major \"01\" has a leading zero"},
        Rejected{"1.02.3", "minor \"02\" has a leading zero"},
        Rejected{"1.2.03", "patch \"03\" has a leading zero"},
        Rejected{"1.2.3-01", "numeric identifier \"01\""},
        Rejected{"1.2.3-alpha.007", "leading zero"},
        Rejected{"1.2.3-", "empty identifier in the pre-release"},
        Rejected{"1.2.3+", "empty identifier in the build metadata"},
        Rejected{"1.2.3-a..b", "empty identifier in the pre-release"},
        Rejected{"1.2.3+a..b", "empty identifier in the build metadata"},
        Rejected{"1.2.3-a_b", "outside [0-9A-Za-z-]"},
        Rejected{"1.2.3+a+b", "outside [0-9A-Za-z-]"},
        Rejected{"1.2.3-pr\xC3\xA9view", "outside [0-9A-Za-z-]"},
        Rejected{"1.2.3-\x80", "outside [0-9A-Za-z-]"},
        Rejected{"\xEF\xBC\x91.2.3", "major"}, Rejected{" 1.2.3", "major"},
        Rejected{"1.2.3 ", "patch"}, Rejected{"+1.2.3", "MAJOR.MINOR.PATCH"},
        Rejected{"-1.2.3", "MAJOR.MINOR.PATCH"},
        Rejected{"18446744073709551616.0.0", "major overflows 64 bits"},
        Rejected{"0.0.99999999999999999999", "patch overflows 64 bits"},
        Rejected{"1.0.0-" + std::string(300, 'a'), "longer than 256"}));

TEST(SemVerTest, MessageNeverCarriesRawNonAsciiBytes) {
  absl::StatusOr<SemVer> version = SemVer::Parse("1.2.3-\xC3\xA9");
  ASSERT_FALSE(version.ok());
  EXPECT_THAT(version.status().message(), HasSubstr("\\xc3\\xa9"));
  EXPECT_EQ(MetadataOf(version.status(), "text"), "1.2.3-\\xc3\\xa9");
}

}  // namespace
}  // namespace kmsfleet
