// Downloads a release artifact over http:// or https:// into a new file
// (issue 4, "Stage"): bounded size, connect and total timeouts, TLS peer
// and host name verified against the system store or a configured CA file,
// redirects refused (a release URL that moves is a configuration error).
// Thread-safe: each call uses its own I/O context.
#ifndef KMSFLEET_NODE_HTTP_FETCH_H_
#define KMSFLEET_NODE_HTTP_FETCH_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace kmsfleet {

struct FetchOptions {
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds total_timeout{600000};
  size_t max_bytes = size_t{1} << 30;
  std::string ca_file;  // PEM bundle; "" means the system's trust store
  // When set, a body that would leave less than this free where `dest`
  // lies is refused: at the header for a declared Content-Length, at each
  // chunk for a chunked one, before each read for one that ends when the
  // server closes (ResourceExhausted ARTIFACT_IO, CheckFreeSpace).
  uint64_t free_space_reserve_bytes = 0;
};

// True for "http://..." and "https://..." sources.
bool IsFetchUrl(std::string_view source);

// The last path segment of `url` without query or fragment ("" if none).
std::string UrlFileName(std::string_view url);

// GETs `url` into `dest`, which must not exist, nor be a symlink (created
// 0600, O_EXCL, O_NOFOLLOW, close-on-exec). The Host header is
// HostHeaderOf(url). On any error the `dest` it created is removed. Errors
// name the URL:
//   InvalidArgument, INVALID_CONFIG: not an http(s) URL;
//   Unavailable, HTTP_ERROR: resolve/connect/TLS/read failure, or a status
//     other than 200 (named);
//   DeadlineExceeded, TIMEOUT; ResourceExhausted, INPUT_TOO_LARGE;
//   FailedPrecondition, REDIRECT_REFUSED; ResourceExhausted, ARTIFACT_IO:
//     no room for the body (free_space_reserve_bytes).
absl::Status FetchToFile(std::string_view url, const std::string& dest,
                         const FetchOptions& options);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_HTTP_FETCH_H_
