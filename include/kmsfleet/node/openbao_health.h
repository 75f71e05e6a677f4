// Asks OpenBao whether it can serve the provider (issue 9, guard
// "OpenBao"; reference §8.1: defer an upgrade while OpenBao is sealed,
// uninitialised or failing over): GET <openbao.address>/v1/sys/health with
// the address, CA file and TLS server name from the provider's own config.
//
// This adapter only fetches; CheckOpenBaoHealth (core/fleet_guards.h)
// decides from what it fetched. OpenBao answers standby (429, 472, 473),
// uninitialised (501) and sealed (503) with a JSON body like a 200, so
// those are answers, not transport errors.
// Thread-safe: each call uses its own connection and I/O context.
#ifndef KMSFLEET_NODE_OPENBAO_HEALTH_H_
#define KMSFLEET_NODE_OPENBAO_HEALTH_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>

#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/provider_config.h"

namespace kmsfleet {

// Never fails; the outcome is in the returned probe:
//   address: provider.openbao_address as configured;
//   transport OK: `status` and `body` hold OpenBao's answer, whatever its
//     status code other than a redirect;
//   transport Unavailable, OPENBAO_UNREACHABLE (metadata `address`, and
//     `cause`: the underlying reason): no address configured, an address
//     that is not http(s), a CA file that cannot be loaded, no answer within
//     `timeout` (connect, TLS verification, read), or a redirect;
//   transport ResourceExhausted, INPUT_TOO_LARGE: a body over
//     kMaxOpenBaoHealthBytes (CheckOpenBaoHealth calls it malformed).
// https addresses are verified against provider.openbao_ca_cert_file (the
// system's trust store when "") and must carry
// provider.openbao_tls_server_name (the address's host when "").
OpenBaoProbe ProbeOpenBaoHealth(const ProviderConfigFacts& provider,
                                std::chrono::milliseconds timeout);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_OPENBAO_HEALTH_H_
