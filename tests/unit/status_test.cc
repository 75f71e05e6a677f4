// Errors quote what came from outside; whatever the bytes, the reason and
// a readable message must survive (status.h).
#include "kmsfleet/core/status.h"

#include <gtest/gtest.h>

#include <string>

#include "kmsfleet/core/reasons.h"

namespace kmsfleet {
namespace {

TEST(MakeErrorTest, InvalidUtf8InMetadataDoesNotLoseTheReason) {
  // Found by fuzz_checksums: an ErrorInfo with a non-UTF-8 string did not
  // serialise, and the reason code vanished with it.
  absl::Status s = MakeError(absl::StatusCode::kInvalidArgument, reason::kChecksumNotListed,
                             "not listed", {{"file", std::string("a\xff\xfe", 3)}});
  EXPECT_EQ(ReasonOf(s), reason::kChecksumNotListed);
  EXPECT_EQ(MetadataOf(s, "file"), "a\\xff\\xfe");
}

TEST(MakeErrorTest, ControlBytesAreEscapedAndUtf8IsKept) {
  absl::Status s = MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                             std::string("bad \x1b[31mvalue\r: \xe2\x9a\xa0 ok\n"));
  EXPECT_EQ(std::string(s.message()), "bad \\x1b[31mvalue\\x0d: \xe2\x9a\xa0 ok\n");
}

TEST(MakeErrorTest, AnEchoedHugeInputIsCut) {
  absl::Status s = MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                             "line: " + std::string(1 << 20, 'x'));
  EXPECT_LE(s.message().size(), 4096u);
  EXPECT_NE(std::string(s.message()).find("more bytes)"), std::string::npos);
  EXPECT_EQ(ReasonOf(s), reason::kInvalidConfig);
}

TEST(WithNameInMessageTest, EveryMentionIsRenamedAndTheReasonKept) {
  absl::Status s = MakeError(absl::StatusCode::kFailedPrecondition, "CHECKSUM_NOT_LISTED",
                             "/tmp/x/sums.txt lists no foo (read /tmp/x/sums.txt)",
                             {{"file", "/tmp/x/sums.txt"}});
  absl::Status named = WithNameInMessage(s, "/tmp/x/sums.txt", "https://r/sums.txt");
  EXPECT_EQ(named.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(named.message(), "https://r/sums.txt lists no foo (read https://r/sums.txt)");
  EXPECT_EQ(ReasonOf(named), "CHECKSUM_NOT_LISTED");
  // A name that contains what it replaces is not replaced again.
  EXPECT_EQ(WithNameInMessage(s, "sums", "sums-sums").message(),
            "/tmp/x/sums-sums.txt lists no foo (read /tmp/x/sums-sums.txt)");
  EXPECT_TRUE(WithNameInMessage(absl::OkStatus(), "a", "b").ok());
}

TEST(WithMessagePrefixTest, ThePrefixComesFirstAndTheReasonIsKept) {
  absl::Status s = MakeError(absl::StatusCode::kResourceExhausted, reason::kArtifactIo,
                             "no room", {{"path", "/var/lib/kmsfleet/uploads"}});
  absl::Status told = WithMessagePrefix(s, "upload of --artifact ./b: ");
  EXPECT_EQ(told.message(), "upload of --artifact ./b: no room");
  EXPECT_EQ(told.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(told), reason::kArtifactIo);
  EXPECT_EQ(MetadataOf(told, "path"), "/var/lib/kmsfleet/uploads");
  EXPECT_TRUE(WithMessagePrefix(absl::OkStatus(), "x: ").ok());
}

}  // namespace
}  // namespace kmsfleet
