// Running provider commands: timeouts, caps and a cleared environment.
#include "kmsfleet/node/subprocess.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <cstdint>
#include <string>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

absl::StatusOr<SubprocessResult> Shell(const std::string& script,
                                       SubprocessOptions options = {}) {
  return RunSubprocess({"/bin/sh", "-c", script}, options);
}

TEST(SubprocessTest, CapturesBothStreamsAndTheExitCode) {
  absl::StatusOr<SubprocessResult> r = Shell("echo out; echo err >&2; exit 4");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 4);
  EXPECT_EQ(r->stdout_text, "out\n");
  EXPECT_EQ(r->stderr_text, "err\n");
  EXPECT_FALSE(r->timed_out);
  EXPECT_FALSE(r->truncated);
}

TEST(SubprocessTest, TimeoutKillsTheChildAndItsChildren) {
  SubprocessOptions options;
  options.timeout = std::chrono::milliseconds(200);
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<SubprocessResult> r =
      Shell("sleep 30 & sleep 30; wait", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->term_signal, SIGKILL);
  // The grandchild held the pipes open; killing the group is what ended it.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

// Also where pidfd_open fails (found in review: the wait then blocked in
// waitpid past the deadline, for as long as the child ran).
TEST(SubprocessTest, ChildThatClosesItsPipesIsKilledAtTheTimeout) {
  for (bool pidfd : {true, false}) {
    SCOPED_TRACE(pidfd ? "with a pidfd" : "without a pidfd");
    SubprocessOptions options;
    options.timeout = std::chrono::milliseconds(300);
    options.wait_with_pidfd = pidfd;
    auto start = std::chrono::steady_clock::now();
    // The shell closes stdout and stderr, then keeps running: end of stream
    // on both pipes must not mean "exited".
    absl::StatusOr<SubprocessResult> r =
        Shell("exec >&- 2>&-; sleep 30", options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->timed_out);
    EXPECT_EQ(r->term_signal, SIGKILL);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  }
}

TEST(SubprocessTest, WithoutAPidfdTheExitCodeIsStillRead) {
  SubprocessOptions options;
  options.wait_with_pidfd = false;
  absl::StatusOr<SubprocessResult> r = Shell("exec >&- 2>&-; sleep 0.1; exit 3", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 3);
}

TEST(SubprocessTest, OutputBeyondTheCapIsDroppedAndFlagged) {
  SubprocessOptions options;
  options.max_output_bytes = 1000;
  absl::StatusOr<SubprocessResult> r =
      Shell("head -c 100000 /dev/zero | tr '\\0' x", options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_text.size(), 1000u);
  EXPECT_TRUE(r->truncated);
  EXPECT_EQ(r->exit_code, 0);
}

TEST(SubprocessTest, EnvironmentIsOnlyWhatWasGiven) {
  setenv("KMSFLEET_SECRET_FOR_TEST", "leak", 1);
  SubprocessOptions options;
  options.environment = {"ONLY=this"};
  absl::StatusOr<SubprocessResult> r = RunSubprocess({"/usr/bin/env"}, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stdout_text, "ONLY=this\n");
}

TEST(SubprocessTest, MissingBinaryIsAnErrorNamingIt) {
  absl::StatusOr<SubprocessResult> r =
      RunSubprocess({"/nonexistent/bao-kms-provider", "version"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.status()), reason::kSubprocessFailed);
  EXPECT_NE(
      std::string(r.status().message()).find("/nonexistent/bao-kms-provider"),
      std::string::npos);
}

TEST(SubprocessTest, FileThatCannotBeExecutedIsAnErrorSayingWhy) {
  testing::TempDir dir;
  const std::string path = dir.File("bao-kms-provider");
  testing::WriteFile(path, "#!/bin/sh\necho ran\n");  // no execute bit
  absl::StatusOr<SubprocessResult> r = RunSubprocess({path, "version"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.status()), reason::kSubprocessFailed);
  EXPECT_EQ(r.status().message(), "cannot run " + path + ": exec: Permission denied");
}

TEST(SubprocessTest, EmptyCommandLineIsRefused) {
  EXPECT_EQ(RunSubprocess({}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SubprocessTest, StdinIsClosedSoAPromptCannotHang) {
  absl::StatusOr<SubprocessResult> r = Shell("read line; echo \"got:$line\"");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_text, "got:\n");
}

// kmsfleetd blocks SIGTERM, SIGINT and SIGHUP in every thread (for
// sigwait); an exec'd command inherits a blocked mask, and one that does
// not reset it (most do not; dash does, so no shell here) could not be
// stopped by any of them.
TEST(SubprocessTest, TheChildStartsWithNoSignalBlocked) {
  sigset_t stop;
  sigemptyset(&stop);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop, sig);
  sigset_t before;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &stop, &before), 0);
  // An ignored SIGPIPE would be inherited as ignored too.
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction old_pipe {};
  ASSERT_EQ(sigaction(SIGPIPE, &ignore, &old_pipe), 0);
  absl::StatusOr<SubprocessResult> r =
      RunSubprocess({"/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"}, {});
  ASSERT_EQ(sigaction(SIGPIPE, &old_pipe, nullptr), 0);
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &before, nullptr), 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->stdout_text, ::testing::HasSubstr("SigBlk:\t0000000000000000\n"));
  const size_t ign = r->stdout_text.find("SigIgn:\t");
  ASSERT_NE(ign, std::string::npos) << r->stdout_text;
  const uint64_t ignored = std::stoull(r->stdout_text.substr(ign + 8, 16), nullptr, 16);
  EXPECT_EQ(ignored & (uint64_t{1} << (SIGPIPE - 1)), 0u) << r->stdout_text;
}

}  // namespace
}  // namespace kmsfleet
