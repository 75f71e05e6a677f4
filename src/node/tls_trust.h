// The trust store of kmsfleetd's HTTPS clients (http_get.cc, http_fetch.cc):
// peers are verified against one CA file, or the system store.
// Thread-safe: configures the context it is given.
#ifndef KMSFLEET_NODE_TLS_TRUST_H_
#define KMSFLEET_NODE_TLS_TRUST_H_

#include <boost/asio/ssl/context.hpp>
#include <string>

#include "absl/status/status.h"

namespace kmsfleet {

// Makes `ctx` verify peers against `ca_file` (PEM), or the system's trust
// store when it is "". Errors: InvalidArgument INVALID_CONFIG naming the
// file that cannot be loaded.
absl::Status UseTrustStore(boost::asio::ssl::context& ctx, const std::string& ca_file);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_TLS_TRUST_H_
