// Minimal HTTP/1.1 listeners on Boost.Beast for /live, /ready and /metrics.
// All listeners share one io_context and one thread: the handlers are quick
// and the fake serves a handful of test clients, not production traffic.
// Thread-safe: Listen() before Start(); Stop() from any thread, once.
#ifndef KMSFLEET_TESTS_FAKES_HTTP_SERVER_H_
#define KMSFLEET_TESTS_FAKES_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "absl/status/statusor.h"
#include "http_handlers.h"

namespace kmsfleet::fake {

class HttpServer {
 public:
  using Handler = std::function<HttpReply(std::string_view method, std::string_view target)>;

  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens on `address` ("host:port", port 0 = ephemeral) and
  // returns the bound "host:port". Errors: kInvalidArgument for a malformed
  // address, kUnavailable when the bind fails (message like Go's
  // "listen tcp 127.0.0.1:8081: bind: address already in use").
  absl::StatusOr<std::string> Listen(const std::string& address, Handler handler);

  // Starts serving every bound listener on a background thread.
  void Start();
  // Closes the listeners and joins the thread; idempotent.
  void Stop();

 private:
  class Listener;
  boost::asio::io_context io_;
  std::vector<std::shared_ptr<Listener>> listeners_;
  std::thread thread_;
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_HTTP_SERVER_H_
