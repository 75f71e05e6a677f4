// kmsfleetctl upgrade's choice of what to upload (cli/upload_release.h):
// files on the operator's machine are uploaded, URLs and coordinator://
// sources are passed on, and --remote-paths passes everything on.
#include "cli/upload_release.h"
#include "cli/plan_commands.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

TEST(UploadReleaseTest, OnlyLocalPathsAreUploaded) {
  EXPECT_FALSE(PassedAsIs("./checksums.txt", false));
  EXPECT_FALSE(PassedAsIs("/srv/release/bao-kms-provider", false));
  EXPECT_TRUE(PassedAsIs("/srv/release/bao-kms-provider", true));
  EXPECT_TRUE(PassedAsIs("https://releases.example/bao/0.2.0/checksums.txt", false));
  EXPECT_TRUE(PassedAsIs("http://127.0.0.1:8080/checksums.txt", false));
  EXPECT_TRUE(PassedAsIs("coordinator://cp-1/" + std::string(64, 'a') + "/x", false));
  EXPECT_TRUE(PassedAsIs("", false));  // no --signature
}

TEST(UploadReleaseTest, PrepareHashesAFileAndKeepsItsName) {
  char tmpl[] = "/tmp/kmsfleet-upload-cli-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/bao-kms-provider_0.2.0_linux_amd64";
  ASSERT_TRUE(WriteFileAtomic(file, "binary", 0755).ok());

  absl::StatusOr<LocalUpload> u = PrepareUpload("--artifact", file, UploadKind::kBinary);
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->name, "bao-kms-provider_0.2.0_linux_amd64");
  EXPECT_EQ(u->sha256, Sha256Hex("binary"));
  EXPECT_EQ(u->size, 6u);

  absl::StatusOr<LocalUpload> missing =
      PrepareUpload("--checksums", dir + "/absent", UploadKind::kChecksums);
  EXPECT_EQ(ReasonOf(missing.status()), reason::kInvalidConfig);
  EXPECT_NE(missing.status().message().find("--remote-paths"), std::string::npos);
  EXPECT_NE(missing.status().message().find("--checksums"), std::string::npos);
  EXPECT_EQ(ReasonOf(PrepareUpload("--artifact", dir, UploadKind::kBinary).status()),
            reason::kInvalidConfig);
  // Over its kind's bound (1 MiB for checksums).
  ASSERT_TRUE(WriteFileAtomic(dir + "/big", std::string((1 << 20) + 1, 'x'), 0600).ok());
  EXPECT_EQ(ReasonOf(PrepareUpload("--checksums", dir + "/big", UploadKind::kChecksums).status()),
            reason::kUploadTooLarge);
  // A signature over what Stage reads (64 KiB) is refused before the plan.
  ASSERT_TRUE(WriteFileAtomic(dir + "/big.sig", std::string((64 << 10) + 1, 'x'), 0600).ok());
  absl::StatusOr<LocalUpload> sig =
      PrepareUpload("--signature", dir + "/big.sig", UploadKind::kSignature);
  EXPECT_EQ(ReasonOf(sig.status()), reason::kUploadTooLarge);
  EXPECT_NE(sig.status().message().find("--signature " + dir + "/big.sig is 65537 bytes"),
            std::string::npos)
      << sig.status();
  std::filesystem::remove_all(dir);
}

// Found in review: --artifact current, a link to
// bao-kms-provider_0.2.0_linux_amd64, was uploaded as "current", a name no
// checksums.txt lists, so every node failed to verify it at Stage. The
// upload is named after the file the link (or chain of links) leads to.
TEST(UploadReleaseTest, ALinkIsUploadedUnderItsTargetsName) {
  char tmpl[] = "/tmp/kmsfleet-upload-cli-XXXXXX";
  const std::string release = mkdtemp(tmpl);
  const std::string file = release + "/bao-kms-provider_0.2.0_linux_amd64";
  ASSERT_TRUE(WriteFileAtomic(file, "binary", 0755).ok());
  std::filesystem::create_symlink("bao-kms-provider_0.2.0_linux_amd64", release + "/current");
  std::filesystem::create_symlink(release + "/current", release + "/latest");

  for (const char* link : {"current", "latest"}) {
    const std::string path = release + "/" + link;
    absl::StatusOr<LocalUpload> u = PrepareUpload("--artifact", path, UploadKind::kBinary);
    ASSERT_TRUE(u.ok()) << u.status();
    EXPECT_EQ(u->name, "bao-kms-provider_0.2.0_linux_amd64") << link;
    EXPECT_EQ(u->path, path) << link;  // messages still name what the operator typed
    EXPECT_EQ(u->sha256, Sha256Hex("binary")) << link;
  }
  std::filesystem::remove_all(release);
}

// The agent ends a silent upload with a cancel, which carries no
// ErrorInfo: the reason in the message is turned into one, so that
// kmsfleetctl names UPLOAD_STALLED (exit 3) rather than an unreachable
// agent. A client-side deadline or any other status stays as it was.
TEST(UploadReleaseTest, AStalledUploadGetsItsReasonBack) {
  // The message as the agent sends it.
  grpc::Status stalled = WithUploadStalledReason(grpc::Status(
      grpc::StatusCode::DEADLINE_EXCEEDED, StalledUploadCallerMessage(UploadLimits{})));
  absl::Status s = FromAgentCall(stalled, "cp-1:7443");
  EXPECT_EQ(ReasonOf(s), reason::kUploadStalled) << s;
  EXPECT_EQ(s.message(), "the agent ended this upload: no chunk came for 60000 ms "
                         "(cluster.upload_idle_timeout_ms); nothing of it is stored");
  EXPECT_EQ(ExitCodeOf(s, /*changes_the_plan=*/false), 3);
  for (const grpc::Status& other :
       {grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded"),
        grpc::Status(grpc::StatusCode::CANCELLED, "[UPLOAD_STALLED] not from a cancel")}) {
    grpc::Status kept = WithUploadStalledReason(other);
    EXPECT_EQ(kept.error_message(), other.error_message());
    EXPECT_TRUE(kept.error_details().empty());
    EXPECT_EQ(ReasonOf(FromAgentCall(kept, "cp-1:7443")), reason::kAgentUnreachable);
  }
}

}  // namespace
}  // namespace kmsfleet
