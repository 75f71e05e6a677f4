// The bounded HTTP GET used for /metrics, /ready and /live.
#include "kmsfleet/node/http_get.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

// Serves one canned reply to one connection on an ephemeral loopback port,
// optionally waiting first; stands in for a misbehaving listener.
class CannedServer {
 public:
  explicit CannedServer(std::string reply, std::chrono::milliseconds delay =
                                               std::chrono::milliseconds(0))
      : reply_(std::move(reply)), delay_(delay) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 1);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~CannedServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  HttpUrl Url(std::string target = "/ready") const {
    return HttpUrl{"127.0.0.1", port_, std::move(target)};
  }
  std::string request() const { return request_; }

 private:
  void Serve() {
    int conn = accept(fd_, nullptr, nullptr);
    if (conn < 0) return;
    char buf[4096];
    while (request_.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = read(conn, buf, sizeof buf);
      if (n <= 0) break;
      request_.append(buf, static_cast<size_t>(n));
    }
    std::this_thread::sleep_for(delay_);
    [[maybe_unused]] ssize_t w = write(conn, reply_.data(), reply_.size());
    close(conn);
  }

  std::string reply_;
  std::chrono::milliseconds delay_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string request_;
  std::thread thread_;
};

std::string Reply(int status, std::string_view reason, std::string_view body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
         "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nContent-Type: application/json\r\n\r\n" + std::string(body);
}

// Addresses are connected to directly; a name still goes through the
// resolver (and every address it gives is tried: localhost may be ::1
// first, where nothing listens here).
TEST(HttpGetTest, HostNameIsResolved) {
  CannedServer server(Reply(200, "OK", "ok"));
  HttpUrl url = server.Url();
  url.host = "localhost";
  absl::StatusOr<HttpResponse> r = HttpGet(url, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "ok");
  EXPECT_NE(server.request().find("Host: localhost:"), std::string::npos) << server.request();
}

TEST(HttpGetTest, ReturnsStatusAndBody) {
  CannedServer server(Reply(200, "OK", R"({"status":"ok"})"));
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"status":"ok"})");
}

TEST(HttpGetTest, SendsAGetForTheTarget) {
  CannedServer server(Reply(200, "OK", ""));
  ASSERT_TRUE(HttpGet(server.Url("/metrics"), {}).ok());
  EXPECT_EQ(server.request().rfind("GET /metrics HTTP/1.1\r\n", 0), 0u)
      << server.request();
}

TEST(HttpGetTest, A503IsAResponseNotAnError) {
  CannedServer server(
      Reply(503, "Service Unavailable",
            R"({"status":"unavailable","reasons":["status_stale"]})"));
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 503);
}

TEST(HttpGetTest, RedirectIsRefused) {
  CannedServer server(
      "HTTP/1.1 302 Found\r\nLocation: http://example.com/\r\n"
      "Content-Length: 0\r\n\r\n");
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.status()), reason::kRedirectRefused);
}

TEST(HttpGetTest, BodyOverTheCapIsRefused) {
  CannedServer server(Reply(200, "OK", std::string(5000, 'x')));
  HttpGetOptions options;
  options.max_body_bytes = 4096;
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReasonOf(r.status()), reason::kInputTooLarge);
}

TEST(HttpGetTest, SlowServerHitsTheTotalTimeout) {
  CannedServer server(Reply(200, "OK", "late"),
                      std::chrono::milliseconds(700));
  HttpGetOptions options;
  options.total_timeout = std::chrono::milliseconds(150);
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(r.status()), reason::kTimeout);
}

TEST(HttpGetTest, ClosedPortIsUnavailableAndNamesTheUrl) {
  uint16_t port;
  {
    CannedServer server(Reply(200, "OK", ""));
    port = server.Url().port;
    ASSERT_TRUE(HttpGet(server.Url(), {}).ok());
  }
  absl::StatusOr<HttpResponse> r =
      HttpGet(HttpUrl{"127.0.0.1", port, "/live"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(r.status()), reason::kHttpError);
  EXPECT_NE(std::string(r.status().message()).find("/live"), std::string::npos);
}

TEST(HttpGetTest, GarbageReplyIsAnError) {
  CannedServer server("SSH-2.0-OpenSSH\r\n\r\n");
  absl::StatusOr<HttpResponse> r = HttpGet(server.Url(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.status()), reason::kHttpError);
}

// Three reads at once answer in the order asked, each as HttpGet would:
// a slow listener times out alone, and the others are not held up.
TEST(HttpGetAllTest, AnswersInOrderAndASlowListenerFailsAlone) {
  CannedServer metrics(Reply(200, "OK", "openbao_kms_up 1\n"));
  CannedServer ready(Reply(503, "Service Unavailable", "{\"ready\":false}"),
                     std::chrono::milliseconds(700));
  CannedServer live(Reply(200, "OK", "ok"));
  HttpGetOptions options;
  options.total_timeout = std::chrono::milliseconds(300);
  std::vector<absl::StatusOr<HttpResponse>> r = HttpGetAll(
      {metrics.Url("/metrics"), ready.Url("/ready"), live.Url("/live")}, options);
  ASSERT_EQ(r.size(), 3u);
  ASSERT_TRUE(r[0].ok()) << r[0].status();
  EXPECT_EQ(r[0]->body, "openbao_kms_up 1\n");
  ASSERT_FALSE(r[1].ok());
  EXPECT_EQ(ReasonOf(r[1].status()), reason::kTimeout);
  EXPECT_NE(std::string(r[1].status().message()).find("/ready"), std::string::npos);
  ASSERT_TRUE(r[2].ok()) << r[2].status();
  EXPECT_EQ(r[2]->status, 200);
  EXPECT_EQ(r[2]->body, "ok");
  EXPECT_NE(metrics.request().find("GET /metrics HTTP/1.1"), std::string::npos);
  EXPECT_NE(live.request().find("GET /live HTTP/1.1"), std::string::npos);
}

TEST(HttpGetAllTest, HttpsIsRefusedWithoutARequestAndTheRestStillRead) {
  CannedServer live(Reply(200, "OK", "ok"));
  HttpUrl tls{"127.0.0.1", live.Url().port, "/ready", true};
  std::vector<absl::StatusOr<HttpResponse>> r = HttpGetAll({tls, live.Url("/live")}, {});
  ASSERT_EQ(r.size(), 2u);
  ASSERT_FALSE(r[0].ok());
  EXPECT_EQ(ReasonOf(r[0].status()), reason::kInvalidConfig);
  EXPECT_NE(std::string(r[0].status().message()).find("https://127.0.0.1"),
            std::string::npos);
  ASSERT_TRUE(r[1].ok()) << r[1].status();
  EXPECT_EQ(r[1]->body, "ok");
  EXPECT_TRUE(HttpGetAll({}, {}).empty());
}

TEST(HttpUrlTest, ParsesHostPortAndTarget) {
  absl::StatusOr<HttpUrl> u = ParseHttpUrl("http://127.0.0.1:8081/metrics");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 8081);
  EXPECT_EQ(u->target, "/metrics");
  absl::StatusOr<HttpUrl> v6 = ParseHttpUrl("http://[::1]:8082/ready");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "http://[::1]:8082/ready");
  absl::StatusOr<HttpUrl> bare = ParseHttpUrl("http://localhost");
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->port, 80);
  EXPECT_EQ(bare->target, "/");
}

TEST(HttpUrlTest, RejectsOtherSchemesAndBadPorts) {
  for (const char* bad :
       {"https://127.0.0.1/ready", "127.0.0.1:8082/ready", "http://:8082/ready",
        "http://host:0/x", "http://host:70000/x", "http://host:8a/x",
        "http://[::1/x"}) {
    absl::StatusOr<HttpUrl> u = ParseHttpUrl(bad);
    EXPECT_FALSE(u.ok()) << bad;
    EXPECT_EQ(ReasonOf(u.status()), reason::kInvalidConfig) << bad;
    EXPECT_NE(std::string(u.status().message()).find(bad), std::string::npos);
  }
}

TEST(HttpUrlTest, HttpsDefaultsToPort443AndKeepsItsScheme) {
  absl::StatusOr<HttpUrl> u = ParseHttpOrHttpsUrl("https://bao.example/v1/sys/health");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->ToString(), "https://bao.example:443/v1/sys/health");
  absl::StatusOr<HttpUrl> v6 = ParseHttpOrHttpsUrl("https://[::1]:8200");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->port, 8200);
  absl::StatusOr<HttpUrl> plain = ParseHttpOrHttpsUrl("http://bao:8200/x");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->tls);
  for (const char* bad : {"ftp://bao/x", "https://:8200/x", "https://bao:0/x"}) {
    absl::StatusOr<HttpUrl> b = ParseHttpOrHttpsUrl(bad);
    EXPECT_EQ(ReasonOf(b.status()), reason::kInvalidConfig) << bad;
    EXPECT_NE(std::string(b.status().message()).find(bad), std::string::npos) << bad;
  }
}

// An empty port is the scheme's default (RFC 3986 §3.2.3). Found in
// review: the fetch's own parser read "https://host:/x" as port 80; it
// uses this one now.
TEST(HttpUrlTest, AnEmptyPortIsTheSchemesDefault) {
  absl::StatusOr<HttpUrl> tls = ParseHttpOrHttpsUrl("https://releases.example:/x");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->tls);
  EXPECT_EQ(tls->port, 443);
  EXPECT_EQ(HostHeaderOf(*tls), "releases.example");
  absl::StatusOr<HttpUrl> plain = ParseHttpOrHttpsUrl("http://releases.example:/x");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->port, 80);
  absl::StatusOr<HttpUrl> v6 = ParseHttpOrHttpsUrl("https://[::1]:/x");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->port, 443);
}

// Found in review: a download from 127.0.0.1:8080 was sent with "Host:
// 127.0.0.1" (a server or proxy routing by name and port answers for
// another site), and one from [::1]:8080 with "Host: ::1", which no server
// reads as a host. RFC 9110 section 7.2: the Host header is the URI's
// authority, the port left out only when it is the scheme's default.
TEST(HttpUrlTest, TheHostHeaderBracketsIPv6AndNamesOnlyANonDefaultPort) {
  struct Case {
    const char* url;
    const char* host;
  };
  for (const Case& c : std::vector<Case>{
           {"http://releases.example/x", "releases.example"},
           {"http://releases.example:80/x", "releases.example"},
           {"http://releases.example:8080/x", "releases.example:8080"},
           {"http://127.0.0.1:443/x", "127.0.0.1:443"},
           {"https://releases.example/x", "releases.example"},
           {"https://releases.example:443/x", "releases.example"},
           {"https://releases.example:80/x", "releases.example:80"},
           {"http://[::1]:8080/x", "[::1]:8080"},
           {"https://[::1]:8443/x", "[::1]:8443"},
           {"https://[2001:db8::1]/x", "[2001:db8::1]"},
       }) {
    absl::StatusOr<HttpUrl> u = ParseHttpOrHttpsUrl(c.url);
    ASSERT_TRUE(u.ok()) << c.url << ": " << u.status();
    EXPECT_EQ(HostHeaderOf(*u), c.host) << c.url;
  }
}

}  // namespace
}  // namespace kmsfleet
