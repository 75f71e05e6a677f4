// The live probe's `version` fallback: with no provider answering, the
// scrape has no build info, so the probe runs the installed binary's
// `version`, and must run it as every other provider command is run.
#include "kmsfleet/node/provider_probe.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "kmsfleet/core/reasons.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

class ProviderProbeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // reachable by run_as
    // Nothing listens: every read fails at once, and the version is asked.
    const uint16_t port = testing::FreeLoopbackPort();
    endpoints_.metrics = {"127.0.0.1", port, "/metrics"};
    endpoints_.ready = {"127.0.0.1", port, "/ready"};
    endpoints_.live = {"127.0.0.1", port, "/live"};
    endpoints_.kms_socket = dir_.File("kms.sock");
    endpoints_.kms_timeout = std::chrono::milliseconds(500);
    endpoints_.binary = dir_.File("bao-kms-provider");
    // The version this binary prints says who ran it.
    testing::WriteFile(endpoints_.binary,
                       "#!/bin/sh\nif [ \"$(id -un)\" = nobody ]; then v=0.2.0; else v=0.1.0; fi\n"
                       "echo \"bao-kms-provider version $v\"\n");
    ASSERT_EQ(chmod(endpoints_.binary.c_str(), 0755), 0);
  }

  v1::NodeState Observe() {
    return NewProviderProbe("cp-1", endpoints_, clock_)->Observe();
  }

  static std::string ConditionMessage(const v1::NodeState& state, std::string_view reason) {
    for (const auto& c : state.conditions()) {
      if (c.reason() == reason) return c.message();
    }
    return "";
  }

  testing::TempDir dir_;
  ProviderEndpoints endpoints_;
  SystemClock clock_;
};

// Found in review: the observation's `version` ran as kmsfleetd's user
// (root on a node) while doctor and rotation-plan ran as executor.run_as.
TEST_F(ProviderProbeTest, TheVersionCommandRunsAsTheConfiguredUser) {
  if (geteuid() != 0) GTEST_SKIP() << "setpriv needs root";
  endpoints_.run_as = "nobody";
  v1::NodeState state = Observe();
  EXPECT_EQ(state.provider_version(), "0.2.0") << state.DebugString();
  EXPECT_EQ(state.provider_version_source(), "version_command");
}

TEST_F(ProviderProbeTest, AnUnknownRunAsUserIsAConditionNamingTheKey) {
  endpoints_.run_as = "kmsfleet-no-such-user";
  v1::NodeState state = Observe();
  EXPECT_EQ(state.provider_version(), "") << state.DebugString();
  EXPECT_EQ(ConditionMessage(state, reason::kVersionCommandFailed),
            "executor.run_as: no user \"kmsfleet-no-such-user\"")
      << state.DebugString();
}

TEST_F(ProviderProbeTest, WithoutRunAsTheVersionRunsAsTheAgent) {
  v1::NodeState state = Observe();
  EXPECT_EQ(state.provider_version(), "0.1.0") << state.DebugString();
  EXPECT_EQ(state.provider_version_source(), "version_command");
}

}  // namespace
}  // namespace kmsfleet
