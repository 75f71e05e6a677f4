#include "kmsfleet/node/listener_check.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cerrno>

namespace kmsfleet {
namespace {

std::optional<bool> Outcome(int error) {
  if (error == 0) return true;
  if (error == ECONNREFUSED) return false;
  return std::nullopt;
}

}  // namespace

std::optional<bool> ListenerAccepts(const HttpUrl& url) {
  // An IP literal only, as HttpGet connects to one: never a resolver here.
  boost::system::error_code not_literal;
  const boost::asio::ip::address ip = boost::asio::ip::make_address(url.host, not_literal);
  if (not_literal) return std::nullopt;
  const boost::asio::ip::tcp::endpoint endpoint(ip, url.port);
  const int fd =
      ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<bool> accepts;
  if (::connect(fd, endpoint.data(), endpoint.size()) == 0) {
    accepts = true;
  } else if (errno != EINPROGRESS) {
    accepts = Outcome(errno);
  } else {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t error_len = sizeof(error);
    if (::poll(&p, 1, 1) == 1 &&
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) == 0) {
      accepts = Outcome(error);
    }
  }
  ::close(fd);
  return accepts;
}

}  // namespace kmsfleet
