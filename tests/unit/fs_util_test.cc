// fs_util's durability: a directory it creates is made durable in its
// parent (fsync of the parent after mkdir), observed with strace.
#include "kmsfleet/node/fs_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

// This thread's tracer pid (0 when untraced).
int TracerPid() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("TracerPid:", 0) == 0) return std::stoi(line.substr(10));
  }
  return 0;
}

TEST(FsUtilTest, ACreatedDirectoryIsFsyncedInItsParent) {
  if (access("/usr/bin/strace", X_OK) != 0) GTEST_SKIP() << "strace is not installed";
  if (TracerPid() != 0) GTEST_SKIP() << "already traced";
  testing::TempDir dir;
  const std::string log = dir.File("strace.log");
  pid_t self = getpid();
  pid_t tracer = fork();
  if (tracer == 0) {
    execl("/usr/bin/strace", "strace", "-qq", "-e", "trace=mkdir,mkdirat,openat,fsync",
          "-o", log.c_str(), "-p", std::to_string(self).c_str(), nullptr);
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (TracerPid() == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (TracerPid() == 0) {
    kill(tracer, SIGKILL);
    waitpid(tracer, nullptr, 0);
    GTEST_SKIP() << "strace could not attach (ptrace restricted?)";
  }
  const std::string made = dir.File("journal");
  absl::Status s = EnsurePrivateDir(made, 0700);
  kill(tracer, SIGINT);  // strace detaches and flushes its log
  waitpid(tracer, nullptr, 0);
  ASSERT_TRUE(s.ok()) << s;

  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  const std::string trace = text.str();
  size_t mkdir_at = trace.find(made + "\", 0700");
  ASSERT_NE(mkdir_at, std::string::npos) << trace;
  // After the mkdir: the parent is opened and fsynced.
  size_t open_parent = trace.find("\"" + dir.path() + "\", O_RDONLY", mkdir_at);
  ASSERT_NE(open_parent, std::string::npos) << trace;
  EXPECT_NE(trace.find("fsync(", open_parent), std::string::npos) << trace;
}

uint64_t FreeBytes(const std::string& dir) {
  struct statvfs fs {};
  EXPECT_EQ(statvfs(dir.c_str(), &fs), 0);
  return uint64_t{fs.f_bavail} * fs.f_frsize;
}

// Margins of half the free space: other tests write beside this one.
TEST(FsUtilTest, FreeSpaceIsCheckedAgainstTheWriteAndTheReserve) {
  const uint64_t free_bytes = FreeBytes("/tmp");
  ASSERT_GT(free_bytes, 0u);
  EXPECT_TRUE(CheckFreeSpace("/tmp", free_bytes / 4, free_bytes / 4).ok());
  absl::Status write = CheckFreeSpace("/tmp", 2 * free_bytes, 0);
  EXPECT_EQ(write.code(), absl::StatusCode::kResourceExhausted) << write;
  EXPECT_EQ(ReasonOf(write), reason::kArtifactIo);
  EXPECT_EQ(MetadataOf(write, "path"), "/tmp");
  EXPECT_EQ(MetadataOf(write, "needed_bytes"), std::to_string(2 * free_bytes));
  EXPECT_NE(write.message().find("/tmp has "), std::string::npos) << write;
  // A write that fits, but would eat into the reserve.
  absl::Status reserve = CheckFreeSpace("/tmp", free_bytes / 4, free_bytes);
  EXPECT_EQ(reserve.code(), absl::StatusCode::kResourceExhausted) << reserve;
  EXPECT_EQ(MetadataOf(reserve, "reserve_bytes"), std::to_string(free_bytes));
  EXPECT_EQ(ReasonOf(CheckFreeSpace("/nonexistent-kmsfleet-dir", 0, 1)), reason::kArtifactIo);
}

TEST(FsUtilTest, ACopyThatWouldEatIntoTheReserveWritesNothing) {
  char tmpl[] = "/tmp/kffs.XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::ofstream(dir + "/src") << std::string(4096, 'x');
  const uint64_t reserve = FreeBytes(dir) * 2;
  absl::StatusOr<std::string> refused =
      CopyFileAtomic(dir + "/src", dir + "/dest", 0644, "", SIZE_MAX, reserve);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted) << refused.status();
  EXPECT_EQ(MetadataOf(refused.status(), "needed_bytes"), "4096");
  EXPECT_EQ(std::system(("test \"$(ls " + dir + ")\" = src").c_str()), 0)
      << "no dest and no temp left";
  EXPECT_TRUE(CopyFileAtomic(dir + "/src", dir + "/dest", 0644, "", SIZE_MAX, 1).ok());
  std::system(("rm -rf " + dir).c_str());
}

// Found in review: the agent's own writes (a stage's copy and its
// checksums, a journal) came back Unavailable on a full, read-only or
// failing disk, and a plan sent the Stage again for ever. Writes past the
// file size limit (EFBIG) stand in for a full disk.
TEST(FsUtilTest, AWriteTheDiskRefusesIsNotAskedAgain) {
  testing::TempDir dir;
  std::ofstream(dir.File("src")) << std::string(4096, 'x');
  absl::StatusOr<std::string> copied;
  absl::Status written;
  {
    testing::FileSizeLimit limit(16);
    copied = CopyFileAtomic(dir.File("src"), dir.File("dest"), 0644, "", SIZE_MAX);
    written = WriteFileAtomic(dir.File("state"), std::string(4096, 'y'), 0600);
  }
  for (const absl::Status& s : {copied.status(), written}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_EQ(ReasonOf(s), reason::kArtifactIo) << s;
  }
  EXPECT_EQ(copied.status().message().find("cannot write " + dir.File("dest.tmp.")), 0u)
      << copied.status();
  EXPECT_EQ(written.message().find("cannot write " + dir.File("state.tmp.")), 0u) << written;
  EXPECT_EQ(std::system(("test \"$(ls " + dir.path() + ")\" = src").c_str()), 0)
      << "no dest and no temp left";
  // No directory to write into is no better for being asked again.
  absl::Status no_dir = WriteFileAtomic(dir.File("gone/state"), "y", 0600);
  EXPECT_EQ(no_dir.code(), absl::StatusCode::kFailedPrecondition) << no_dir;
}

// A plan sends UNAVAILABLE work again; a disk that is full, read-only or
// failing does not mend by itself, so only an interrupted call is
// UNAVAILABLE (the fetch of an upload, upload_fetch.cc).
TEST(DiskWriteErrorTest, OnlyAnInterruptedWriteIsAskedAgain) {
  EXPECT_EQ(DiskWriteError("cannot write", "/s/f", ENOSPC).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(DiskWriteError("cannot write", "/s/f", EDQUOT).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(DiskWriteError("cannot write", "/s/f", EINTR).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(DiskWriteError("cannot write", "/s/f", EAGAIN).code(), absl::StatusCode::kUnavailable);
  for (int err : {EROFS, EIO, ENOENT, EFBIG}) {
    absl::Status s = DiskWriteError("cannot create", "/s/f", err);
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << err;
    EXPECT_EQ(ReasonOf(s), reason::kArtifactIo);
    EXPECT_EQ(MetadataOf(s, "path"), "/s/f");
    EXPECT_EQ(std::string(s.message()), "cannot create /s/f: " + std::string(std::strerror(err)));
  }
}

}  // namespace
}  // namespace kmsfleet
