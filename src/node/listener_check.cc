#include "kmsfleet/node/listener_check.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kmsfleet {
namespace {

// The socket address of an IPv4 or IPv6 literal; false for anything else.
bool AddressOf(const HttpUrl& url, sockaddr_storage& out, socklen_t& len) {
  std::memset(&out, 0, sizeof(out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  if (inet_pton(AF_INET, url.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(url.port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  if (inet_pton(AF_INET6, url.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(url.port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

std::optional<bool> Outcome(int error) {
  if (error == 0) return true;
  if (error == ECONNREFUSED) return false;
  return std::nullopt;
}

}  // namespace

std::optional<bool> ListenerAccepts(const HttpUrl& url) {
  sockaddr_storage address;
  socklen_t len = 0;
  if (!AddressOf(url, address, len)) return std::nullopt;
  const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<bool> accepts;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), len) == 0) {
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
