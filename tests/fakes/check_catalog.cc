#include "check_catalog.h"

namespace kmsfleet::fake {
namespace {

// Checks both reports share, before the report-specific tail.
std::vector<CheckSpec> CommonHead() {
  return {
      {"config.load", "Config load", "loaded typed provider configuration"},
      {"config.validate", "Config validation",
       "configuration and local filesystem checks passed",
       "socket parent directory must not be writable by other users"},
      {"socket.group", "Socket group", "socket group resolves locally",
       "socket group does not resolve locally"},
      {"jwt.local", "JWT file",
       "JWT file is private, claims match, remaining lifetime sufficient",
       "JWT remaining lifetime is below minRemainingTtl"},
  };
}

std::vector<CheckSpec> TransitChecks() {
  return {
      {"openbao.tls", "OpenBao TLS config", "CA bundle and TLS client config loaded",
       "load CA bundle: no certificates found"},
      {"openbao.auth", "OpenBao JWT login", "login succeeded",
       "login failed: auth_failed"},
      {"transit.capabilities", "Transit policy capabilities",
       "required capabilities present; no prohibited management capabilities",
       "missing required capability: update on transit encrypt path"},
      {"transit.metadata", "Transit metadata", "key metadata readable",
       "read transit key metadata: openbao_unavailable"},
      {"transit.profile", "Transit key profile",
       "key profile matches the supported profile",
       "error/cryptographic_safety: key is exportable"},
      {"transit.disable_upsert", "Transit disable_upsert",
       "mount has disable_upsert=true",
       "error/api_server_availability: disable_upsert is false"},
  };
}

}  // namespace

const std::vector<CheckSpec>& DoctorChecks() {
  static const std::vector<CheckSpec> checks = [] {
    std::vector<CheckSpec> out = CommonHead();
    out.push_back({"kubernetes.encryption_config", "EncryptionConfiguration", ""});
    for (const CheckSpec& spec : TransitChecks()) out.push_back(spec);
    out.push_back({"transit.probe", "Transit probe",
                   "non-secret encrypt/decrypt round trip succeeded",
                   "transit encrypt failed: openbao_unavailable"});
    out.push_back({"key_id.deterministic", "Key ID determinism", ""});
    out.push_back({"kms.status_encrypt", "Status/encrypt consistency",
                   "local diagnostic server returned matching Status and "
                   "Encrypt key IDs",
                   "Status and Encrypt returned different key IDs"});
    return out;
  }();
  return checks;
}

const std::vector<CheckSpec>& VerifyKeyChecks() {
  static const std::vector<CheckSpec> checks = [] {
    std::vector<CheckSpec> out = CommonHead();
    for (const CheckSpec& spec : TransitChecks()) out.push_back(spec);
    out.push_back({"registry.state", "Registry state", ""});
    out.push_back({"transit.version_restrictions", "Transit version restrictions",
                   "minimum versions keep every retained key_id decryptable",
                   "min_decryption_version excludes a retained key_id"});
    out.push_back({"key_id.deterministic", "Key ID determinism", ""});
    return out;
  }();
  return checks;
}

bool IsKnownCheckId(std::string_view id) {
  for (const auto* list : {&DoctorChecks(), &VerifyKeyChecks()}) {
    for (const CheckSpec& spec : *list) {
      if (spec.id == id) return true;
    }
  }
  return false;
}

}  // namespace kmsfleet::fake
