// Downloads over https from `openssl s_server -WWW` with a certificate made
// for localhost: verified against the configured CA, refused without it,
// and bounded in size.
#include "kmsfleet/node/http_fetch.h"

#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/artifacts.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using testing::ChildOptions;
using testing::ChildProcess;

class HttpFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kffetch.XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::filesystem::create_directory(dir_ + "/www");
    std::ofstream(dir_ + "/www/bao-kms-provider_0.2.0_linux_amd64")
        << std::string(100000, 'x');
    ASSERT_EQ(std::system(("cd " + dir_ +
                           " && openssl req -x509 -newkey ec -pkeyopt "
                           "ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
                           "/CN=localhost -addext subjectAltName=DNS:localhost "
                           "-keyout key.pem -out cert.pem 2>/dev/null")
                              .c_str()),
              0);
    port_ = testing::FreeLoopbackPort();
    server_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{"/bin/sh", "-c",
                                 "cd " + dir_ + "/www && exec openssl s_server -quiet "
                                 "-WWW -accept 127.0.0.1:" + std::to_string(port_) +
                                 " -cert ../cert.pem -key ../key.pem"},
        ChildOptions{.out_path = dir_ + "/server.log"});
    // s_server prints nothing when ready; wait until it accepts.
    ASSERT_TRUE(testing::WaitUntil([&] { return Accepts(); }, std::chrono::seconds(10)));
    options_.ca_file = dir_ + "/cert.pem";
    options_.total_timeout = std::chrono::seconds(10);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }
  bool Accepts() const {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    return ok;
  }
  std::string Url(const std::string& name) const {
    return "https://localhost:" + std::to_string(port_) + "/" + name;
  }

  std::string dir_;
  uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> server_;
  FetchOptions options_;
};

TEST_F(HttpFetchTest, DownloadsWithTheConfiguredCa) {
  std::string dest = dir_ + "/got";
  absl::Status s = FetchToFile(Url("bao-kms-provider_0.2.0_linux_amd64"), dest, options_);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(std::filesystem::file_size(dest), 100000u);
}

TEST_F(HttpFetchTest, UntrustedCertificateIsRefused) {
  options_.ca_file = "";  // the system store does not know our test CA
  std::string dest = dir_ + "/got";
  absl::Status s = FetchToFile(Url("bao-kms-provider_0.2.0_linux_amd64"), dest, options_);
  EXPECT_EQ(ReasonOf(s), reason::kHttpError) << s;
  EXPECT_NE(s.message().find("TLS handshake"), std::string::npos) << s;
  EXPECT_FALSE(std::filesystem::exists(dest));
}

TEST_F(HttpFetchTest, CertificateForAnotherNameIsRefused) {
  std::string dest = dir_ + "/got";
  // Trusted CA, but the certificate names localhost, not 127.0.0.1.
  absl::Status s = FetchToFile("https://127.0.0.1:" + std::to_string(port_) +
                                   "/bao-kms-provider_0.2.0_linux_amd64",
                               dest, options_);
  EXPECT_EQ(ReasonOf(s), reason::kHttpError) << s;
  EXPECT_FALSE(std::filesystem::exists(dest));
}

TEST_F(HttpFetchTest, OversizedBodyIsRefused) {
  options_.max_bytes = 1000;
  std::string dest = dir_ + "/got";
  absl::Status s = FetchToFile(Url("bao-kms-provider_0.2.0_linux_amd64"), dest, options_);
  EXPECT_EQ(ReasonOf(s), reason::kInputTooLarge) << s;
  EXPECT_FALSE(std::filesystem::exists(dest));
}

TEST_F(HttpFetchTest, StageFromAUrlVerifiesTheChecksum) {
  std::string sum = dir_ + "/checksums.txt";
  ASSERT_EQ(std::system(("cd " + dir_ + "/www && sha256sum "
                         "bao-kms-provider_0.2.0_linux_amd64 > " + sum).c_str()), 0);
  ArtifactStoreOptions store;
  store.state_dir = dir_ + "/state";
  store.allow_unsigned = true;
  store.fetch = options_;
  store.allowed_url_prefixes = {"https://localhost:" + std::to_string(port_) + "/"};
  absl::StatusOr<StagedArtifact> a =
      Stage(store, {"0.2.0", Url("bao-kms-provider_0.2.0_linux_amd64"), sum, "", "", "", ""});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(std::filesystem::file_size(a->binary_path), 100000u);
  // The same bytes under another name in checksums.txt do not match.
  std::ofstream(sum) << std::string(64, '0') << "  bao-kms-provider_0.2.0_linux_amd64\n";
  absl::StatusOr<StagedArtifact> bad =
      Stage(store, {"0.2.0", Url("bao-kms-provider_0.2.0_linux_amd64"), sum, "", "", "", ""});
  EXPECT_EQ(ReasonOf(bad.status()), reason::kChecksumMismatch);
  EXPECT_NE(bad.status().message().find("https://localhost"), std::string::npos);
  for (const auto& e : std::filesystem::directory_iterator(store.state_dir + "/artifacts")) {
    EXPECT_NE(e.path().filename().string().rfind(".incoming-", 0), 0u) << e.path();
  }
}

// The runbook stages from the release server: checksums.txt and its
// signature are URLs too, downloaded under the same prefixes and verified
// with this agent's key; nothing of them is left behind.
TEST_F(HttpFetchTest, StageWithChecksumsAndSignatureFromUrls) {
  ASSERT_EQ(std::system(("cd " + dir_ + " && openssl genpkey -algorithm ed25519 -out ed.key "
                         "&& openssl pkey -in ed.key -pubout -out ed.pub && cd www && "
                         "sha256sum bao-kms-provider_0.2.0_linux_amd64 > checksums.txt && "
                         "openssl pkeyutl -sign -inkey ../ed.key -rawin -in checksums.txt | "
                         "base64 -w0 > checksums.txt.sig").c_str()),
            0);
  ArtifactStoreOptions store;
  store.state_dir = dir_ + "/state";
  store.public_key_files = {dir_ + "/ed.pub"};
  store.fetch = options_;
  store.allowed_url_prefixes = {"https://localhost:" + std::to_string(port_) + "/"};
  absl::StatusOr<StagedArtifact> a =
      Stage(store, {"0.2.0", Url("bao-kms-provider_0.2.0_linux_amd64"), Url("checksums.txt"),
                    Url("checksums.txt.sig"), "", "", ""});
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->is_signed);
  EXPECT_EQ(a->signer, dir_ + "/ed.pub");
  for (const auto& e : std::filesystem::directory_iterator(store.state_dir + "/artifacts")) {
    EXPECT_NE(e.path().filename().string().rfind(".incoming-", 0), 0u) << e.path();
  }
  // The prefixes bound these downloads too.
  store.allowed_url_prefixes = {"https://localhost:" + std::to_string(port_) + "/other/"};
  absl::StatusOr<StagedArtifact> refused =
      Stage(store, {"0.2.0", dir_ + "/www/bao-kms-provider_0.2.0_linux_amd64",
                    Url("checksums.txt"), Url("checksums.txt.sig"), "", "", ""});
  EXPECT_EQ(ReasonOf(refused.status()), reason::kSourceNotAllowed) << refused.status();
}

TEST(UrlFileNameTest, LastSegmentWithoutQuery) {
  EXPECT_EQ(UrlFileName("https://h/r/v1/bao_0.2.0_linux_amd64?x=1"), "bao_0.2.0_linux_amd64");
  EXPECT_EQ(UrlFileName("https://h"), "");
  EXPECT_TRUE(IsFetchUrl("http://x/y"));
  EXPECT_FALSE(IsFetchUrl("/usr/bin/x"));
  EXPECT_EQ(ReasonOf(FetchToFile("ftp://x/y", "/tmp/never", {})), reason::kInvalidConfig);
}

}  // namespace
}  // namespace kmsfleet
