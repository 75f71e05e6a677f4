// kmsfleetd's failed start after recovery began (daemon/failed_start.h):
// it waits for the recovery, extending its start meanwhile, unless asked
// to stop.
#include "daemon/failed_start.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>

namespace kmsfleet {
namespace {

// Blocks SIGTERM, SIGINT and SIGHUP in this thread (a raise() is
// delivered to the calling thread only) for the test's length.
class FailedStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sigemptyset(&stop_signals_);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals_, s);
    pthread_sigmask(SIG_BLOCK, &stop_signals_, &saved_);
  }
  void TearDown() override {
    // Nothing may stay pending to be delivered when the mask is restored.
    timespec none{0, 0};
    while (sigtimedwait(&stop_signals_, nullptr, &none) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }

  sigset_t stop_signals_, saved_;
};

// Found in review: the start's error return joined the recovery worker
// with SIGTERM blocked and unread, past systemd's start and stop timeouts.
TEST_F(FailedStartTest, AStopRequestEndsTheWaitWhileRecoveryRuns) {
  int extended = 0;
  raise(SIGTERM);
  FailedStartEnd end = WaitOutRecovery([] { return true; }, stop_signals_,
                                       [&] { ++extended; }, std::chrono::seconds(30));
  EXPECT_EQ(end, FailedStartEnd::kStopRequested);
  EXPECT_EQ(extended, 1);
}

TEST_F(FailedStartTest, TheWaitEndsWhenRecoveryEndsAndSighupIsIgnored) {
  int asked = 0, extended = 0;
  raise(SIGHUP);
  FailedStartEnd end = WaitOutRecovery([&] { return ++asked <= 3; }, stop_signals_,
                                       [&] { ++extended; }, std::chrono::milliseconds(10));
  EXPECT_EQ(end, FailedStartEnd::kRecoveryDone);
  EXPECT_EQ(extended, 3);
}

TEST_F(FailedStartTest, NoRecoveryNoWait) {
  int extended = 0;
  EXPECT_EQ(WaitOutRecovery([] { return false; }, stop_signals_, [&] { ++extended; }),
            FailedStartEnd::kRecoveryDone);
  EXPECT_EQ(extended, 0);
}

}  // namespace
}  // namespace kmsfleet
