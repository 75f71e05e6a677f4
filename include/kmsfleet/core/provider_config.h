// The few facts kmsfleet takes from the provider's own configuration
// (`/etc/openbao-kms/config.yaml`, reference §5.1): where its key registry
// lives, how to reach OpenBao, and its endpoints. kmsfleet never writes
// that file and never reads its credentials.
//
// The provider validates its file strictly against its own schema, which
// changes between releases; this reader is strict only about the fields it
// uses (type, and absolute paths), and ignores the rest, so that a newer
// schema does not stop the agent.
// Thread-safe: a free function over values.
#ifndef KMSFLEET_CORE_PROVIDER_CONFIG_H_
#define KMSFLEET_CORE_PROVIDER_CONFIG_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Real provider configs are a few KiB; this bounds a read of one.
inline constexpr size_t kMaxProviderConfigBytes = 256 * 1024;

struct ProviderConfigFacts {
  std::string state_path;          // state.path; "" when not set
  std::string openbao_address;     // openbao.address
  std::string openbao_ca_cert_file;   // openbao.caCertFile
  std::string openbao_tls_server_name;  // openbao.tlsServerName
  std::string socket_path;         // server.socketPath
  std::string metrics_address;     // server.metricsAddress
  std::string health_address;      // server.healthAddress
};

// Parses `text`, the content of the provider config file `file_name`.
// Errors: InvalidArgument with reason INVALID_CONFIG naming the file, line
// and key: invalid YAML, a root that is not a mapping, a used field that is
// not a string, `state.path` or `openbao.caCertFile` not absolute,
// `openbao.address` not http(s); INPUT_TOO_LARGE over
// kMaxProviderConfigBytes.
absl::StatusOr<ProviderConfigFacts> ParseProviderConfig(std::string_view text,
                                                        std::string_view file_name);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PROVIDER_CONFIG_H_
