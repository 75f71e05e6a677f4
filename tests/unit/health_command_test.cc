// `kmsfleetctl health`: its reading of grpc.health.v1.HealthCheckResponse,
// its flags and what it prints.
#include "cli/health_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <iostream>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cli/usage_exit.h"
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
                                 "\x08\x81\x80\x80\x80\x10"s,  // 2^32 + 1: not SERVING
                                 "\x08\x04"s,        // no status of the protocol
                                 std::string(2048, '\x08')}) {  // over 1 KiB
    absl::StatusOr<int> s = ParseHealthStatus(bad);
    ASSERT_FALSE(s.ok()) << "accepted " << bad.size() << " bytes";
    EXPECT_EQ(ReasonOf(s.status()), reason::kMalformedMessage);
  }
}

// `kmsfleetctl health args...` parsed as kmsfleetctl's main parses it:
// nullopt to go on, else the exit code.
std::optional<int> ParseHealth(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<const char*> argv = {"kmsfleetctl", "health"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(app, static_cast<int>(argv.size()), argv.data());
}

// Found in review: `health` prints a status line, yet had no --output.
TEST(HealthCommandTest, TakesOutputTableOrJson) {
  for (const char* output : {"table", "json"}) {
    CLI::App app;
    HealthFlags flags;
    AddHealthCommand(app, flags);
    EXPECT_FALSE(ParseHealth(app, {"-o", output}).has_value()) << output;
    EXPECT_EQ(flags.output, output);
  }
  CLI::App app;
  HealthFlags flags;
  AddHealthCommand(app, flags);
  EXPECT_EQ(ParseHealth(app, {"--output", "yaml"}).value_or(0), 2);
}

TEST(HealthCommandTest, JsonCarriesTheAnswerWhateverItIs) {
  for (auto [status, name, serving] :
       {std::tuple{1, "SERVING", true}, std::tuple{2, "NOT_SERVING", false}}) {
    boost::json::object o =
        boost::json::parse(RenderHealthJson("unix:/run/kmsfleet/agent.sock", status))
            .as_object();
    EXPECT_EQ(o.at("agent").as_string(), "unix:/run/kmsfleet/agent.sock");
    EXPECT_EQ(o.at("status").as_string(), name);
    EXPECT_EQ(o.at("code").to_number<int>(), status);
    EXPECT_EQ(o.at("serving").as_bool(), serving);
  }
}

TEST(HealthCommandTest, AnAgentThatCannotBeAskedPrintsItsReasonAndNoData) {
  HealthFlags flags;
  flags.agent = "unix:" + ::testing::TempDir() + "/no-agent.sock";
  flags.output = "json";
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = RunHealth(flags);
  std::cout.flush();
  const std::string err = ::testing::internal::GetCapturedStderr();
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err, ::testing::HasSubstr("[AGENT_UNREACHABLE]"));
  EXPECT_EQ(out, "");
}

TEST(HealthCommandTest, HelpShowsAnExample) {
  CLI::App app;
  HealthFlags flags;
  EXPECT_THAT(AddHealthCommand(app, flags)->help(),
              ::testing::HasSubstr("Example:\n  kmsfleetctl health --agent "));
}

}  // namespace
}  // namespace kmsfleet
