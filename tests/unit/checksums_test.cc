// checksums.txt lookup: exactly one well-formed line per artifact.
#include "kmsfleet/core/checksums.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::string kA(64, 'a');
const std::string kB(64, 'B');

TEST(ChecksumsTest, FindsTheOneLineByName) {
  std::string text = kA + "  bao-kms-provider_0.2.0_linux_amd64\n" + kB +
                     " *bao-kms-provider_0.2.0_linux_arm64\n\n";
  absl::StatusOr<std::string> d =
      FindChecksum(text, "bao-kms-provider_0.2.0_linux_arm64", "checksums.txt");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, std::string(64, 'b'));  // lower-cased
}

TEST(ChecksumsTest, NameMustMatchExactly) {
  std::string text = kA + "  bao-kms-provider_0.2.0_linux_amd64.deb\n";
  absl::StatusOr<std::string> d =
      FindChecksum(text, "bao-kms-provider_0.2.0_linux_amd64", "c.txt");
  EXPECT_EQ(ReasonOf(d.status()), reason::kChecksumNotListed);
  EXPECT_NE(d.status().message().find("c.txt"), std::string::npos);
}

TEST(ChecksumsTest, TwoLinesForOneNameAreAmbiguous) {
  std::string text = kA + "  x\n" + kB + "  x\n";
  EXPECT_EQ(ReasonOf(FindChecksum(text, "x", "c").status()),
            reason::kChecksumAmbiguous);
}

TEST(ChecksumsTest, MalformedLinesAreRefusedWithTheirNumber) {
  for (std::string bad : {std::string(63, 'a') + "  x", kA + " x",
                          std::string(63, 'a') + "g  x", kA + "\tx"}) {
    absl::StatusOr<std::string> d = FindChecksum("\n" + bad + "\n", "x", "c");
    EXPECT_EQ(ReasonOf(d.status()), reason::kMalformedChecksums) << bad;
    EXPECT_EQ(MetadataOf(d.status(), "line"), "2") << bad;
  }
}

TEST(ChecksumsTest, OversizedInputIsRefused) {
  std::string big(kMaxChecksumsBytes + 1, '\n');
  EXPECT_EQ(ReasonOf(FindChecksum(big, "x", "c").status()),
            reason::kInputTooLarge);
}

TEST(ChecksumsTest, SafeFileNames) {
  EXPECT_TRUE(IsSafeFileName("bao-kms-provider_0.1.0-preview.3_linux_amd64"));
  EXPECT_TRUE(IsSafeFileName("0.2.0+build.1"));
  for (const char* bad : {"", ".", "..", "a/b", "-rf", "a b", "x\n"}) {
    EXPECT_FALSE(IsSafeFileName(bad)) << bad;
  }
}

}  // namespace
}  // namespace kmsfleet
