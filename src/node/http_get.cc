#include "kmsfleet/node/http_get.h"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <memory>
#include <type_traits>

#include "http_step_error.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "tls_trust.h"

namespace kmsfleet {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

// Response headers are small for every endpoint we read; the cap keeps a
// misbehaving listener from making us buffer without bound.
constexpr size_t kMaxHeaderBytes = 16 << 10;

absl::Status Invalid(std::string_view url, std::string_view why) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   "invalid URL \"" + std::string(url) + "\": " +
                       std::string(why),
                   {{"url", std::string(url)}});
}

// Carries one request through resolve, connect, (TLS handshake,) write and
// read on an io_context over a plain or TLS stream, recording the first
// failure. Several operations can share one io_context: each counts itself
// out of `*pending` when it finishes, and the last one stops the context.
template <typename Stream>
class GetOperation {
 public:
  GetOperation(asio::io_context& ioc, Stream& stream, const HttpUrl& url,
               const HttpGetOptions& options, size_t* pending)
      : ioc_(ioc), stream_(stream), url_(url), options_(options), resolver_(ioc),
        pending_(pending) {
    parser_.header_limit(kMaxHeaderBytes);
    parser_.body_limit(options.max_body_bytes);
  }

  // Starts the request; the io_context carries it on. Returns its deadline.
  std::chrono::steady_clock::time_point Start() {
    deadline_ = std::chrono::steady_clock::now() + options_.total_timeout;
    beast::error_code not_literal;
    const asio::ip::address literal = asio::ip::make_address(url_.host, not_literal);
    if (!not_literal) {
      // An address needs no lookup, and asio runs each lookup on a thread
      // it starts for the purpose: the provider's endpoints are addresses.
      Connect(std::array<tcp::endpoint, 1>{tcp::endpoint(literal, url_.port)});
    } else {
      resolver_.async_resolve(
          url_.host, std::to_string(url_.port),
          [this](beast::error_code ec, tcp::resolver::results_type results) {
            if (ec) return Fail(ec, "resolve");
            Connect(results);
          });
    }
    return deadline_;
  }

  // The outcome, once the io_context has stopped running.
  absl::StatusOr<HttpResponse> Collect() {
    if (!done_) {
      return Failed(absl::StatusCode::kDeadlineExceeded, reason::kTimeout,
                    "timed out");
    }
    if (!error_.ok()) return error_;
    if (parser_.get().result_int() / 100 == 3) {
      return Failed(absl::StatusCode::kFailedPrecondition,
                    reason::kRedirectRefused,
                    "answered with redirect " +
                        std::to_string(parser_.get().result_int()) +
                        "; redirects are not followed");
    }
    HttpResponse response;
    response.status = static_cast<int>(parser_.get().result_int());
    response.body = std::move(parser_.get().body());
    return response;
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  template <typename Endpoints>
  void Connect(const Endpoints& endpoints) {
    Lowest().expires_after(std::min<std::chrono::steady_clock::duration>(
        options_.connect_timeout, deadline_ - std::chrono::steady_clock::now()));
    Lowest().async_connect(endpoints, [this](beast::error_code ec,
                                           const tcp::endpoint&) {
      if (ec) return Fail(ec, "connect");
      Lowest().expires_at(deadline_);
      if constexpr (kTls) {
        stream_.async_handshake(ssl::stream_base::client, [this](beast::error_code hec) {
          if (hec) return Fail(hec, "TLS handshake");
          Send();
        });
      } else {
        Send();
      }
    });
  }

  void Send() {
    request_ = {http::verb::get, url_.target, 11};
    request_.set(http::field::host, HostHeaderOf(url_));
    request_.set(http::field::user_agent, "kmsfleet");
    request_.set(http::field::connection, "close");
    http::async_write(stream_, request_, [this](beast::error_code ec, size_t) {
      if (ec) return Fail(ec, "write");
      http::async_read(stream_, buffer_, parser_, [this](beast::error_code rec, size_t) {
        // A TLS server may close without close_notify after a complete
        // body; a truncated body is still an error.
        if (rec && !(rec == ssl::error::stream_truncated && parser_.is_done())) {
          return Fail(rec, "read");
        }
        Finish(absl::OkStatus());
      });
    });
  }

  void Fail(beast::error_code ec, std::string_view step) {
    Finish(internal::HttpStepError(ec, step, url_.ToString(), options_.max_body_bytes));
  }

  void Finish(absl::Status status) {
    error_ = std::move(status);
    done_ = true;
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().expires_never();
    if (--*pending_ == 0) ioc_.stop();
  }

  absl::Status Failed(absl::StatusCode code, std::string_view why,
                      std::string_view message) const {
    return MakeError(code, why, "GET " + url_.ToString() + ": " +
                                    std::string(message),
                     {{"url", url_.ToString()}});
  }

  asio::io_context& ioc_;
  Stream& stream_;
  const HttpUrl& url_;
  const HttpGetOptions& options_;
  tcp::resolver resolver_;
  beast::flat_buffer buffer_;
  http::request<http::empty_body> request_;
  http::response_parser<http::string_body> parser_;
  std::chrono::steady_clock::time_point deadline_;
  size_t* pending_;
  absl::Status error_;
  bool done_ = false;
};

// Runs `ioc` until every started operation finished or the latest
// deadline passed (with a grace for the last handler to run).
void RunUntil(asio::io_context& ioc, std::chrono::steady_clock::time_point deadline) {
  ioc.run_until(deadline + std::chrono::milliseconds(100));
}

// GET over TLS: the peer must chain to `ca_file` (or the system store) and
// carry `tls_server_name` (or the URL's host).
absl::StatusOr<HttpResponse> HttpsGet(const HttpUrl& url, const HttpGetOptions& options) {
  asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  if (absl::Status s = UseTrustStore(ctx, options.ca_file); !s.ok()) return s;
  const std::string& name =
      options.tls_server_name.empty() ? url.host : options.tls_server_name;
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  SSL_set_tlsext_host_name(stream.native_handle(), name.c_str());
  stream.set_verify_callback(ssl::host_name_verification(name));
  size_t pending = 1;
  GetOperation<beast::ssl_stream<beast::tcp_stream>> operation(ioc, stream, url, options,
                                                               &pending);
  RunUntil(ioc, operation.Start());
  return operation.Collect();
}

// Parses `rest`, what follows the scheme of `url`: host, optional port
// (else `default_port`) and path.
absl::StatusOr<HttpUrl> ParseAuthorityAndPath(std::string_view url, std::string_view rest,
                                              uint16_t default_port) {
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  HttpUrl out;
  out.port = default_port;
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Invalid(url, "unclosed '['");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() == ':') port_text = after.substr(1);
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (out.host.empty()) return Invalid(url, "missing host");
  if (!port_text.empty()) {
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(),
                                     port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535) {
      return Invalid(url, "bad port \"" + std::string(port_text) + "\"");
    }
    out.port = static_cast<uint16_t>(port);
  }
  return out;
}

// `host` as a URI writes it: an IPv6 literal in brackets, since its colons
// would otherwise read as a port.
std::string Bracketed(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

}  // namespace

std::string HostHeaderOf(const HttpUrl& url) {
  std::string out = Bracketed(url.host);
  const uint16_t default_port = url.tls ? 443 : 80;
  if (url.port != default_port) out += ":" + std::to_string(url.port);
  return out;
}

std::string HttpUrl::ToString() const {
  return std::string(tls ? "https://" : "http://") + Bracketed(host) + ":" +
         std::to_string(port) + target;
}

absl::StatusOr<HttpUrl> ParseHttpUrl(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Invalid(url, "only http:// is supported for provider endpoints");
  }
  return ParseAuthorityAndPath(url, url.substr(kScheme.size()), 80);
}

absl::StatusOr<HttpUrl> ParseHttpOrHttpsUrl(std::string_view url) {
  constexpr std::string_view kTlsScheme = "https://";
  if (url.substr(0, kTlsScheme.size()) != kTlsScheme) {
    if (url.substr(0, 7) != "http://") return Invalid(url, "not an http:// or https:// URL");
    return ParseHttpUrl(url);
  }
  absl::StatusOr<HttpUrl> out =
      ParseAuthorityAndPath(url, url.substr(kTlsScheme.size()), 443);
  if (out.ok()) out->tls = true;
  return out;
}

absl::StatusOr<HttpResponse> HttpGet(const HttpUrl& url,
                                     const HttpGetOptions& options) {
  if (url.tls) return HttpsGet(url, options);
  asio::io_context ioc;
  beast::tcp_stream stream(ioc);
  size_t pending = 1;
  GetOperation<beast::tcp_stream> operation(ioc, stream, url, options, &pending);
  RunUntil(ioc, operation.Start());
  return operation.Collect();
}

std::vector<absl::StatusOr<HttpResponse>> HttpGetAll(const std::vector<HttpUrl>& urls,
                                                     const HttpGetOptions& options) {
  asio::io_context ioc;
  std::vector<std::unique_ptr<beast::tcp_stream>> streams;
  std::vector<std::unique_ptr<GetOperation<beast::tcp_stream>>> operations;
  size_t pending = 0;
  auto latest = std::chrono::steady_clock::now();
  for (const HttpUrl& url : urls) {
    if (url.tls) continue;  // answered below, without a request
    streams.push_back(std::make_unique<beast::tcp_stream>(ioc));
    operations.push_back(std::make_unique<GetOperation<beast::tcp_stream>>(
        ioc, *streams.back(), url, options, &pending));
    ++pending;
  }
  for (auto& operation : operations) latest = std::max(latest, operation->Start());
  if (!operations.empty()) RunUntil(ioc, latest);
  std::vector<absl::StatusOr<HttpResponse>> out;
  auto next = operations.begin();
  for (const HttpUrl& url : urls) {
    if (url.tls) {
      out.push_back(Invalid(url.ToString(), "HttpGetAll reads plain http:// URLs only"));
    } else {
      out.push_back((*next++)->Collect());
    }
  }
  return out;
}

}  // namespace kmsfleet
