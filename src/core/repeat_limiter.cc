#include "kmsfleet/core/repeat_limiter.h"

#include <algorithm>

namespace kmsfleet {

RepeatLimiter::RepeatLimiter(int64_t interval_ms, size_t max_keys)
    : interval_ms_(interval_ms), max_keys_(std::max<size_t>(max_keys, 1)) {}

std::optional<int64_t> RepeatLimiter::Admit(const std::string& key, int64_t now_ms) {
  auto it = keys_.find(key);
  if (it == keys_.end()) {
    if (keys_.size() >= max_keys_) MakeRoom();
    keys_.emplace(key, Key{now_ms, 0});
    return 0;
  }
  Key& k = it->second;
  // A clock that went back (a wall clock stepped) writes at once rather
  // than holding the key back for the length of the step.
  if (now_ms - k.written_at_ms < interval_ms_ && now_ms >= k.written_at_ms) {
    ++k.held_back;
    return std::nullopt;
  }
  const int64_t held = k.held_back;
  k = Key{now_ms, 0};
  return held;
}

// The key written longest ago goes: a key that is still repeating was
// written within the interval, so it stays unless every key is.
void RepeatLimiter::MakeRoom() {
  auto oldest = std::min_element(keys_.begin(), keys_.end(), [](const auto& a, const auto& b) {
    return a.second.written_at_ms < b.second.written_at_ms;
  });
  if (oldest != keys_.end()) keys_.erase(oldest);
}

}  // namespace kmsfleet
