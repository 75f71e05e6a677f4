#include "http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "provider_config.h"

namespace kmsfleet::fake {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// A client that connects and never finishes its request must not pin a
// session forever.
constexpr std::chrono::seconds kRequestTimeout{10};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Handler handler)
      : stream_(std::move(socket)), handler_(std::move(handler)) {}

  void Read() {
    request_ = {};
    stream_.expires_after(kRequestTimeout);
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!ec) self->Respond();
                     });
  }

 private:
  void Respond() {
    HttpReply reply = handler_(std::string_view(request_.method_string()),
                               std::string_view(request_.target()));
    auto response = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(reply.status), request_.version());
    response->set(http::field::content_type, reply.content_type);
    if (!reply.allow.empty()) response->set(http::field::allow, reply.allow);
    response->keep_alive(request_.keep_alive());
    if (request_.method() == http::verb::head) {
      response->content_length(reply.body.size());  // headers only
    } else {
      response->body() = std::move(reply.body);
      response->prepare_payload();
    }
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        if (ec || !response->keep_alive()) {
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
                          return;
                        }
                        self->Read();
                      });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request<http::string_body> request_;
  HttpServer::Handler handler_;
};

absl::StatusOr<tcp::endpoint> ResolveEndpoint(const std::string& address) {
  std::string host;
  int port = 0;
  if (!SplitHostPort(address, host, port)) {
    return absl::InvalidArgumentError("address \"" + address + "\" is not host:port");
  }
  if (host.empty()) host = "0.0.0.0";  // Go's ":8081" listens everywhere
  if (host == "localhost") host = "127.0.0.1";
  beast::error_code ec;
  asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) return absl::InvalidArgumentError("address \"" + address + "\": bad host");
  return tcp::endpoint(ip, static_cast<unsigned short>(port));
}

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  std::string host = endpoint.address().to_string();
  if (endpoint.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

class HttpServer::Listener : public std::enable_shared_from_this<Listener> {
 public:
  Listener(asio::io_context& io, Handler handler) : acceptor_(io), handler_(std::move(handler)) {}

  absl::Status Bind(const tcp::endpoint& endpoint, const std::string& address) {
    beast::error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError("listen tcp " + address + ": bind: " + ec.message());
    }
    return absl::OkStatus();
  }
  std::string LocalAddress() const { return FormatEndpoint(acceptor_.local_endpoint()); }

  void Accept() {
    acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), self->handler_)->Read();
      self->Accept();
    });
  }
  void Close() {
    beast::error_code ignored;  // closing an acceptor that failed to open is fine
    acceptor_.close(ignored);
  }

 private:
  tcp::acceptor acceptor_;
  Handler handler_;
};

HttpServer::HttpServer() = default;

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::string> HttpServer::Listen(const std::string& address, Handler handler) {
  absl::StatusOr<tcp::endpoint> endpoint = ResolveEndpoint(address);
  if (!endpoint.ok()) return endpoint.status();
  auto listener = std::make_shared<Listener>(io_, std::move(handler));
  if (absl::Status status = listener->Bind(*endpoint, address); !status.ok()) return status;
  listeners_.push_back(listener);
  return listener->LocalAddress();
}

void HttpServer::Start() {
  for (const auto& listener : listeners_) listener->Accept();
  thread_ = std::thread([this] { io_.run(); });
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  asio::post(io_, [this] {
    for (const auto& listener : listeners_) listener->Close();
    io_.stop();  // also abandons open keep-alive sessions
  });
  thread_.join();
}

}  // namespace kmsfleet::fake
