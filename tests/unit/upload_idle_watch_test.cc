// The watch that ends an operator upload whose caller stopped sending
// (upload_idle_watch.h): once per silence, never after Stop, and only for
// the time spent waiting for a chunk.
#include "kmsfleet/cluster/upload_idle_watch.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "process_harness.h"

namespace kmsfleet {
namespace {

TEST(UploadIdleWatchTest, ASilentStreamIsCancelledOnce) {
  std::atomic<int> cancels{0};
  UploadIdleWatch watch(std::chrono::milliseconds(50), [&] { ++cancels; });
  watch.AwaitingChunk();
  EXPECT_TRUE(testing::WaitUntil([&] { return cancels > 0; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_TRUE(watch.Stop());
  EXPECT_EQ(cancels, 1);
}

TEST(UploadIdleWatchTest, ChunksKeepTheStreamAndStopEndsTheWatch) {
  std::atomic<int> cancels{0};
  UploadIdleWatch watch(std::chrono::milliseconds(1000), [&] { ++cancels; });
  // Twenty-five chunks 100 ms apart: two and a half times the bound in
  // all, never near it without one.
  for (int i = 0; i < 25; ++i) {
    watch.AwaitingChunk();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    watch.ChunkCame();
  }
  watch.AwaitingChunk();
  EXPECT_FALSE(watch.Stop());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_EQ(cancels, 0);  // nothing after Stop
}

// The agent's own time with a chunk (a slow disk) is not the caller's
// silence: a stream is ended only for a wait for its next chunk.
TEST(UploadIdleWatchTest, OnlyTheWaitForAChunkCounts) {
  std::atomic<int> cancels{0};
  UploadIdleWatch watch(std::chrono::milliseconds(200), [&] { ++cancels; });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // before the first wait
  EXPECT_EQ(cancels, 0);
  watch.AwaitingChunk();
  watch.ChunkCame();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // "writing" the chunk
  EXPECT_EQ(cancels, 0);
  watch.AwaitingChunk();
  EXPECT_TRUE(testing::WaitUntil([&] { return cancels > 0; }, std::chrono::seconds(10)));
  EXPECT_TRUE(watch.Stop());
  EXPECT_EQ(cancels, 1);
}

}  // namespace
}  // namespace kmsfleet
