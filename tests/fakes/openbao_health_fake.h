// What the fake OpenBao answers on GET /v1/sys/health: the status codes and
// JSON bodies OpenBao documents for that endpoint's defaults, one per state.
// The tiny `fake-openbao-health` binary serves it for end-to-end tests and
// the demo; the prober's tests call it in-process.
// Thread-safe: free functions.
#ifndef KMSFLEET_TESTS_FAKES_OPENBAO_HEALTH_FAKE_H_
#define KMSFLEET_TESTS_FAKES_OPENBAO_HEALTH_FAKE_H_

#include <string>
#include <string_view>

#include "http_handlers.h"

namespace kmsfleet::fake {

// `state` is one of:
//   active         200, initialized, unsealed, not standby
//   standby        429, a standby node of an HA cluster
//   sealed         503
//   uninitialized  501
//   garbage        200 with a body that is not JSON
//   oversized      200 with a JSON body over 64 KiB
// (surrounding whitespace ignored). Any other state answers 500 naming it.
// Paths other than /v1/sys/health answer 404; methods other than GET/HEAD
// 405.
HttpReply HandleOpenBaoHealth(std::string_view method, std::string_view target,
                              std::string_view state);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_OPENBAO_HEALTH_FAKE_H_
