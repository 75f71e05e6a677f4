// Ends an upload whose caller stopped sending (UploadLimits::idle_timeout).
// A synchronous gRPC handler blocked in ServerReader::Read returns only
// when a chunk comes, the caller hangs up, or the server cancels the call:
// this watch is that cancel. One per stream, on a thread of its own.
// Thread-safe: Progress from the stream's thread, the cancel from the
// watch's.
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
  // Calls `cancel` once, on the watch's thread, when `idle` passes with no
  // Progress since the watch began or since the last Progress.
  UploadIdleWatch(std::chrono::milliseconds idle, std::function<void()> cancel);
  // Stops the watch (Stop).
  ~UploadIdleWatch();
  UploadIdleWatch(const UploadIdleWatch&) = delete;
  UploadIdleWatch& operator=(const UploadIdleWatch&) = delete;

  // A chunk came: the idle time counts from now.
  void Progress();
  // Ends the watch; `cancel` is not called after it returns. True if it
  // was called (the stream was ended for its silence).
  bool Stop();

 private:
  void Run();

  const std::chrono::milliseconds idle_;
  const std::function<void()> cancel_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::chrono::steady_clock::time_point last_;  // under mu_
  bool stopping_ = false;                        // under mu_
  bool fired_ = false;                           // under mu_
  std::thread thread_;  // last: starts once the rest is set
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_UPLOAD_IDLE_WATCH_H_
