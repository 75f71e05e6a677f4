// The check ids and titles of the real `doctor` and `verify-key` reports, in
// execution order (reference §2.3, §2.4; a JWT-file build). Pure data, shared
// by the report commands and by scenario validation so a typo in a scenario's
// doctor.fail list is an error instead of a silently passing check.
// Thread-safe: immutable.
#ifndef KMSFLEET_TESTS_FAKES_CHECK_CATALOG_H_
#define KMSFLEET_TESTS_FAKES_CHECK_CATALOG_H_

#include <string_view>
#include <vector>

namespace kmsfleet::fake {

struct CheckSpec {
  std::string_view id;
  std::string_view title;
  std::string_view pass_message;  // shown when the check passes
  // Shown when a scenario's doctor.fail names this check; worded like the
  // real failure so operators' eyes (and log greps) see something familiar.
  std::string_view fail_message = "check failed";
};

const std::vector<CheckSpec>& DoctorChecks();
const std::vector<CheckSpec>& VerifyKeyChecks();

// True if `id` appears in either catalogue.
bool IsKnownCheckId(std::string_view id);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_CHECK_CATALOG_H_
