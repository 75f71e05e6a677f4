// Staging: signatures made with the openssl CLI (ECDSA P-256 and Ed25519),
// checksum lines, and that a failure leaves nothing new behind.
#include "kmsfleet/artifacts.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"

namespace kmsfleet {
namespace {

namespace fs = std::filesystem;
constexpr char kName[] = "bao-kms-provider_0.2.0_linux_amd64";

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void Sh(const std::string& cmd) {
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

class ArtifactsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kfart.XXXXXX";
    dir_ = mkdtemp(tmpl);
    Write(In(kName), "release bytes v0.2.0\n");
    Sh("cd " + dir_ + " && echo x > other && sha256sum " + kName +
       " other > checksums.txt");
    Sh("openssl ecparam -name prime256v1 -genkey -noout -out " + In("ec.key") +
       " && openssl ec -in " + In("ec.key") + " -pubout -out " + In("ec.pub") +
       " 2>/dev/null");
    Sh("openssl genpkey -algorithm ed25519 -out " + In("ed.key") +
       " && openssl pkey -in " + In("ed.key") + " -pubout -out " + In("ed.pub"));
    options_.state_dir = dir_ + "/state";
    fs::create_directory(options_.state_dir);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string In(const std::string& name) const { return dir_ + "/" + name; }
  void SignEc(const std::string& out) {
    Sh("openssl dgst -sha256 -sign " + In("ec.key") + " " + In("checksums.txt") +
       " | base64 > " + out);
  }
  void SignEd(const std::string& out) {
    Sh("openssl pkeyutl -sign -inkey " + In("ed.key") + " -rawin -in " +
       In("checksums.txt") + " | base64 -w0 > " + out);
  }
  StageRequest Request(const std::string& sig) const {
    return {"0.2.0", In(kName), In("checksums.txt"), sig, ""};
  }

  std::string dir_;
  ArtifactStoreOptions options_;
};

TEST_F(ArtifactsTest, StagesWithAnEcdsaSignature) {
  SignEc(In("sig"));
  options_.public_key_files = {In("ed.pub"), In("ec.pub")};
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(In("sig")));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->is_signed);
  EXPECT_EQ(a->signer, In("ec.pub"));
  EXPECT_EQ(Read(a->binary_path), "release bytes v0.2.0\n");
  struct stat st {};
  ASSERT_EQ(stat(ArtifactDir(options_.state_dir, "0.2.0").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(a->binary_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  absl::StatusOr<StagedArtifact> again = FindStaged(options_, "0.2.0");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->sha256, a->sha256);
}

TEST_F(ArtifactsTest, StagesWithAnEd25519Signature) {
  SignEd(In("sig"));
  options_.public_key_files = {In("ec.pub"), In("ed.pub")};
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(In("sig")));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->signer, In("ed.pub"));
}

TEST_F(ArtifactsTest, BadSignatureIsRefusedAndStagesNothing) {
  SignEc(In("sig"));
  Write(In("checksums.txt"), Read(In("checksums.txt")) + "\n");  // tampered
  options_.public_key_files = {In("ec.pub")};
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(In("sig")));
  EXPECT_EQ(ReasonOf(a.status()), reason::kSignatureInvalid);
  EXPECT_FALSE(fs::exists(ArtifactDir(options_.state_dir, "0.2.0")));
}

TEST_F(ArtifactsTest, UnsignedIsRefusedUnlessAllowed) {
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(""));
  EXPECT_EQ(ReasonOf(a.status()), reason::kUnsignedRefused);
  EXPECT_NE(a.status().message().find("allow_unsigned"), std::string::npos);
  options_.allow_unsigned = true;
  a = Stage(options_, Request(""));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->is_signed);
}

TEST_F(ArtifactsTest, MismatchRemovesTheNewFileAndKeepsTheOldOne) {
  options_.allow_unsigned = true;
  ASSERT_TRUE(Stage(options_, Request("")).ok());
  std::string staged = ArtifactDir(options_.state_dir, "0.2.0") + "/bao-kms-provider";
  std::string before = Read(staged);
  Write(In(kName), "tampered bytes\n");
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(""));
  ASSERT_EQ(ReasonOf(a.status()), reason::kChecksumMismatch);
  EXPECT_NE(a.status().message().find(In(kName)), std::string::npos);
  EXPECT_EQ(MetadataOf(a.status(), "actual").size(), 64u);
  EXPECT_EQ(MetadataOf(a.status(), "expected").size(), 64u);
  EXPECT_NE(MetadataOf(a.status(), "actual"), MetadataOf(a.status(), "expected"));
  EXPECT_EQ(Read(staged), before);
  int files = 0;
  for (const auto& e : fs::directory_iterator(ArtifactDir(options_.state_dir, "0.2.0"))) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 3);  // binary, checksums.txt, staged.sha256: no temp left
}

TEST_F(ArtifactsTest, VersionAndNameAreValidatedBeforeAnyPathIsBuilt) {
  options_.allow_unsigned = true;
  StageRequest r = Request("");
  r.version = "../0.2.0";
  EXPECT_EQ(ReasonOf(Stage(options_, r).status()), reason::kInvalidSemver);
  r.version = "v0.2.0";
  EXPECT_EQ(ReasonOf(Stage(options_, r).status()), reason::kInvalidSemver);
  r = Request("");
  r.artifact_name = "../x";
  EXPECT_EQ(ReasonOf(Stage(options_, r).status()), reason::kInvalidConfig);
}

TEST_F(ArtifactsTest, SymlinkedSourceIsNotFollowed) {
  options_.allow_unsigned = true;
  fs::rename(In(kName), In("real"));
  fs::create_symlink(In("real"), In(kName));
  EXPECT_EQ(ReasonOf(Stage(options_, Request("")).status()), reason::kArtifactIo);
}

TEST_F(ArtifactsTest, TamperedStagedBinaryIsDetectedBeforeUse) {
  options_.allow_unsigned = true;
  absl::StatusOr<StagedArtifact> a = Stage(options_, Request(""));
  ASSERT_TRUE(a.ok());
  Write(a->binary_path, "evil\n");
  EXPECT_EQ(ReasonOf(FindStaged(options_, "0.2.0").status()),
            reason::kChecksumMismatch);
  EXPECT_EQ(ReasonOf(FindStaged(options_, "0.3.0").status()), reason::kNotStaged);
}

}  // namespace
}  // namespace kmsfleet
