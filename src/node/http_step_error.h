// How both HTTP clients (http_get.cc, http_fetch.cc) name a failed
// resolve/connect/write/read step. Internal to src/node.
#ifndef KMSFLEET_SRC_NODE_HTTP_STEP_ERROR_H_
#define KMSFLEET_SRC_NODE_HTTP_STEP_ERROR_H_

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::internal {

// Errors name the URL: DeadlineExceeded/TIMEOUT for the stream's timer,
// ResourceExhausted/INPUT_TOO_LARGE when the body passed `max_body_bytes`,
// Unavailable/HTTP_ERROR for anything else.
inline absl::Status HttpStepError(boost::beast::error_code ec, std::string_view step,
                                  const std::string& url, size_t max_body_bytes) {
  auto failed = [&](absl::StatusCode code, std::string_view why, const std::string& what) {
    return MakeError(code, why, "GET " + url + ": " + what, {{"url", url}});
  };
  if (ec == boost::beast::error::timeout) {
    return failed(absl::StatusCode::kDeadlineExceeded, reason::kTimeout,
                  std::string(step) + " timed out");
  }
  if (ec == boost::beast::http::error::body_limit) {
    return failed(absl::StatusCode::kResourceExhausted, reason::kInputTooLarge,
                  "response body exceeds " + std::to_string(max_body_bytes) + " bytes");
  }
  return failed(absl::StatusCode::kUnavailable, reason::kHttpError,
                std::string(step) + " failed: " + ec.message());
}

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_NODE_HTTP_STEP_ERROR_H_
