#include "kmsfleet/node/http_fetch.h"

#include <fcntl.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>

#include "http_step_error.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/http_get.h"
#include "tls_trust.h"

namespace kmsfleet {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

constexpr size_t kMaxHeaderBytes = 16 << 10;
// What one read of a body may add to the file: Beast reads at most 64 KiB
// into its buffer at a time, and the buffer holds at most one read's worth
// beyond what the parser took.
constexpr uint64_t kReadSlice = uint64_t{128} << 10;

struct Target {
  bool tls = false;
  HttpUrl url;
};

// The shared parser: a fetch's own copy read "https://host:/x" (an empty
// port, which RFC 3986 gives the scheme's default) as port 80.
absl::StatusOr<Target> ParseFetchUrl(std::string_view url) {
  Target t;
  KMSFLEET_ASSIGN_OR_RETURN(t.url, ParseHttpOrHttpsUrl(url));
  t.tls = t.url.tls;
  return t;
}

// One GET, streamed into a file, over a plain or TLS stream.
template <typename Stream>
class Fetch {
 public:
  Fetch(asio::io_context& ioc, Stream& stream, const Target& target,
        const FetchOptions& options, std::string url)
      : ioc_(ioc), stream_(stream), target_(target), options_(options),
        url_(std::move(url)), resolver_(ioc) {
    parser_.header_limit(kMaxHeaderBytes);
    parser_.body_limit(options.max_bytes);
  }

  // `created`: whether `dest` was created here (and is the caller's to
  // remove on an error); false when it could not be, e.g. it existed.
  absl::Status Run(const std::string& dest, bool& created) {
    dest_ = dest;
    dest_dir_ = DirOf(dest);
    KMSFLEET_RETURN_IF_ERROR(CreateDest(dest, created));
    deadline_ = std::chrono::steady_clock::now() + options_.total_timeout;
    resolver_.async_resolve(
        target_.url.host, std::to_string(target_.url.port),
        [this](beast::error_code rec, tcp::resolver::results_type results) {
          if (rec) return Fail(rec, "resolve");
          OnResolved(results);
        });
    ioc_.run_until(deadline_ + std::chrono::milliseconds(100));
    parser_.get().body().close();
    if (!done_) return Failed(absl::StatusCode::kDeadlineExceeded, reason::kTimeout, "timed out");
    KMSFLEET_RETURN_IF_ERROR(error_);
    unsigned code = parser_.get().result_int();
    if (code / 100 == 3) {
      return Failed(absl::StatusCode::kFailedPrecondition, reason::kRedirectRefused,
                    "answered with redirect " + std::to_string(code));
    }
    if (code != 200) {
      return Failed(absl::StatusCode::kUnavailable, reason::kHttpError,
                    "answered with status " + std::to_string(code));
    }
    return absl::OkStatus();
  }

 private:
  // Creates `dest` as the other staged files are (upload_fetch.cc), not as
  // Beast's write_new would (0644, inherited by every child): 0600, since
  // an unverified release is nobody else's to read; O_CLOEXEC, so that a
  // process started meanwhile (systemctl, the provider's CLI) does not hold
  // it open; O_EXCL and O_NOFOLLOW, so that neither an existing file nor a
  // planted link is written through.
  absl::Status CreateDest(const std::string& dest, bool& created) {
    const int fd =
        ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return WithUrl(DiskWriteError("cannot create", dest, errno));
    created = true;
    beast::file file;
    file.native_handle(fd);  // owns it from here
    beast::error_code ec;
    parser_.get().body().reset(std::move(file), ec);
    if (ec) return WithUrl(DiskWriteError("cannot use", dest, ec.value()));
    return absl::OkStatus();
  }

  tcp::socket& Socket() { return beast::get_lowest_layer(stream_).socket(); }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void OnResolved(const tcp::resolver::results_type& results) {
    Lowest().expires_after(std::min<std::chrono::steady_clock::duration>(
        options_.connect_timeout, deadline_ - std::chrono::steady_clock::now()));
    Lowest().async_connect(results, [this](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return Fail(ec, "connect");
      Lowest().expires_at(deadline_);
      if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
        Send();
      } else {
        stream_.async_handshake(ssl::stream_base::client, [this](beast::error_code hec) {
          if (hec) return Fail(hec, "TLS handshake");
          Send();
        });
      }
    });
  }

  void Send() {
    request_ = {http::verb::get, target_.url.target, 11};
    request_.set(http::field::host, HostHeaderOf(target_.url));
    request_.set(http::field::user_agent, "kmsfleet");
    request_.set(http::field::connection, "close");
    http::async_write(stream_, request_, [this](beast::error_code ec, size_t) {
      if (ec) return Fail(ec, "write");
      if (options_.free_space_reserve_bytes > 0) WatchChunks();
      http::async_read_header(stream_, buffer_, parser_, [this](beast::error_code hec, size_t) {
        if (hec) return Fail(hec, "read");
        // Not a release: Run names the status; its body is not kept.
        if (parser_.get().result_int() != 200) return Finish(absl::OkStatus());
        // A body this disk cannot hold is refused before it is written (a
        // length over max_bytes already failed the header: body_limit).
        if (absl::Status room = RoomFor(parser_.content_length().value_or(0)); !room.ok()) {
          return Finish(std::move(room));
        }
        // A body that ends when the server closes declares no length:
        // room is checked before each read instead.
        if (options_.free_space_reserve_bytes > 0 && !parser_.content_length() &&
            !parser_.chunked()) {
          return ReadSlices();
        }
        ReadBody();
      });
    });
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, parser_, [this](beast::error_code rec, size_t) {
      if (!no_room_.ok()) return Finish(no_room_);
      // Servers that close without TLS close_notify after a complete
      // body are fine; a truncated body is still an error below.
      if (rec && !(rec == ssl::error::stream_truncated && parser_.is_done())) {
        return Fail(rec, "read");
      }
      Finish(absl::OkStatus());
    });
  }

  // Reads a body of no declared length read by read, each of which the
  // parser writes out (at most kReadSlice bytes), after checking its room.
  void ReadSlices() {
    if (parser_.is_done()) return Finish(absl::OkStatus());
    if (absl::Status room = RoomFor(kReadSlice); !room.ok()) return Finish(std::move(room));
    http::async_read_some(stream_, buffer_, parser_, [this](beast::error_code rec, size_t) {
      if (rec && !(rec == ssl::error::stream_truncated && parser_.is_done())) {
        return Fail(rec, "read");
      }
      ReadSlices();
    });
  }

  // A chunked body declares no length up front: each chunk must fit.
  void WatchChunks() {
    on_chunk_ = [this](uint64_t size, beast::string_view, beast::error_code& ec) {
      no_room_ = RoomFor(size);
      if (!no_room_.ok()) ec = asio::error::no_buffer_space;
    };
    parser_.on_chunk_header(on_chunk_);
  }

  // OK when `bytes` more of a 200 answer leave the reserve free (only a
  // release is kept; an error page is not judged by its size).
  absl::Status RoomFor(uint64_t bytes) const {
    if (options_.free_space_reserve_bytes == 0 || parser_.get().result_int() != 200) {
      return absl::OkStatus();
    }
    absl::Status room = CheckFreeSpace(dest_dir_, bytes, options_.free_space_reserve_bytes);
    if (room.ok()) return room;
    return MakeError(room.code(), reason::kArtifactIo, "GET " + url_ + ": " + std::string(room.message()),
                     {{"url", url_},
                      {"path", MetadataOf(room, "path")},
                      {"free_bytes", MetadataOf(room, "free_bytes")},
                      {"needed_bytes", MetadataOf(room, "needed_bytes")},
                      {"reserve_bytes", MetadataOf(room, "reserve_bytes")}});
  }

  // A read that failed writing the body to `dest` is this disk's failure,
  // not the server's: answered Unavailable, the plan would fetch the whole
  // release again for ever onto a full or read-only disk.
  void Fail(beast::error_code ec, std::string_view step) {
    if (ec.category() == boost::system::system_category() && IsFileWriteErrno(ec.value())) {
      return Finish(WithUrl(DiskWriteError("cannot write", dest_, ec.value())));
    }
    Finish(internal::HttpStepError(ec, step, url_, options_.max_bytes));
  }

  // Errors beast::file's write gives that no socket read does.
  static bool IsFileWriteErrno(int err) {
    return err == ENOSPC || err == EDQUOT || err == EFBIG || err == EROFS || err == EIO;
  }

  absl::Status WithUrl(const absl::Status& disk) const {
    return MakeError(disk.code(), reason::kArtifactIo,
                     "GET " + url_ + ": " + std::string(disk.message()),
                     {{"url", url_}, {"path", MetadataOf(disk, "path")}});
  }

  void Finish(absl::Status status) {
    error_ = std::move(status);
    done_ = true;
    beast::error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    ioc_.stop();
  }

  absl::Status Failed(absl::StatusCode code, std::string_view why,
                      std::string_view message) const {
    return MakeError(code, why, "GET " + url_ + ": " + std::string(message),
                     {{"url", url_}});
  }

  asio::io_context& ioc_;
  Stream& stream_;
  const Target& target_;
  const FetchOptions& options_;
  std::string url_;
  tcp::resolver resolver_;
  beast::flat_buffer buffer_;
  http::request<http::empty_body> request_;
  http::response_parser<http::file_body> parser_;
  // The parser keeps a reference to it: it lives as long as the parser.
  std::function<void(uint64_t, beast::string_view, beast::error_code&)> on_chunk_;
  absl::Status no_room_;
  std::string dest_;
  std::string dest_dir_;
  std::chrono::steady_clock::time_point deadline_;
  absl::Status error_;
  bool done_ = false;
};

absl::Status FetchTls(const Target& target, const std::string& dest,
                      const FetchOptions& options, std::string_view url, bool& created) {
  asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  if (absl::Status s = UseTrustStore(ctx, options.ca_file); !s.ok()) return s;
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  // SNI, and the certificate must name the host we asked for.
  SSL_set_tlsext_host_name(stream.native_handle(), target.url.host.c_str());
  stream.set_verify_callback(ssl::host_name_verification(target.url.host));
  Fetch<beast::ssl_stream<beast::tcp_stream>> fetch(ioc, stream, target, options,
                                                    std::string(url));
  return fetch.Run(dest, created);
}

}  // namespace

bool IsFetchUrl(std::string_view source) {
  return source.substr(0, 7) == "http://" || source.substr(0, 8) == "https://";
}

std::string UrlFileName(std::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  size_t scheme = url.find("://");
  std::string_view path = url.substr(scheme == std::string_view::npos ? 0 : scheme + 3);
  size_t first_slash = path.find('/');
  if (first_slash == std::string_view::npos) return "";
  path = path.substr(first_slash);
  return std::string(path.substr(path.rfind('/') + 1));
}

absl::Status FetchToFile(std::string_view url, const std::string& dest,
                         const FetchOptions& options) {
  KMSFLEET_ASSIGN_OR_RETURN(Target target, ParseFetchUrl(url));
  absl::Status s;
  bool created = false;
  if (target.tls) {
    s = FetchTls(target, dest, options, url, created);
  } else {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    Fetch<beast::tcp_stream> fetch(ioc, stream, target, options, std::string(url));
    s = fetch.Run(dest, created);
  }
  if (!s.ok() && created) unlink(dest.c_str());
  return s;
}

}  // namespace kmsfleet
