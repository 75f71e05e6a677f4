// ProbeOpenBaoHealth against a fake /v1/sys/health answering each way
// OpenBao does, and what CheckOpenBaoHealth then decides: the status codes
// OpenBao uses for standby, sealed and uninitialised are answers for the
// guard, never transport errors; https is verified against the provider's
// CA file and TLS server name.
#include "kmsfleet/node/openbao_health.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "http_server.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "openbao_health_fake.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using testing::ChildOptions;
using testing::ChildProcess;
using testing::TempDir;

constexpr std::chrono::milliseconds kTimeout{3000};

// The fake endpoint in-process, answering as `state` says.
class FakeOpenBao {
 public:
  explicit FakeOpenBao(std::string state) : state_(std::move(state)) {
    absl::StatusOr<std::string> bound = server_.Listen(
        "127.0.0.1:0", [this](std::string_view method, std::string_view target) {
          return fake::HandleOpenBaoHealth(method, target, state_);
        });
    EXPECT_TRUE(bound.ok()) << bound.status();
    address_ = "http://" + bound.value_or("");
    server_.Start();
  }
  ProviderConfigFacts Provider() const {
    ProviderConfigFacts p;
    p.openbao_address = address_;
    return p;
  }

 private:
  const std::string state_;
  fake::HttpServer server_;
  std::string address_;
};

OpenBaoProbe ProbeFake(const std::string& state) {
  FakeOpenBao bao(state);
  return ProbeOpenBaoHealth(bao.Provider(), kTimeout);
}

TEST(OpenBaoProbeTest, ActiveAnswerPasses) {
  OpenBaoProbe probe = ProbeFake("active");
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(probe.status, 200);
  EXPECT_THAT(probe.body, HasSubstr("\"sealed\":false"));
  EXPECT_THAT(probe.address, HasSubstr("http://127.0.0.1:"));
  EXPECT_TRUE(CheckOpenBaoHealth(probe).ok()) << CheckOpenBaoHealth(probe);
}

TEST(OpenBaoProbeTest, StandbyAnswerIsForTheGuardToRefuse) {
  OpenBaoProbe probe = ProbeFake("standby");
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(probe.status, 429);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(probe)), reason::kOpenBaoStandby);
}

TEST(OpenBaoProbeTest, SealedAnswerIsForTheGuardToRefuse) {
  OpenBaoProbe probe = ProbeFake("sealed");
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(probe.status, 503);
  absl::Status s = CheckOpenBaoHealth(probe);
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoSealed) << s;
  EXPECT_THAT(s.message(), HasSubstr(probe.address));
}

TEST(OpenBaoProbeTest, UninitializedAnswerIsForTheGuardToRefuse) {
  OpenBaoProbe probe = ProbeFake("uninitialized");
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(probe.status, 501);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(probe)), reason::kOpenBaoUninitialized);
}

TEST(OpenBaoProbeTest, GarbageBodyIsMalformed) {
  OpenBaoProbe probe = ProbeFake("garbage");
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(probe)), reason::kMalformedOpenBaoHealth);
}

TEST(OpenBaoProbeTest, OversizedBodyIsRefusedUnbufferedAndMalformed) {
  OpenBaoProbe probe = ProbeFake("oversized");
  EXPECT_EQ(ReasonOf(probe.transport), reason::kInputTooLarge) << probe.transport;
  EXPECT_TRUE(probe.body.empty());
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(probe)), reason::kMalformedOpenBaoHealth);
}

TEST(OpenBaoProbeTest, AddressWithTrailingSlashReachesTheHealthPath) {
  FakeOpenBao bao("active");
  ProviderConfigFacts provider = bao.Provider();
  provider.openbao_address += "/";
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider, kTimeout);
  EXPECT_EQ(probe.status, 200) << probe.transport;
}

TEST(OpenBaoProbeTest, ConnectionRefusedIsUnreachableNamingTheAddress) {
  ProviderConfigFacts provider;
  // A free port is one nobody listens on.
  provider.openbao_address =
      "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider, kTimeout);
  EXPECT_EQ(probe.transport.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable);
  EXPECT_EQ(MetadataOf(probe.transport, "address"), provider.openbao_address);
  absl::Status s = CheckOpenBaoHealth(probe);
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoUnreachable) << s;
  EXPECT_THAT(s.message(), HasSubstr(provider.openbao_address));
}

TEST(OpenBaoProbeTest, SilentListenerTimesOutAsUnreachable) {
  // Listening but never accepting: the kernel completes the handshake and
  // nothing ever answers.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  listen(fd, 4);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ProviderConfigFacts provider;
  provider.openbao_address = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  auto start = std::chrono::steady_clock::now();
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider, std::chrono::milliseconds(300));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  close(fd);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable) << probe.transport;
  EXPECT_EQ(MetadataOf(probe.transport, "cause"), reason::kTimeout);
}

TEST(OpenBaoProbeTest, MissingOrBadAddressIsUnreachable) {
  ProviderConfigFacts provider;
  EXPECT_EQ(ReasonOf(ProbeOpenBaoHealth(provider, kTimeout).transport),
            reason::kOpenBaoUnreachable);
  provider.openbao_address = "ftp://bao:8200";
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider, kTimeout);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable);
  EXPECT_THAT(probe.transport.message(), HasSubstr("ftp://bao:8200"));
}

// The fake-openbao-health binary re-reads its state file per request, so a
// test can seal OpenBao while a plan runs.
TEST(FakeOpenBaoHealthTest, StateFileIsReadOnEveryRequest) {
  TempDir dir;
  testing::WriteFile(dir.File("state"), "active\n");
  ChildProcess fake({FAKE_OPENBAO_HEALTH_PATH, "--listen", "127.0.0.1:0",
                     "--listen-info", dir.File("listen.json"), "--state-file",
                     dir.File("state")},
                    ChildOptions{.out_path = dir.File("fake.log")});
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return testing::PathExists(dir.File("listen.json")); }, std::chrono::seconds(10)))
      << fake.Output();
  const std::string info = testing::ReadFile(dir.File("listen.json"));
  const size_t at = info.find("\"url\":\"") + 7;
  ProviderConfigFacts provider;
  provider.openbao_address = info.substr(at, info.find('"', at) - at);
  EXPECT_TRUE(CheckOpenBaoHealth(ProbeOpenBaoHealth(provider, kTimeout)).ok()) << info;
  testing::WriteFile(dir.File("state"), "sealed\n");
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(ProbeOpenBaoHealth(provider, kTimeout))),
            reason::kOpenBaoSealed);
  fake.Signal(SIGTERM);
  EXPECT_EQ(fake.Wait(std::chrono::seconds(5)), 0);
  EXPECT_FALSE(testing::PathExists(dir.File("listen.json")));
}

// OpenBao over https, served by `openssl s_server -WWW` with a certificate
// for openbao.test from a throwaway CA, reached at 127.0.0.1.
class OpenBaoTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string d = dir_.path();
    std::filesystem::create_directories(d + "/www/v1/sys");
    testing::WriteFile(d + "/www/v1/sys/health",
                       fake::HandleOpenBaoHealth("GET", "/v1/sys/health", "active").body);
    ASSERT_EQ(std::system(("cd " + d +
                           " && openssl req -x509 -newkey ec -pkeyopt "
                           "ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=test-ca "
                           "-keyout ca.key -out ca.pem 2>/dev/null"
                           " && openssl req -newkey ec -pkeyopt "
                           "ec_paramgen_curve:prime256v1 -nodes -subj /CN=openbao.test "
                           "-keyout key.pem -out req.pem 2>/dev/null"
                           " && printf 'subjectAltName=DNS:openbao.test\\n' > ext.cnf"
                           " && openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key "
                           "-CAcreateserial -days 1 -extfile ext.cnf -out cert.pem 2>/dev/null")
                              .c_str()),
              0);
    port_ = testing::FreeLoopbackPort();
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/bin/sh", "-c",
                                 "cd " + d + "/www && exec openssl s_server -quiet -WWW "
                                 "-accept 127.0.0.1:" + std::to_string(port_) +
                                 " -cert ../cert.pem -key ../key.pem"},
        ChildOptions{.out_path = d + "/server.log"});
    provider_.openbao_address = "https://127.0.0.1:" + std::to_string(port_);
    provider_.openbao_ca_cert_file = d + "/ca.pem";
    provider_.openbao_tls_server_name = "openbao.test";
    // s_server prints nothing when ready; wait until a probe gets through.
    ASSERT_TRUE(testing::WaitUntil(
        [&] { return ProbeOpenBaoHealth(provider_, kTimeout).transport.ok(); },
        std::chrono::seconds(10)))
        << ProbeOpenBaoHealth(provider_, kTimeout).transport;
  }

  TempDir dir_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> server_;
  ProviderConfigFacts provider_;
};

TEST_F(OpenBaoTlsTest, VerifiedWithTheProvidersCaAndServerName) {
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider_, kTimeout);
  ASSERT_TRUE(probe.transport.ok()) << probe.transport;
  EXPECT_EQ(probe.status, 200);
  EXPECT_TRUE(CheckOpenBaoHealth(probe).ok()) << CheckOpenBaoHealth(probe);
}

TEST_F(OpenBaoTlsTest, CertificateNotNamingTheAddressIsRefused) {
  provider_.openbao_tls_server_name = "";  // then it must name 127.0.0.1
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider_, kTimeout);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable) << probe.transport;
  EXPECT_EQ(MetadataOf(probe.transport, "cause"), reason::kHttpError);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(probe)), reason::kOpenBaoUnreachable);
}

TEST_F(OpenBaoTlsTest, UntrustedCertificateIsRefused) {
  provider_.openbao_ca_cert_file = "";  // the system store does not know test-ca
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider_, kTimeout);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable) << probe.transport;
}

TEST_F(OpenBaoTlsTest, UnreadableCaFileIsUnreachableNamingTheFile) {
  provider_.openbao_ca_cert_file = dir_.File("missing.pem");
  OpenBaoProbe probe = ProbeOpenBaoHealth(provider_, kTimeout);
  EXPECT_EQ(ReasonOf(probe.transport), reason::kOpenBaoUnreachable);
  EXPECT_EQ(MetadataOf(probe.transport, "cause"), reason::kInvalidConfig);
  EXPECT_THAT(probe.transport.message(), HasSubstr("missing.pem"));
}

}  // namespace
}  // namespace kmsfleet
