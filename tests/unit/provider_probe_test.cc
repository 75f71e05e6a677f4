// The live probe's `version` fallback: with no provider answering, the
// scrape has no build info, so the probe runs the installed binary's
// `version`, and must run it as every other provider command is run.
#include "kmsfleet/node/provider_probe.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

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

  // A TCP socket bound to 127.0.0.1:`port`, not listening; -1 on failure.
  static int BoundLoopbackSocket(uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
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

// A verification reads the version only of a provider answering /ready
// 200: with nothing listening, it runs no `version`.
TEST_F(ProviderProbeTest, AVerificationDoesNotVersionAProviderThatIsNotUp) {
  v1::NodeState state = NewProviderProbe("cp-1", endpoints_, clock_)->ObserveForVerify();
  EXPECT_EQ(state.provider_version(), "") << state.DebugString();
  EXPECT_EQ(state.provider_version_source(), "") << state.DebugString();
  EXPECT_EQ(ConditionMessage(state, reason::kVersionCommandFailed), "");
  EXPECT_NE(ConditionMessage(state, reason::kHealthUnreachable), "") << state.DebugString();
}

// A stage asks the running version: when /metrics shows build_info, that
// one read answers, and neither `version` nor the other endpoints are asked.
TEST_F(ProviderProbeTest, TheRunningVersionComesFromBuildInfoAlone) {
  testing::WriteFile(endpoints_.binary,
                     "#!/bin/sh\ntouch " + dir_.File("version-ran") +
                         "\necho \"bao-kms-provider version 0.1.0\"\n");
  const int listener = BoundLoopbackSocket(endpoints_.metrics.port);
  ASSERT_GE(listener, 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  std::atomic<int> requests = 0;
  std::thread server([&] {
    for (;;) {
      const int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      ++requests;
      char buffer[4096];
      (void)::read(fd, buffer, sizeof buffer);
      const std::string body =
          "# TYPE openbao_kms_build_info gauge\n"
          "openbao_kms_build_info{version=\"0.3.1\",commit=\"abc\","
          "build_date=\"2026-10-01T00:00:00Z\",dirty=\"false\"} 1\n";
      const std::string response =
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::write(fd, response.data(), response.size());
      ::close(fd);
    }
  });
  const std::string version = NewProviderProbe("cp-1", endpoints_, clock_)->RunningVersion();
  ::shutdown(listener, SHUT_RDWR);
  server.join();
  ::close(listener);
  EXPECT_EQ(version, "0.3.1");
  EXPECT_EQ(requests, 1);
  EXPECT_FALSE(std::filesystem::exists(dir_.File("version-ran")));
}

// Without build_info (nothing listens here), the observation's fallback.
TEST_F(ProviderProbeTest, WithoutBuildInfoTheRunningVersionIsAsked) {
  EXPECT_EQ(NewProviderProbe("cp-1", endpoints_, clock_)->RunningVersion(), "0.1.0");
}

TEST_F(ProviderProbeTest, TheHealthListenerIsSeenAsItBinds) {
  std::unique_ptr<ProviderProbe> probe = NewProviderProbe("cp-1", endpoints_, clock_);
  EXPECT_EQ(probe->HealthListenerAccepts(), std::optional<bool>(false));
  const int fd = BoundLoopbackSocket(endpoints_.ready.port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(probe->HealthListenerAccepts(), std::optional<bool>(false)) << "bound, not listening";
  ASSERT_EQ(::listen(fd, 4), 0);
  EXPECT_EQ(probe->HealthListenerAccepts(), std::optional<bool>(true));
  ::close(fd);
  // A name is never resolved here: the probe cannot tell.
  endpoints_.ready.host = "localhost";
  EXPECT_EQ(NewProviderProbe("cp-1", endpoints_, clock_)->HealthListenerAccepts(), std::nullopt);
}

}  // namespace
}  // namespace kmsfleet
