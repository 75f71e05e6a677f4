#include "kmsfleet/cluster/upload_idle_watch.h"

#include <utility>

namespace kmsfleet {

UploadIdleWatch::UploadIdleWatch(std::chrono::milliseconds idle, std::function<void()> cancel)
    : idle_(idle),
      cancel_(std::move(cancel)),
      last_(std::chrono::steady_clock::now()),
      thread_([this] { Run(); }) {}

UploadIdleWatch::~UploadIdleWatch() { Stop(); }

void UploadIdleWatch::Progress() {
  std::lock_guard<std::mutex> lock(mu_);
  last_ = std::chrono::steady_clock::now();
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
    const auto due = last_ + idle_;
    if (std::chrono::steady_clock::now() < due) {
      // Progress moves `last_` without waking this: the wait is re-armed
      // from the new time when it ends.
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
