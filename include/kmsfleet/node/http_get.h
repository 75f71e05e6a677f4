// A bounded HTTP/1.1 GET for the provider's node-local endpoints
// (reference §3): /metrics, /ready and /live on loopback, plain HTTP; and,
// over https with the server verified, for OpenBao's /v1/sys/health.
//
// Each call opens one connection, sends one request and reads one response
// within a connect timeout and a total timeout, and refuses bodies over a
// cap. Redirects are never followed: the provider does not send them, so one
// means the address points somewhere unexpected.
// Thread-safe: each call uses its own I/O context.
#ifndef KMSFLEET_NODE_HTTP_GET_H_
#define KMSFLEET_NODE_HTTP_GET_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

struct HttpUrl {
  std::string host;  // a name or an IPv4/IPv6 literal (without brackets)
  uint16_t port = 80;
  std::string target = "/";  // path and query, always starting with '/'
  bool tls = false;          // https (only from ParseHttpOrHttpsUrl)

  std::string ToString() const;
};

// The Host header for `url` (RFC 9110 section 7.2, the URI's authority):
// an IPv6 literal in brackets, since its colons would otherwise read as a
// port; ":port" unless the port is the scheme's default (80, or 443 when
// `tls`), where a virtual host or a proxy would route by the wrong name.
std::string HostHeaderOf(const HttpUrl& url);

// Parses "http://host:port/path". Returns InvalidArgument (INVALID_CONFIG)
// naming `url` for any other scheme, a missing host, or a bad port.
absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url);

// Parses "http://..." like ParseHttpUrl, or "https://host[:port]/path"
// (port 443 by default) with `tls` set. Errors as ParseHttpUrl.
absl::StatusOr<HttpUrl> ParseHttpOrHttpsUrl(std::string_view url);

struct HttpGetOptions {
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds total_timeout{5000};
  size_t max_body_bytes = 4 << 20;
  // For https: the PEM bundle the server's certificate must chain to (""
  // means the system's trust store), and the name it must carry, also sent
  // as SNI ("" means the URL's host).
  std::string ca_file;
  std::string tls_server_name;
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

// GETs `url`. Returns the response for any 1xx/2xx/4xx/5xx status (a 503
// from /ready carries its reasons in the body). Errors:
//   Unavailable, HTTP_ERROR: resolve, connect, TLS handshake or
//     certificate verification, read or protocol failure;
//   InvalidArgument, INVALID_CONFIG: https and `ca_file` cannot be loaded;
//   DeadlineExceeded, TIMEOUT: a timeout passed;
//   ResourceExhausted, INPUT_TOO_LARGE: the body exceeds max_body_bytes;
//   FailedPrecondition, REDIRECT_REFUSED: a 3xx status.
absl::StatusOr<HttpResponse> HttpGet(const HttpUrl& url,
                                     const HttpGetOptions& options);

// GETs every plain-http URL of `urls` at once, on the calling thread, each
// within `options` as HttpGet; answers in the order of `urls`, each as
// HttpGet would. An https URL is answered InvalidArgument (INVALID_CONFIG)
// and not requested. The provider's three endpoints cost one I/O context
// and no thread this way, where three HttpGet calls in parallel cost three
// of each: an observation runs on every coordinator round.
std::vector<absl::StatusOr<HttpResponse>> HttpGetAll(const std::vector<HttpUrl>& urls,
                                                     const HttpGetOptions& options);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_HTTP_GET_H_
