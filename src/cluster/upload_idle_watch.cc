#include "kmsfleet/cluster/upload_idle_watch.h"

#include <utility>

namespace kmsfleet {

UploadIdleWatch::UploadIdleWatch(std::chrono::milliseconds idle, std::function<void()> cancel)
    : idle_(idle), cancel_(std::move(cancel)), thread_([this] { Run(); }) {}

UploadIdleWatch::~UploadIdleWatch() { Stop(); }

void UploadIdleWatch::AwaitingChunk() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting_since_ = std::chrono::steady_clock::now();
    waiting_ = true;
  }
  changed_.notify_all();
}

void UploadIdleWatch::ChunkCame() {
  std::lock_guard<std::mutex> lock(mu_);
  waiting_ = false;  // the watch sees it when its wait ends
}

bool UploadIdleWatch::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  return fired_;
}

void UploadIdleWatch::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (!waiting_) {
      changed_.wait(lock);
      continue;
    }
    const auto due = waiting_since_ + idle_;
    if (std::chrono::steady_clock::now() < due) {
      // A chunk that comes meanwhile does not wake this: the wait ends at
      // `due` and finds the stream no longer waiting, or waiting anew.
      changed_.wait_until(lock, due);
      continue;
    }
    fired_ = true;
    // Under the lock: Stop waits for it, so no cancel follows a Stop.
    cancel_();
    return;
  }
}

}  // namespace kmsfleet
