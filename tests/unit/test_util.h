// Helpers for the unit tests: fixtures under tests/unit/testdata/, and a
// holder for statuses that helpers have already checked.
#ifndef KMSFLEET_TESTS_UNIT_TEST_UTIL_H_
#define KMSFLEET_TESTS_UNIT_TEST_UTIL_H_

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace kmsfleet::testing {

// An error a helper such as ExpectRejected() has already checked for its
// code and reason. Tests inspect it further (message, metadata) or drop it;
// absl::Status itself is [[nodiscard]], which is right everywhere else.
class Rejection {
 public:
  explicit Rejection(absl::Status status) : status_(std::move(status)) {}
  operator const absl::Status&() const { return status_; }  // NOLINT
  absl::string_view message() const { return status_.message(); }

 private:
  absl::Status status_;
};

// Returns the bytes of testdata/<name>; adds a test failure and returns ""
// if the file cannot be read.
std::string ReadTestData(std::string_view name);

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_UNIT_TEST_UTIL_H_
