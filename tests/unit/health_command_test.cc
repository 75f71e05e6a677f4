// `kmsfleetctl health`'s reading of grpc.health.v1.HealthCheckResponse.
#include "cli/health_command.h"

#include <gtest/gtest.h>

#include <string>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using namespace std::string_literals;

TEST(ParseHealthStatus, ReadsTheStatusField) {
  EXPECT_EQ(ParseHealthStatus("\x08\x01"s).value(), 1);  // SERVING
  EXPECT_EQ(ParseHealthStatus("\x08\x02"s).value(), 2);  // NOT_SERVING
}

TEST(ParseHealthStatus, AnEmptyAnswerIsUnknownNotServing) {
  // proto3 leaves a zero enum out: UNKNOWN must not read as SERVING.
  EXPECT_EQ(ParseHealthStatus("").value(), 0);
}

TEST(ParseHealthStatus, IgnoresFieldsItDoesNotKnow) {
  // Field 2 (a string "x") before the status, as a newer server might send.
  EXPECT_EQ(ParseHealthStatus("\x12\x01x\x08\x01"s).value(), 1);
}

TEST(ParseHealthStatus, RefusesWhatIsNoHealthCheckResponse) {
  for (const std::string& bad : {"\x0a\x00"s,        // status as a string
                                 "\x08"s,            // truncated varint
                                 "\xff\xff\xff"s,    // no valid tag
                                 std::string(2048, '\x08')}) {  // over 1 KiB
    absl::StatusOr<int> s = ParseHealthStatus(bad);
    ASSERT_FALSE(s.ok()) << "accepted " << bad.size() << " bytes";
    EXPECT_EQ(ReasonOf(s.status()), reason::kMalformedMessage);
  }
}

}  // namespace
}  // namespace kmsfleet
