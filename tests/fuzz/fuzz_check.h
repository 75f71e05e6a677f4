// Property checks shared by the fuzz targets. A failed check traps, which
// libFuzzer reports as a crash with the input that caused it, and which
// the replay driver (replay_main.cc) reports as a failed test.
#ifndef KMSFLEET_TESTS_FUZZ_FUZZ_CHECK_H_
#define KMSFLEET_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::fuzz {

inline void Require(bool condition) {
  if (!condition) __builtin_trap();
}

// Every refusal carries a stable reason, and a message that can travel in
// a protobuf string, a log line and a terminal: valid UTF-8, no control
// character but tab and newline, bounded (status.cc's SafeText).
inline bool IsSafeText(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F) return false;
      ++i;
      continue;
    }
    size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (length == 0 || c > 0xF4 || i + length > text.size()) return false;
    for (size_t k = 1; k < length; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

inline void CheckError(const absl::Status& status) {
  Require(!status.ok());
  Require(!ReasonOf(status).empty());
  Require(!status.message().empty());
  Require(status.message().size() <= 4096);
  Require(IsSafeText(std::string_view(status.message().data(), status.message().size())));
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace kmsfleet::fuzz

#endif  // KMSFLEET_TESTS_FUZZ_FUZZ_CHECK_H_
