#include "kmsfleet/core/provider_config.h"

#include <yaml-cpp/yaml.h>

#include <utility>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

absl::Status ConfigError(std::string_view file, int line, std::string_view key,
                         std::string_view problem) {
  return MakeFileError(reason::kInvalidConfig, file, line, key, problem);
}

// Reads the string at `section.field` into `out`; absent leaves it empty.
absl::Status ReadString(const YAML::Node& root, std::string_view file,
                        const char* section, const char* field, std::string& out) {
  std::string key = std::string(section) + "." + field;
  YAML::Node s = root[section];
  if (!s || s.IsNull()) return absl::OkStatus();
  if (!s.IsMap()) return ConfigError(file, s.Mark().line + 1, section, "must be a mapping");
  YAML::Node v = s[field];
  if (!v || v.IsNull()) return absl::OkStatus();
  if (!v.IsScalar()) return ConfigError(file, v.Mark().line + 1, key, "must be a string");
  out = v.Scalar();
  return absl::OkStatus();
}

absl::Status CheckAbsolute(const YAML::Node& root, std::string_view file,
                           const char* section, const char* field,
                           const std::string& value) {
  if (value.empty() || value.front() == '/') return absl::OkStatus();
  return ConfigError(file, root[section][field].Mark().line + 1,
                     std::string(section) + "." + field,
                     "must be an absolute path, got \"" + value + "\"");
}

absl::Status ReadFacts(const YAML::Node& root, std::string_view file,
                       ProviderConfigFacts& f) {
  const std::vector<std::tuple<const char*, const char*, std::string*>> fields = {
      {"state", "path", &f.state_path},
      {"openbao", "address", &f.openbao_address},
      {"openbao", "caCertFile", &f.openbao_ca_cert_file},
      {"openbao", "tlsServerName", &f.openbao_tls_server_name},
      {"server", "socketPath", &f.socket_path},
      {"server", "metricsAddress", &f.metrics_address},
      {"server", "healthAddress", &f.health_address}};
  for (const auto& [section, field, out] : fields) {
    KMSFLEET_RETURN_IF_ERROR(ReadString(root, file, section, field, *out));
  }
  KMSFLEET_RETURN_IF_ERROR(CheckAbsolute(root, file, "state", "path", f.state_path));
  KMSFLEET_RETURN_IF_ERROR(
      CheckAbsolute(root, file, "openbao", "caCertFile", f.openbao_ca_cert_file));
  const std::string& a = f.openbao_address;
  if (!a.empty() && a.rfind("https://", 0) != 0 && a.rfind("http://", 0) != 0) {
    return ConfigError(file, root["openbao"]["address"].Mark().line + 1,
                       "openbao.address", "must be an http(s):// URL, got \"" + a + "\"");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ProviderConfigFacts> ParseProviderConfig(std::string_view text,
                                                        std::string_view file_name) {
  if (text.size() > kMaxProviderConfigBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     "provider config " + std::string(file_name) + " is larger than " +
                         std::to_string(kMaxProviderConfigBytes) + " bytes",
                     {{"file", std::string(file_name)}});
  }
  ProviderConfigFacts facts;
  // yaml-cpp reports errors by exception; they stop here.
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsMap()) {
      return ConfigError(file_name, root.Mark().line + 1, "(file)", "must be a mapping");
    }
    KMSFLEET_RETURN_IF_ERROR(ReadFacts(root, file_name, facts));
  } catch (const YAML::Exception& e) {
    return ConfigError(file_name, e.mark.line + 1, "(file)", "invalid YAML: " + e.msg);
  }
  return facts;
}

}  // namespace kmsfleet
