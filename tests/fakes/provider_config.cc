#include "provider_config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet::fake {
namespace {

// Top-level sections of the real schema; anything else is an unknown field,
// as the real strict decoder reports it.
const std::set<std::string>& KnownSections() {
  static const std::set<std::string> sections = {
      "configVersion", "server", "openbao", "auth", "transit", "bootstrap",
      "status", "state", "rotation", "logging", "performance"};
  return sections;
}

// Missing sections are fine, but yaml-cpp throws when indexing into a
// missing node, so every step goes through Child().
YAML::Node Child(const YAML::Node& node, const char* key) {
  if (!node || !node.IsMap()) return YAML::Node();
  return node[key];
}

std::string Text(const YAML::Node& node, const std::string& fallback) {
  if (!node || node.IsNull()) return fallback;
  return node.as<std::string>();
}

const char* FirstEnv(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    if (const char* value = std::getenv(name); value && *value) return value;
  }
  return nullptr;
}

void ApplyAddressOverrides(const AddressOverrides& flags, ProviderConfig& config) {
  if (const char* env = FirstEnv({"BAO_KMS_PROVIDER_SERVER_METRICS_ADDRESS",
                                  "BAO_KMS_PROVIDER_SERVER_METRICSADDRESS"})) {
    config.metrics_address = env;
  }
  if (const char* env = FirstEnv({"BAO_KMS_PROVIDER_SERVER_HEALTH_ADDRESS",
                                  "BAO_KMS_PROVIDER_SERVER_HEALTHADDRESS"})) {
    config.health_address = env;
  }
  if (flags.metrics_address) config.metrics_address = *flags.metrics_address;
  if (flags.health_address) config.health_address = *flags.health_address;
}

void ReadSections(const YAML::Node& root, ProviderConfig& config) {
  config.config_version = Text(Child(root, "configVersion"), "");
  const YAML::Node server = Child(root, "server");
  config.socket_path = Text(Child(server, "socketPath"), config.socket_path);
  config.socket_mode = Text(Child(server, "socketMode"), config.socket_mode);
  config.metrics_address = Text(Child(server, "metricsAddress"), config.metrics_address);
  config.health_address = Text(Child(server, "healthAddress"), config.health_address);
  config.auth_method = Text(Child(Child(root, "auth"), "method"), config.auth_method);
  const YAML::Node transit = Child(root, "transit");
  const YAML::Node scope = Child(transit, "keyIdScope");
  config.provider_name = Text(Child(scope, "providerName"), "");
  config.cluster_id = Text(Child(scope, "clusterId"), "");
  config.transit_mount_id = Text(Child(scope, "transitMountId"), "");
  config.key_lineage_id = Text(Child(scope, "keyLineageId"), "");
  config.key_name = Text(Child(transit, "keyName"), "");
  config.mount_path = Text(Child(transit, "mountPath"), config.mount_path);
  const YAML::Node openbao = Child(root, "openbao");
  config.instance_id = Text(Child(openbao, "instanceId"), "");
  config.openbao_namespace = Text(Child(openbao, "namespace"), "");
  config.state_path = Text(Child(Child(root, "state"), "path"), "");
  config.bootstrap_grace =
      Text(Child(Child(root, "bootstrap"), "graceTimeout"), config.bootstrap_grace);
}

absl::Status Validate(const ProviderConfig& config) {
  const std::string where = "config " + config.path + ": ";
  if (config.config_version != "v1alpha1") {
    return absl::InvalidArgumentError(where + "configVersion must be v1alpha1, got \"" +
                                      config.config_version + "\"");
  }
  if (config.socket_path.empty() || config.socket_path.front() != '/') {
    return absl::InvalidArgumentError(where + "server.socketPath must be an absolute path");
  }
  std::string host;
  int port = 0;
  for (const auto& [name, value] : {std::pair{"server.metricsAddress", config.metrics_address},
                                    std::pair{"server.healthAddress", config.health_address}}) {
    if (!value.empty() && !SplitHostPort(value, host, port)) {
      return absl::InvalidArgumentError(where + name + " \"" + value +
                                        "\" is not host:port");
    }
  }
  // Newer validation rejects identical fixed endpoints (reference §3).
  if (!config.metrics_address.empty() && config.metrics_address == config.health_address &&
      SplitHostPort(config.metrics_address, host, port) && port != 0) {
    return absl::InvalidArgumentError(where + "server.metricsAddress and "
                                      "server.healthAddress must differ");
  }
  return absl::OkStatus();
}

}  // namespace

std::string ProviderConfig::IdentityFingerprint() const {
  for (const std::string* value : {&provider_name, &cluster_id, &instance_id,
                                   &transit_mount_id, &key_lineage_id}) {
    if (value->empty()) return "";
  }
  std::string input = "fake-bao-kms-provider/identity/v1";
  for (const std::string* value : {&provider_name, &cluster_id, &instance_id,
                                   &openbao_namespace, &transit_mount_id,
                                   &key_lineage_id, &mount_path, &key_name}) {
    input += '\0';
    input += *value;
  }
  return "cfg1." + kmsfleet::KeyIdHash(input);
}

std::string ResolveConfigPath(const std::optional<std::string>& flag_value) {
  if (flag_value) return *flag_value;
  if (const char* env = FirstEnv({"BAO_KMS_PROVIDER_CONFIG",
                                  "BAO_KMS_PROVIDER_CONFIG_PATH"})) {
    return env;
  }
  return "";
}

bool SplitHostPort(const std::string& address, std::string& host, int& port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string digits = address.substr(colon + 1);
  if (digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  port = std::stoi(digits);
  return port <= 65535;
}

absl::StatusOr<ProviderConfig> LoadProviderConfig(const std::string& path,
                                                  const AddressOverrides& flags) {
  if (path.empty()) {
    return absl::NotFoundError("load config: no configuration file: set --config "
                               "or BAO_KMS_PROVIDER_CONFIG");
  }
  std::ifstream file(path);
  if (!file) {
    return absl::NotFoundError("load config: open " + path + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << file.rdbuf();
  ProviderConfig config;
  config.path = path;
  try {
    YAML::Node root = YAML::Load(text.str());
    if (!root.IsMap()) {
      return absl::InvalidArgumentError("load config " + path + ": expected a YAML mapping");
    }
    for (const auto& item : root) {
      std::string key = item.first.as<std::string>();
      if (KnownSections().count(key) == 0) {
        return absl::InvalidArgumentError("load config " + path + ": unknown field \"" +
                                          key + "\"");
      }
    }
    ReadSections(root, config);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("load config " + path + ": yaml: " + e.what());
  }
  ApplyAddressOverrides(flags, config);
  if (absl::Status status = Validate(config); !status.ok()) return status;
  return config;
}

}  // namespace kmsfleet::fake
