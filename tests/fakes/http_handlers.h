// What the fake's two HTTP listeners answer (reference §3): the health
// listener serves only /live and /ready, the metrics listener only /metrics,
// GET/HEAD only. Transport-free so tests can call them directly.
// Thread-safe: LiveState is.
#ifndef KMSFLEET_TESTS_FAKES_HTTP_HANDLERS_H_
#define KMSFLEET_TESTS_FAKES_HTTP_HANDLERS_H_

#include <string>
#include <string_view>
#include <vector>

#include "live_state.h"

namespace kmsfleet::fake {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string allow;  // the Allow header on 405
};

HttpReply HandleHealthRequest(std::string_view method, std::string_view target,
                              LiveState& state);
HttpReply HandleMetricsRequest(std::string_view method, std::string_view target,
                               LiveState& state);

// The /ready reasons for `scenario`: empty when ready. Exposed for tests.
std::vector<std::string> ReadyReasons(const Scenario& scenario);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_HTTP_HANDLERS_H_
