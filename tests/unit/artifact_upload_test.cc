// Operator uploads: every chunk rule refuses with its own reason and
// leaves the upload's progress untouched; coordinator:// sources round-trip.
#include "kmsfleet/core/artifact_upload.h"

#include <gtest/gtest.h>

#include <vector>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::string kSha(64, 'a');

TEST(ArtifactUploadTest, ContiguousChunksAreAccepted) {
  UploadProgress p;
  ASSERT_TRUE(AcceptUploadChunk(p, "bao-kms-provider_0.2.0", "binary", 0, 100).ok());
  ASSERT_TRUE(AcceptUploadChunk(p, "", "", 100, 50).ok());
  EXPECT_EQ(p.received, 150u);
  EXPECT_EQ(p.name, "bao-kms-provider_0.2.0");
  EXPECT_TRUE(FinishUpload(p, kSha, kSha).ok());
}

TEST(ArtifactUploadTest, UnsafeNamesAreRefused) {
  for (const char* name : {"", "..", "../etc/passwd", "a/b", "-rf", "a b"}) {
    UploadProgress p;
    absl::Status s = AcceptUploadChunk(p, name, "binary", 0, 1);
    EXPECT_EQ(ReasonOf(s), reason::kUploadBadName) << name;
    EXPECT_FALSE(p.started);
  }
}

TEST(ArtifactUploadTest, ANameOrKindChangedMidStreamIsRefused) {
  UploadProgress p;
  ASSERT_TRUE(AcceptUploadChunk(p, "a", "checksums", 0, 1).ok());
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "b", "", 1, 1)), reason::kUploadBadName);
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "", "binary", 1, 1)), reason::kUploadMalformed);
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "", "", 1, 1)), "");
}

TEST(ArtifactUploadTest, UnknownKindIsRefused) {
  UploadProgress p;
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "a", "tarball", 0, 1)), reason::kUploadMalformed);
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "a", "", 0, 1)), reason::kUploadMalformed);
}

TEST(ArtifactUploadTest, OffsetGapsAndOverlapsAreRefused) {
  UploadProgress p;
  ASSERT_TRUE(AcceptUploadChunk(p, "a", "binary", 0, 10).ok());
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "", "", 11, 1)), reason::kUploadOffsetGap);
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "", "", 9, 1)), reason::kUploadOffsetGap);
  EXPECT_EQ(p.received, 10u);
  UploadProgress fresh;
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(fresh, "a", "binary", 5, 1)), reason::kUploadOffsetGap);
}

TEST(ArtifactUploadTest, ChunksAndTotalsOverTheirBoundsAreRefused) {
  UploadProgress p;
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(p, "a", "binary", 0, kMaxUploadChunkBytes + 1)),
            reason::kUploadTooLarge);
  UploadProgress sums;
  ASSERT_TRUE(AcceptUploadChunk(sums, "checksums.txt", "checksums", 0, kMaxUploadChunkBytes).ok());
  absl::Status s = AcceptUploadChunk(sums, "", "", kMaxUploadChunkBytes, 1);
  EXPECT_EQ(ReasonOf(s), reason::kUploadTooLarge);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(sums.received, kMaxUploadChunkBytes);
  UploadProgress big;
  big.started = true;
  big.name = "a";
  big.received = MaxUploadBytes(UploadKind::kBinary);
  EXPECT_EQ(ReasonOf(AcceptUploadChunk(big, "", "", big.received, 1)), reason::kUploadTooLarge);
}

// Found in review: a signature was taken up to 1 MiB while every agent's
// Stage reads at most 64 KiB of it, so a plan was committed whose every
// stage then failed. Each kind is bounded as Stage bounds it.
TEST(ArtifactUploadTest, ASmallFileIsBoundedAsEveryAgentReadsIt) {
  EXPECT_EQ(MaxUploadBytes(UploadKind::kSignature), kMaxSignatureBytes);
  EXPECT_EQ(MaxUploadBytes(UploadKind::kChecksums), kMaxChecksumsBytes);
  UploadProgress sig;
  ASSERT_TRUE(AcceptUploadChunk(sig, "checksums.txt.sig", "signature", 0, kMaxSignatureBytes).ok());
  absl::Status s = AcceptUploadChunk(sig, "", "", kMaxSignatureBytes, 1);
  EXPECT_EQ(ReasonOf(s), reason::kUploadTooLarge);
  EXPECT_EQ(sig.received, kMaxSignatureBytes);
}

TEST(ArtifactUploadTest, FinishNeedsAChunkAndTheDeclaredDigest) {
  UploadProgress p;
  EXPECT_EQ(ReasonOf(FinishUpload(p, kSha, kSha)), reason::kUploadMalformed);
  ASSERT_TRUE(AcceptUploadChunk(p, "a", "signature", 0, 3).ok());
  EXPECT_EQ(ReasonOf(FinishUpload(p, "", kSha)), reason::kUploadMalformed);
  EXPECT_EQ(ReasonOf(FinishUpload(p, std::string(64, 'A'), kSha)), reason::kUploadMalformed);
  absl::Status s = FinishUpload(p, std::string(64, 'b'), kSha);
  EXPECT_EQ(ReasonOf(s), reason::kUploadDigestMismatch);
  EXPECT_NE(s.message().find(kSha), std::string::npos);
}

TEST(ArtifactUploadTest, AnUploadPastTheStreamLimitIsRefusedBusy) {
  const UploadLimits limits{.max_streams = 2, .idle_timeout = std::chrono::seconds(30)};
  EXPECT_TRUE(AdmitUpload(0, limits).ok());
  EXPECT_TRUE(AdmitUpload(1, limits).ok());
  absl::Status s = AdmitUpload(2, limits);
  EXPECT_EQ(ReasonOf(s), reason::kUploadBusy);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("2 uploads are being received, as many as "
                             "cluster.upload_streams (2) allows"),
            std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("30000 ms"), std::string::npos) << s.message();
}

TEST(ArtifactUploadTest, AStalledUploadNamesItsFileAndWhatCame) {
  const UploadLimits limits{.max_streams = 4, .idle_timeout = std::chrono::milliseconds(1500)};
  UploadProgress p;
  absl::Status none = UploadStalled(p, limits);
  EXPECT_EQ(ReasonOf(none), reason::kUploadStalled);
  EXPECT_NE(none.message().find("the upload of a file was ended after 0 bytes"),
            std::string::npos)
      << none.message();
  ASSERT_TRUE(AcceptUploadChunk(p, "checksums.txt", "checksums", 0, 7).ok());
  absl::Status some = UploadStalled(p, limits);
  EXPECT_EQ(some.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(some.message().find("the upload of checksums.txt was ended after 7 bytes: no "
                                "chunk came for 1500 ms (cluster.upload_idle_timeout_ms)"),
            std::string::npos)
      << some.message();
}

// What a stalled upload's caller is told is read back by kmsfleetctl.
TEST(ArtifactUploadTest, AStalledCallersMessageCarriesItsReason) {
  const std::string told = StalledUploadCallerMessage(
      UploadLimits{.max_streams = 4, .idle_timeout = std::chrono::milliseconds(5000)});
  EXPECT_EQ(told.rfind("[UPLOAD_STALLED] ", 0), 0u) << told;
  ASSERT_TRUE(StalledUploadDetail(told).has_value());
  EXPECT_EQ(*StalledUploadDetail(told), told.substr(17));
  EXPECT_FALSE(StalledUploadDetail("[UPLOAD_BUSY] no slot").has_value());
  EXPECT_FALSE(StalledUploadDetail("Deadline Exceeded").has_value());
}

TEST(ArtifactUploadTest, CoordinatorSourcesRoundTrip) {
  CoordinatorSource src{"cp-1", kSha, "checksums.txt"};
  std::string text = FormatCoordinatorSource(src);
  EXPECT_EQ(text, "coordinator://cp-1/" + kSha + "/checksums.txt");
  absl::StatusOr<CoordinatorSource> back = ParseCoordinatorSource(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->node, "cp-1");
  EXPECT_EQ(back->sha256, kSha);
  EXPECT_EQ(back->name, "checksums.txt");
  for (const std::string& bad :
       std::vector<std::string>{"coordinator://cp-1/" + kSha, "coordinator://cp-1/xyz/a",
                                "coordinator://cp-1/" + kSha + "/../a",
                                "coordinator://../" + kSha + "/a", "https://cp-1/" + kSha + "/a"}) {
    EXPECT_EQ(ReasonOf(ParseCoordinatorSource(bad).status()), reason::kSourceNotAllowed) << bad;
  }
  EXPECT_FALSE(IsCoordinatorSource("/srv/release/checksums.txt"));
}

}  // namespace
}  // namespace kmsfleet
