// Which repeats of a log line are written: a line that comes back every
// tick (a command refused AGENT_STARTING, OPERATION_IN_PROGRESS, say, by
// a coordinator asking again each tick) would otherwise fill the journal
// and hide the line that matters.
//
// Not thread-safe: the caller holds its own lock. Time is an input.
#ifndef KMSFLEET_CORE_REPEAT_LIMITER_H_
#define KMSFLEET_CORE_REPEAT_LIMITER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace kmsfleet {

class RepeatLimiter {
 public:
  // At most one line per key each `interval_ms`; at most `max_keys` keys
  // remembered (keys come from callers: a certificate's name, a reason).
  RepeatLimiter(int64_t interval_ms, size_t max_keys);

  // Whether the line under `key` is written at `now_ms`: nullopt to hold
  // it back; otherwise how many under that key were held back since the
  // last one written (0 for the first). A key is written again once
  // `interval_ms` has passed since its last written line. When full, a
  // new key takes the place of the key written longest ago (its count
  // held back is lost: the next line of it counts as a first).
  std::optional<int64_t> Admit(const std::string& key, int64_t now_ms);

  size_t size() const { return keys_.size(); }

 private:
  struct Key {
    int64_t written_at_ms = 0;
    int64_t held_back = 0;
  };
  void MakeRoom();

  int64_t interval_ms_;
  size_t max_keys_;
  std::map<std::string, Key> keys_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_REPEAT_LIMITER_H_
