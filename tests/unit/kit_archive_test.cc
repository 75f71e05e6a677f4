// Reading image-ref.txt out of a static-pod kit (kit_archive.h): kits made
// by GNU tar and gzip here, as upstream's are a gzip-compressed tar.
#include "kmsfleet/node/kit_archive.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/static_pod_release.h"
#include "kmsfleet/node/subprocess.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

constexpr char kImage[] = "ghcr.io/dc-tec/bao-kms-provider@sha256:"
                          "1111111111111111111111111111111111111111111111111111111111111111";

class KitArchiveTest : public ::testing::Test {
 protected:
  // tar -czf <name> <files...> in dir_, each file relative to it.
  std::string Kit(const std::string& name, const std::vector<std::string>& files,
                  const std::vector<std::string>& tar_options = {}) {
    std::vector<std::string> argv = {"/bin/tar", "-C", dir_.path(), "-czf", dir_.File(name)};
    argv.insert(argv.end(), tar_options.begin(), tar_options.end());
    argv.insert(argv.end(), files.begin(), files.end());
    absl::StatusOr<SubprocessResult> r = RunSubprocess(argv, {});
    EXPECT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? r->stderr_text : r.status().ToString());
    return dir_.File(name);
  }
  void Put(const std::string& relative, const std::string& content) {
    std::filesystem::create_directories(
        std::filesystem::path(dir_.File(relative)).parent_path());
    testing::WriteFile(dir_.File(relative), content);
  }
  absl::StatusOr<std::string> Read(const std::string& kit, std::string sha = "") {
    if (sha.empty()) sha = *Sha256File(kit);
    return ReadFileFromKit({.path = kit, .expected_sha256 = sha, .name = "image-ref.txt"});
  }

  testing::TempDir dir_;
};

TEST_F(KitArchiveTest, ReadsImageRefFromTheKitsTopDirectory) {
  Put("kit-0.2.0/bin/bao-kms-provider", std::string(200000, 'x'));
  Put("kit-0.2.0/image-ref.txt", std::string(kImage) + "\n");
  const std::string kit = Kit("kit.tar.gz", {"kit-0.2.0/bin/bao-kms-provider",
                                             "kit-0.2.0/image-ref.txt"});
  absl::StatusOr<std::string> text = Read(kit);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, std::string(kImage) + "\n");
}

TEST_F(KitArchiveTest, ALongTopDirectoryNameIsFollowed) {
  const std::string top(120, 'd');  // over ustar's 100-byte name field
  Put(top + "/image-ref.txt", kImage);
  const std::string kit = Kit("kit.tar.gz", {top + "/image-ref.txt"}, {"--format=gnu"});
  EXPECT_EQ(Read(kit).value_or(""), kImage);
  const std::string pax = Kit("pax.tar.gz", {top + "/image-ref.txt"}, {"--format=pax"});
  EXPECT_EQ(Read(pax).value_or(""), kImage);
}

// Trust comes from checksums.txt: a kit with another digest yields nothing.
TEST_F(KitArchiveTest, AKitWithAnotherDigestYieldsNothing) {
  Put("k/image-ref.txt", kImage);
  const std::string kit = Kit("kit.tar.gz", {"k/image-ref.txt"});
  absl::StatusOr<std::string> text = Read(kit, std::string(64, '0'));
  EXPECT_EQ(ReasonOf(text.status()), reason::kChecksumMismatch) << text.status();
  EXPECT_THAT(text.status().message(), HasSubstr(kit));
}

TEST_F(KitArchiveTest, AKitWithoutTheFileOrNotGzipIsMalformed) {
  Put("k/README.md", "no image here");
  Put("k/deeper/image-ref.txt", kImage);  // not at the top
  const std::string kit = Kit("kit.tar.gz", {"k/README.md", "k/deeper/image-ref.txt"});
  absl::StatusOr<std::string> text = Read(kit);
  EXPECT_EQ(ReasonOf(text.status()), reason::kKitMalformed) << text.status();
  EXPECT_THAT(text.status().message(), HasSubstr("has no image-ref.txt"));
  Put("plain.tar.gz", "image-ref.txt is not in here either");
  text = Read(dir_.File("plain.tar.gz"));
  EXPECT_EQ(ReasonOf(text.status()), reason::kKitMalformed) << text.status();
  EXPECT_THAT(text.status().message(), HasSubstr("not a gzip stream"));
}

TEST_F(KitArchiveTest, AnOversizedImageRefOrKitIsRefused) {
  Put("k/image-ref.txt", std::string(5000, 'x'));
  const std::string kit = Kit("kit.tar.gz", {"k/image-ref.txt"});
  absl::StatusOr<std::string> text = Read(kit);
  EXPECT_EQ(ReasonOf(text.status()), reason::kKitMalformed) << text.status();
  EXPECT_THAT(text.status().message(), HasSubstr("5000 bytes, over 4096"));
  text = ReadFileFromKit(
      {.path = kit, .expected_sha256 = *Sha256File(kit), .name = "image-ref.txt",
       .max_kit_bytes = 10});
  EXPECT_EQ(ReasonOf(text.status()), reason::kKitMalformed) << text.status();
}

TEST_F(KitArchiveTest, ASymlinkedKitIsRefused) {
  Put("k/image-ref.txt", kImage);
  const std::string kit = Kit("kit.tar.gz", {"k/image-ref.txt"});
  ASSERT_EQ(symlink(kit.c_str(), dir_.File("link.tar.gz").c_str()), 0);
  absl::StatusOr<std::string> text = Read(dir_.File("link.tar.gz"), *Sha256File(kit));
  EXPECT_EQ(ReasonOf(text.status()), reason::kArtifactIo) << text.status();
}

// Found in review: any error finding the kit in checksums.txt read as "not
// listed" (IMAGE_REF_UNVERIFIED), hiding the line at fault; an unsigned
// stage then took an image-ref.txt listed twice without hashing it.
TEST_F(KitArchiveTest, AChecksumsFileAtFaultIsNamedNotCalledUnlisted) {
  Put("image-ref.txt", std::string(kImage) + "\n");
  const std::string ref = dir_.File("image-ref.txt");
  const std::string sums = dir_.File("checksums.txt");
  const std::string twice = std::string(64, 'a') + "  image-ref.txt\n" +
                            std::string(64, 'b') + "  image-ref.txt\n";
  for (bool is_signed : {true, false}) {
    absl::StatusOr<std::string> read =
        ReadVouchedImageRef("0.2.0", ref, twice, sums, is_signed, 1 << 20);
    EXPECT_EQ(ReasonOf(read.status()), reason::kChecksumAmbiguous) << read.status();
  }
  absl::StatusOr<std::string> unlisted =
      ReadVouchedImageRef("0.2.0", ref, std::string(64, 'a') + "  other\n", sums, true, 1 << 20);
  EXPECT_EQ(ReasonOf(unlisted.status()), reason::kImageRefUnverified) << unlisted.status();
}

}  // namespace
}  // namespace kmsfleet
