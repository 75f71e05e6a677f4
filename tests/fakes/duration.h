// Go time.ParseDuration for the flags that take one (`probe --timeout 10s`),
// so "1m30s", "500ms" and "2.5s" behave as with the real binary.
// Thread-safe: free function.
#ifndef KMSFLEET_TESTS_FAKES_DURATION_H_
#define KMSFLEET_TESTS_FAKES_DURATION_H_

#include <chrono>
#include <optional>
#include <string_view>

namespace kmsfleet::fake {

// Returns nullopt for anything Go would reject (missing unit, negative
// values are accepted by Go but make no sense here and are rejected too).
std::optional<std::chrono::nanoseconds> ParseGoDuration(std::string_view text);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_DURATION_H_
