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
// a protobuf string, a log line and a terminal: printable ASCII, bounded.
inline void CheckError(const absl::Status& status) {
  Require(!status.ok());
  Require(!ReasonOf(status).empty());
  Require(!status.message().empty());
  Require(status.message().size() <= 4096);
  for (char c : status.message()) Require(c >= 0x20 && c < 0x7F);
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace kmsfleet::fuzz

#endif  // KMSFLEET_TESTS_FUZZ_FUZZ_CHECK_H_
