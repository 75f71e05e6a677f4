// Ends an upload whose caller stopped sending (UploadLimits::idle_timeout).
// A synchronous gRPC handler blocked in ServerReader::Read returns only
// when a chunk comes, the caller hangs up, or the server cancels the call:
// this watch is that cancel. Only the time spent waiting for a chunk
// counts: a slow write of the last one to disk is the agent's, not the
// caller's silence. One per stream, on a thread of its own.
// Thread-safe: AwaitingChunk/ChunkCame from the stream's thread, the
// cancel from the watch's.
#ifndef KMSFLEET_CLUSTER_UPLOAD_IDLE_WATCH_H_
#define KMSFLEET_CLUSTER_UPLOAD_IDLE_WATCH_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace kmsfleet {

class UploadIdleWatch {
 public:
  // Calls `cancel` once, on the watch's thread, when one wait for a chunk
  // (AwaitingChunk to ChunkCame) lasts `idle`. No wait runs at first.
  UploadIdleWatch(std::chrono::milliseconds idle, std::function<void()> cancel);
  // Stops the watch (Stop).
  ~UploadIdleWatch();
  UploadIdleWatch(const UploadIdleWatch&) = delete;
  UploadIdleWatch& operator=(const UploadIdleWatch&) = delete;

  // The stream waits for the caller's next chunk from now.
  void AwaitingChunk();
  // It came (or the stream ended): the wait is over.
  void ChunkCame();
  // Ends the watch; `cancel` is not called after it returns. True if it
  // was called (the stream was ended for its silence).
  bool Stop();

 private:
  void Run();

  const std::chrono::milliseconds idle_;
  const std::function<void()> cancel_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::chrono::steady_clock::time_point waiting_since_;  // under mu_
  bool waiting_ = false;                                 // under mu_
  bool stopping_ = false;                                // under mu_
  bool fired_ = false;                                   // under mu_
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_UPLOAD_IDLE_WATCH_H_
