// fs_util's durability: a directory it creates is made durable in its
// parent (fsync of the parent after mkdir), observed with strace.
#include "kmsfleet/node/fs_util.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

}  // namespace
}  // namespace kmsfleet
