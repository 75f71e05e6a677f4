// One kmsfleetd per state directory (state_dir_lock.h).
#include "daemon/state_dir_lock.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

std::string Contents(const std::string& path) {
  absl::StatusOr<std::string> s = ReadBoundedFile(path, 4096);
  return s.ok() ? *s : "";
}

// flock locks belong to an open file description, so a second open in
// this process stands for a second agent.
TEST(StateDirLockTest, ASecondHolderIsRefusedNamingTheDirectoryAndTheFirst) {
  testing::TempDir dir;
  const std::string state = dir.File("state");
  std::optional<absl::StatusOr<StateDirLock>> first(LockStateDir(state, 4242));
  ASSERT_TRUE(first->ok()) << first->status();
  struct stat st {};
  ASSERT_EQ(stat(state.c_str(), &st), 0) << "the state directory is created";
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(Contents(state + "/" + kStateDirLockName), "4242\n");

  absl::StatusOr<StateDirLock> second = LockStateDir(state, 4343);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(ReasonOf(second.status()), reason::kStateDirLocked);
  const std::string message(second.status().message());
  EXPECT_NE(message.find(state), std::string::npos) << message;
  EXPECT_NE(message.find("pid 4242"), std::string::npos) << message;
  EXPECT_EQ(Contents(state + "/" + kStateDirLockName), "4242\n") << "the refused one wrote nothing";

  first.reset();  // the first agent ends: the kernel drops its lock
  absl::StatusOr<StateDirLock> third = LockStateDir(state, 4444);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(Contents(state + "/" + kStateDirLockName), "4444\n");
}

TEST(StateDirLockTest, AStateDirThatIsAFileIsAnErrorNamingIt) {
  testing::TempDir dir;
  const std::string state = dir.File("state");
  ASSERT_TRUE(WriteFileAtomic(state, "not a directory", 0600).ok());
  absl::StatusOr<StateDirLock> lock = LockStateDir(state, 1);
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(std::string(lock.status().message()).find(state), std::string::npos)
      << lock.status();
}

// A killed agent's half-written downloads and uploads (up to a release's
// size each) and kube-apiserver restart record are removed by the next
// holder of the lock; nothing else is.
TEST(StateDirLockTest, TheNextHolderRemovesTheTempsAKilledAgentLeft) {
  testing::TempDir dir;
  const std::string state = dir.File("state");
  for (const std::string& d : {state + "/artifacts/.incoming-abc123",
                               state + "/artifacts/.fetched-xyz789/binary",
                               state + "/artifacts/0.2.0", state + "/uploads/ab12"}) {
    std::filesystem::create_directories(d);
  }
  testing::WriteFile(state + "/artifacts/.incoming-abc123/download", "half");
  testing::WriteFile(state + "/uploads/.incoming-Qw3rty", "half");
  testing::WriteFile(state + "/artifacts/0.2.0/bao-kms-provider", "staged");
  // Found in review: a Stage killed in its copy left these for good.
  testing::WriteFile(state + "/artifacts/0.2.0/bao-kms-provider.tmp.Xy12Zw", "half");
  testing::WriteFile(state + "/artifacts/0.2.0/staged.sha256.tmp.ab34CD", "half");
  testing::WriteFile(state + "/artifacts/0.2.0/notes.tmp.txt", "kept");
  testing::WriteFile(state + "/apiserver-restart.tmp.aB12cD", "half");
  testing::WriteFile(state + "/apiserver-restart", "op-1\nrestarted unit x\n");
  absl::StatusOr<StateDirLock> lock = LockStateDir(state, getpid());
  ASSERT_TRUE(lock.ok()) << lock.status();
  EXPECT_EQ(RemoveStaleTemps(state, *lock), 6);
  EXPECT_FALSE(std::filesystem::exists(state + "/artifacts/0.2.0/bao-kms-provider.tmp.Xy12Zw"));
  EXPECT_FALSE(std::filesystem::exists(state + "/artifacts/0.2.0/staged.sha256.tmp.ab34CD"));
  EXPECT_TRUE(std::filesystem::exists(state + "/artifacts/0.2.0/notes.tmp.txt"));
  EXPECT_FALSE(std::filesystem::exists(state + "/apiserver-restart.tmp.aB12cD"));
  EXPECT_TRUE(std::filesystem::exists(state + "/apiserver-restart"));
  EXPECT_FALSE(std::filesystem::exists(state + "/artifacts/.incoming-abc123"));
  EXPECT_FALSE(std::filesystem::exists(state + "/artifacts/.fetched-xyz789"));
  EXPECT_FALSE(std::filesystem::exists(state + "/uploads/.incoming-Qw3rty"));
  EXPECT_TRUE(std::filesystem::exists(state + "/artifacts/0.2.0/bao-kms-provider"));
  EXPECT_TRUE(std::filesystem::exists(state + "/uploads/ab12"));
  EXPECT_EQ(RemoveStaleTemps(state, *lock), 0);
}

}  // namespace
}  // namespace kmsfleet
