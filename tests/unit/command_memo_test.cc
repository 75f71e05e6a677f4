// The memo of content-determined provider answers: reused only for files
// unchanged since, never for a failed run, a file changed while it ran or
// within a timestamp tick before it. The preflight's use of it is tested
// in preflight_test.cc (PreflightMemoTest).
#include "kmsfleet/node/command_memo.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include "kmsfleet/node/fs_util.h"
#include "process_harness.h"
#include "test_clocks.h"

namespace kmsfleet {
namespace {

class CommandMemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.File("bin");
    testing::WriteFile(file_, "v1\n");
  }

  // Asks `memo` for `command` on `files`, counting the runs.
  absl::StatusOr<std::string> Ask(CommandMemo& memo, const std::vector<std::string>& files,
                                  absl::StatusOr<std::string> answer = std::string("a"),
                                  const std::string& command = "version") {
    return memo.Answer(command, files, [&] {
      ++runs_;
      return answer;
    });
  }

  testing::TempDir dir_;
  // Far enough past every file's change that all are settled, whole-second
  // stamps too.
  testing::ClockAhead later_{2000};
  std::string file_;
  int runs_ = 0;
};

TEST_F(CommandMemoTest, AnAnswerIsReusedWhileItsFilesAreUnchanged) {
  CommandMemo memo(later_);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("0.2.0")), "0.2.0");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("other")), "0.2.0");
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(memo.reused(), 1u);
  // Another command on the same file is another answer.
  EXPECT_EQ(*Ask(memo, {file_}, std::string("fp"), "config"), "fp");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFileRewrittenInPlaceOrReplacedIsAskedAgain) {
  CommandMemo memo(later_);
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  // Same size, same inode: only the times tell. Past a timestamp tick.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  testing::WriteFile(file_, "v2\n");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
  testing::WriteFile(dir_.File("new"), "v2\n");
  std::filesystem::rename(dir_.File("new"), file_);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("c")), "c");
  EXPECT_EQ(runs_, 3);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("d")), "c");
  EXPECT_EQ(runs_, 3);
}

TEST_F(CommandMemoTest, EveryFileTheCommandReadsIsPartOfTheKey) {
  const std::string config = dir_.File("config.yaml");
  testing::WriteFile(config, "a: 1\n");
  CommandMemo memo(later_);
  ASSERT_TRUE(Ask(memo, {file_, config}, std::string("fp-1")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  testing::WriteFile(config, "a: 2\n");
  EXPECT_EQ(*Ask(memo, {file_, config}, std::string("fp-2")), "fp-2");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFailedRunIsNotKept) {
  CommandMemo memo(later_);
  EXPECT_FALSE(Ask(memo, {file_}, absl::InternalError("exit 1")).ok());
  EXPECT_EQ(*Ask(memo, {file_}, std::string("a")), "a");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFileChangedWhileTheCommandRanIsNotKept) {
  CommandMemo memo(later_);
  auto rewrite = [&] {
    ++runs_;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    testing::WriteFile(file_, "v9\n");
    return absl::StatusOr<std::string>("a");
  };
  EXPECT_EQ(*memo.Answer("version", {file_}, rewrite), "a");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
}

// When a file is settled, by the clock given (CommandMemo::kSettledMs past
// its stamp, plus the file system's own granularity).
int64_t SettledAtMs(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return int64_t{st.st_ctim.tv_sec} * 1000 + st.st_ctim.tv_nsec / 1000000 +
         CommandMemo::kSettledMs + StampGranularityMs(st.st_ctim);
}

TEST_F(CommandMemoTest, AFileChangedWithinATimestampTickBeforeTheRunIsNotKept) {
  const int64_t settled = SettledAtMs(file_);
  testing::SetClock clock;
  clock.now = settled - 1;
  CommandMemo memo(clock);
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  EXPECT_EQ(runs_, 2);
  clock.now = settled;
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  EXPECT_EQ(runs_, 3);
}

// How long until the files settle: the last one's wait; nothing once they
// have. An absent file is settled; one that cannot be stat'ed never is.
TEST_F(CommandMemoTest, IdentityOfFilesSaysWhenTheySettle) {
  const std::string second = dir_.File("second");
  testing::WriteFile(second, "v2\n");
  const std::string absent = dir_.File("absent");
  const int64_t first_at = SettledAtMs(file_);
  const int64_t last_at = std::max(first_at, SettledAtMs(second));
  const std::vector<std::string> files = {second, absent, file_};
  const int64_t before = first_at - 3;  // neither has settled
  FilesIdentity soon = IdentityOfFiles(files, CommandMemo::kSettledMs, before);
  EXPECT_FALSE(soon.settled);
  EXPECT_EQ(soon.settles_in_ms, last_at - before);
  FilesIdentity now = IdentityOfFiles(files, CommandMemo::kSettledMs, last_at);
  EXPECT_TRUE(now.settled);
  EXPECT_EQ(now.settles_in_ms, 0);
  EXPECT_FALSE(now.every_file_present);
  // Not a directory: stat fails, and not because the file is absent.
  FilesIdentity unreadable =
      IdentityOfFiles({file_, file_ + "/below"}, CommandMemo::kSettledMs, last_at + 60000);
  EXPECT_FALSE(unreadable.settled);
  EXPECT_EQ(unreadable.settles_in_ms, FilesIdentity::kNeverSettles);
}

TEST(StampGranularityTest, WholeSecondsAndMillisecondsRoundDownNanosecondsDoNot) {
  EXPECT_EQ(StampGranularityMs({1700000000, 0}), 1000);
  EXPECT_EQ(StampGranularityMs({1700000000, 5000000}), 1);
  EXPECT_EQ(StampGranularityMs({1700000000, 5000001}), 0);
  EXPECT_EQ(StampGranularityMs({1700000000, 999999999}), 0);
}

// Writes `text` over the start of `path`: the same inode, and the same
// size when `text` is as long as what it replaces.
void OverwriteInPlace(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  EXPECT_EQ(::pwrite(fd, text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
  ::close(fd);
}

// The settled rule's premise, on this kernel: a change made once the
// clock files are stamped from reads past the last one
// (CommandMemo::kSettledMs) is stamped later, so the file's identity
// changes even when its size and inode do not. Each round's file is new
// and not stat'ed before the rewrite: a kernel with multigrain stamps
// (6.13 on) stamps a change after a stat from the precise clock, which
// would hide what the coarse one does. (A rewrite within the write's own
// millisecond is stamped, on most rounds, with the very time of the write.)
TEST_F(CommandMemoTest, AChangeOnceTheFileClockReadsPastTheLastOneIsStampedLater) {
  for (int i = 0; i < 20; ++i) {
    const std::string file = dir_.File("round-" + std::to_string(i));
    testing::WriteFile(file, "v1\n");
    const int64_t written = CoarseRealTimeMillis();  // at or past its stamp
    for (int spins = 0; CoarseRealTimeMillis() < written + CommandMemo::kSettledMs; ++spins) {
      ASSERT_LT(spins, 300) << "the coarse clock did not move " << CommandMemo::kSettledMs
                            << " ms in 300 pauses of 0.1 ms";
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    OverwriteInPlace(file, "v2\n");
    struct stat st {};
    ASSERT_EQ(::stat(file.c_str(), &st), 0) << file;
    EXPECT_GT(int64_t{st.st_ctim.tv_sec} * 1000 + st.st_ctim.tv_nsec / 1000000, written)
        << "round " << i;
  }
}

TEST_F(CommandMemoTest, AMissingFileRunsTheCommandAndKeepsNothing) {
  CommandMemo memo(later_);
  EXPECT_EQ(*Ask(memo, {dir_.File("absent")}, std::string("a")), "a");
  EXPECT_EQ(*Ask(memo, {dir_.File("absent")}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, TheOldestAnswerGoesFirst) {
  CommandMemo memo(later_);
  for (size_t i = 0; i <= CommandMemo::kMaxAnswers; ++i) {
    ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c" + std::to_string(i)).ok());
  }
  const int asked = runs_;
  ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c" + std::to_string(CommandMemo::kMaxAnswers)).ok());
  EXPECT_EQ(runs_, asked);  // the newest is kept
  ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c0").ok());
  EXPECT_EQ(runs_, asked + 1);  // the oldest was dropped
}

}  // namespace
}  // namespace kmsfleet
