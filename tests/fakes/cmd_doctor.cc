// `doctor` and `verify-key` (reference §2.3, §2.4). Nothing is probed for
// real: each check passes unless the scenario fails or warns it, and a
// failed prerequisite skips what depends on it, as upstream does.
#include <iostream>
#include <chrono>
#include <set>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "check_catalog.h"
#include "commands.h"
#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet::fake {
namespace {

// Checks whose failure stops the ones after them (login needs the JWT and
// TLS; Transit checks need metadata). config.validate also means exit 3.
const std::set<std::string_view>& Gates() {
  static const std::set<std::string_view> gates = {
      "config.validate", "jwt.local", "openbao.tls", "openbao.auth",
      "transit.metadata"};
  return gates;
}

// Looks for the kms v2 provider this config serves (reference §5.2 rules).
Check EncryptionConfigCheck(const std::string& path, const ProviderConfig& config) {
  Check check{"kubernetes.encryption_config", "EncryptionConfiguration",
              CheckStatus::kPass, ""};
  YAML::Node loaded;
  try {
    loaded = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return {check.id, check.title, CheckStatus::kFail,
            "read " + path + ": " + e.what()};
  }
  // Const access: yaml-cpp's non-const operator[] would insert keys.
  const YAML::Node& root = loaded;
  const std::string endpoint = "unix://" + config.socket_path;
  bool kms_found = false, identity_found = false;
  try {
    if (!root.IsMap() || root["kind"].as<std::string>("") != "EncryptionConfiguration" ||
        root["apiVersion"].as<std::string>("") != "apiserver.config.k8s.io/v1") {
      return {check.id, check.title, CheckStatus::kFail,
              "not an apiserver.config.k8s.io/v1 EncryptionConfiguration"};
    }
    for (const auto& resource : root["resources"]) {
      for (const auto& provider : resource["providers"]) {
        if (provider["identity"]) identity_found = true;
        const YAML::Node kms = provider["kms"];
        if (!kms) continue;
        std::string name = kms["name"].as<std::string>("");
        kms_found |= kms["apiVersion"].as<std::string>("") == "v2" &&
                     kms["endpoint"].as<std::string>("") == endpoint &&
                     (config.provider_name.empty() || name == config.provider_name);
      }
    }
  } catch (const YAML::Exception& e) {
    return {check.id, check.title, CheckStatus::kFail, "parse " + path + ": " + e.what()};
  }
  if (!kms_found) {
    check.status = CheckStatus::kFail;
    check.message = "no KMS v2 provider \"" + config.provider_name +
                    "\" with endpoint " + endpoint;
  } else if (identity_found) {
    check.status = CheckStatus::kWarn;
    check.message = "identity fallback remains configured";
  } else {
    check.message = "KMS v2 provider uses " + endpoint;
  }
  return check;
}

// The natural (scenario-free) result of one check.
Check NaturalCheck(const CheckSpec& spec, const CommandContext& ctx,
                   const ProviderConfig& config, const Scenario& scenario) {
  Check check{std::string(spec.id), std::string(spec.title), CheckStatus::kPass,
              std::string(spec.pass_message)};
  if (spec.id == "kubernetes.encryption_config") {
    if (!ctx.args.Has("encryption-config")) {
      return {check.id, check.title, CheckStatus::kSkip,
              "no --encryption-config path supplied"};
    }
    return EncryptionConfigCheck(ctx.args.Flag("encryption-config"), config);
  }
  if (spec.id == "key_id.deterministic") {
    check.message = "active key_id hash " + kmsfleet::KeyIdHash(scenario.LatestKeyId());
  } else if (spec.id == "registry.state" && scenario.ActiveKeyId().empty()) {
    check.status = CheckStatus::kWarn;
    check.message = "state file is absent; auto-bootstrap eligible=true: "
                    "latest_version=1 and no minimum version excludes it";
  } else if (spec.id == "registry.state") {
    check.message = "state file and replay checkpoint loaded";
  }
  return check;
}

// Runs the catalogue after config.load, applying scenario outcomes and
// prerequisite skips.
void RunChecks(const std::vector<CheckSpec>& specs, const CommandContext& ctx,
               const ProviderConfig& config, const Scenario& scenario, Report& report) {
  std::string blocked_by;
  for (const CheckSpec& spec : specs) {
    if (spec.id == "config.load") continue;
    const std::string id(spec.id);
    if (!blocked_by.empty()) {
      report.Add(id, spec.title, CheckStatus::kSkip, blocked_by + " failed");
      continue;
    }
    Check check = NaturalCheck(spec, ctx, config, scenario);
    if (id == "config.validate" && scenario.config_error) {
      check.status = CheckStatus::kFail;
      check.message = *scenario.config_error;
    } else if (scenario.doctor_fail.count(id) != 0) {
      check.status = CheckStatus::kFail;
      check.message = std::string(spec.fail_message);
    } else if (scenario.doctor_warn.count(id) != 0 && check.status == CheckStatus::kPass) {
      check.status = CheckStatus::kWarn;
      check.message = "warning injected by the fake's scenario";
    }
    if (check.status == CheckStatus::kFail && Gates().count(spec.id) != 0) {
      blocked_by = id;
    }
    report.checks.push_back(std::move(check));
  }
}

int RunDiagnostics(CommandContext& ctx, const std::string& name,
                   const std::vector<CheckSpec>& specs) {
  int exit_code = kExitOk;
  std::optional<OutputFormat> format = ctx.Output(&exit_code);
  if (!format) return exit_code;
  std::shared_ptr<const Scenario> scenario = ctx.scenario.Current();
  Report report{name, {}};
  std::optional<std::string> flag;
  if (ctx.args.Has("config")) flag = ctx.args.Flag("config");
  auto config = LoadProviderConfig(ResolveConfigPath(flag), {});
  if (!config.ok() || scenario->doctor_fail.count("config.load") != 0) {
    std::string why = config.ok() ? "injected config load failure"
                                  : std::string(config.status().message());
    report.Add("config.load", "Config load", CheckStatus::kFail, why);
    std::cout << RenderReport(report, *format);
    return ctx.Fail(kExitConfig, why);
  }
  report.Add("config.load", "Config load", CheckStatus::kPass,
             "loaded typed provider configuration");
  // Upstream's checks reach OpenBao over the network (login, Transit),
  // each under its own timeout: a slow OpenBao makes a slow doctor.
  if (scenario->doctor_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(scenario->doctor_delay_ms));
  }
  RunChecks(specs, ctx, *config, *scenario, report);
  std::cout << RenderReport(report, *format);
  for (const Check& check : report.checks) {
    if (check.id == "config.validate" && check.status == CheckStatus::kFail) {
      return ctx.Fail(kExitConfig, "config validation failed: " + check.message);
    }
  }
  if (report.HasFailures()) return ctx.Fail(kExitCheckFailed, name + " found failed checks");
  return kExitOk;
}

}  // namespace

int RunDoctor(CommandContext& ctx) {
  return RunDiagnostics(ctx, "doctor", DoctorChecks());
}

int RunVerifyKey(CommandContext& ctx) {
  return RunDiagnostics(ctx, "verify-key", VerifyKeyChecks());
}

}  // namespace kmsfleet::fake
