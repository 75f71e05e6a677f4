// The subset of /etc/openbao-kms/config.yaml the fake reads (reference §5.1).
// Like the real binary it rejects unknown top-level sections and a wrong
// configVersion; unlike it, nested keys it does not use are tolerated, so a
// test can copy a real sample. Address overrides follow the real precedence:
// file < BAO_KMS_PROVIDER_SERVER_*_ADDRESS env < --*-address flags.
// Thread-compatible: plain values.
#ifndef KMSFLEET_TESTS_FAKES_PROVIDER_CONFIG_H_
#define KMSFLEET_TESTS_FAKES_PROVIDER_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace kmsfleet::fake {

struct ProviderConfig {
  std::string path;
  std::string config_version;
  std::string socket_path = "/run/openbao-kms/kms.sock";
  std::string socket_mode = "0660";
  std::string metrics_address = "127.0.0.1:8081";  // "" disables
  std::string health_address = "127.0.0.1:8082";   // "" disables
  std::string auth_method = "jwt";
  std::string provider_name;
  std::string cluster_id;
  std::string transit_mount_id;
  std::string key_lineage_id;
  std::string key_name;
  std::string mount_path = "transit";
  std::string instance_id;
  std::string openbao_namespace;
  std::string state_path;
  std::string bootstrap_grace = "60s";

  // "cfg1." + 43 chars over the identity-bearing values, or "" unless all of
  // them are set (reference §2.8 prints the line only then).
  std::string IdentityFingerprint() const;
};

struct AddressOverrides {
  std::optional<std::string> metrics_address;  // from --metrics-address
  std::optional<std::string> health_address;   // from --health-address
};

// Resolves the config path: `flag_value`, else BAO_KMS_PROVIDER_CONFIG, else
// BAO_KMS_PROVIDER_CONFIG_PATH; "" if none.
std::string ResolveConfigPath(const std::optional<std::string>& flag_value);

// Loads and validates the file. Errors (all mean exit 3): kNotFound for a
// missing/unreadable file, kInvalidArgument for malformed YAML, unknown
// sections, a wrong configVersion or a malformed address.
absl::StatusOr<ProviderConfig> LoadProviderConfig(const std::string& path,
                                                  const AddressOverrides& flags);

// Splits "host:port" (port may be 0). Returns false when malformed.
bool SplitHostPort(const std::string& address, std::string& host, int& port);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_PROVIDER_CONFIG_H_
