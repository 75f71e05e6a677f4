#include "scenario.h"

#include <fstream>
#include <functional>
#include <sstream>

#include <boost/json.hpp>
#include <yaml-cpp/yaml.h>

#include "check_catalog.h"
#include "event_log.h"
#include "key_material.h"

namespace kmsfleet::fake {
namespace {

using Setter = std::function<void(const YAML::Node&, Scenario&)>;

// Thrown inside setters for a value that has the right YAML type but a bad
// meaning; caught in ApplyKey and turned into a status naming the key.
struct BadValue {
  std::string why;
};

const std::set<std::string>& RotationPlanKeys() {
  // Reference §2.6 table: every key rotation-plan / verify-rotation emits.
  static const std::set<std::string> keys = {
      "name", "transitMetadataStatus", "transitMetadataError", "stateLoaded",
      "stateGeneration", "stateHash", "stateCheckpointLoaded",
      "stateCheckpointStatus", "stateCheckpointGeneration",
      "stateCheckpointHash", "stateBootstrapEligible", "stateBootstrapReason",
      "rotationState", "activeKeyIdHash", "activeTransitVersion",
      "latestTransitVersion", "pendingKeyIdHash", "pendingTransitVersion",
      "pendingStableObservationCount", "pendingPromotesAfter", "confidence",
      "limitations"};
  return keys;
}

std::vector<std::string> StringList(const YAML::Node& node) {
  if (node.IsNull()) return {};
  if (!node.IsSequence()) throw BadValue{"expected a list of strings"};
  return node.as<std::vector<std::string>>();
}

// YAML scalars become JSON booleans/integers where they look like them, so
// `stateGeneration: 7` overrides with a number; quoted scalars stay strings.
boost::json::value YamlToJson(const YAML::Node& node) {
  if (node.IsNull()) return nullptr;
  if (node.IsSequence()) {
    boost::json::array out;
    for (const auto& item : node) out.push_back(YamlToJson(item));
    return out;
  }
  if (node.IsMap()) {
    boost::json::object out;
    for (const auto& item : node) {
      out[item.first.as<std::string>()] = YamlToJson(item.second);
    }
    return out;
  }
  const std::string text = node.as<std::string>();
  if (node.Tag() != "!") {
    if (text == "true" || text == "false") return text == "true";
    long long number = 0;
    if (YAML::convert<long long>::decode(node, number)) return number;
  }
  return boost::json::string(text);
}

std::map<std::string, uint64_t> Counters(const YAML::Node& node,
                                         const std::set<std::string>& reasons,
                                         const std::string& main_reason) {
  std::map<std::string, uint64_t> out;
  if (node.IsScalar()) {
    out[main_reason] = node.as<uint64_t>();
    return out;
  }
  if (!node.IsMap()) throw BadValue{"expected a number or a reason map"};
  for (const auto& item : node) {
    std::string reason = item.first.as<std::string>();
    if (reasons.count(reason) == 0) throw BadValue{"unknown reason \"" + reason + "\""};
    out[reason] = item.second.as<uint64_t>();
  }
  return out;
}

std::string OneOf(const YAML::Node& node, const std::set<std::string>& allowed) {
  std::string value = node.as<std::string>();
  if (allowed.count(value) == 0) throw BadValue{"unsupported value \"" + value + "\""};
  return value;
}

void SetDoctor(const YAML::Node& node, Scenario& s) {
  if (!node.IsMap()) throw BadValue{"expected a map with fail/warn lists"};
  for (const auto& item : node) {
    std::string field = item.first.as<std::string>();
    if (field != "fail" && field != "warn") {
      throw BadValue{"unknown field \"" + field + "\" (expected fail or warn)"};
    }
    for (const std::string& id : StringList(item.second)) {
      if (!IsKnownCheckId(id)) throw BadValue{"unknown check id \"" + id + "\""};
      (field == "fail" ? s.doctor_fail : s.doctor_warn).insert(id);
    }
  }
}

void SetRotationPlan(const YAML::Node& node, Scenario& s) {
  if (!node.IsMap()) throw BadValue{"expected a map of report keys"};
  for (const auto& item : node) {
    std::string field = item.first.as<std::string>();
    if (RotationPlanKeys().count(field) == 0) {
      throw BadValue{"unknown report key \"" + field + "\""};
    }
    s.rotation_plan.emplace_back(field, YamlToJson(item.second));
  }
}

void SetKeyId(const YAML::Node& node, Scenario& s) {
  std::string value = node.IsNull() ? "" : node.as<std::string>();
  if (!value.empty() && !IsWellFormedKeyId(value)) {
    throw BadValue{"not an obk2. key_id (\"obk2.\" + 43 base64url chars)"};
  }
  s.key_id = value;
}

// Setters for plain fields, so the table below stays one line per key.
template <typename T>
Setter Field(T Scenario::*field) {
  return [field](const YAML::Node& n, Scenario& s) { s.*field = n.as<T>(); };
}

Setter StringsField(std::vector<std::string> Scenario::*field) {
  return [field](const YAML::Node& n, Scenario& s) { s.*field = StringList(n); };
}

template <typename T>
Setter OptionalField(std::optional<T> Scenario::*field) {
  return [field](const YAML::Node& n, Scenario& s) {
    if (!n.IsNull()) s.*field = n.as<T>();
  };
}

void SetKeyVersion(const YAML::Node& n, Scenario& s) {
  s.key_version = n.as<int>();
  if (s.key_version < 1) throw BadValue{"must be at least 1"};
}

void SetPendingKeyId(const YAML::Node& n, Scenario& s) {
  s.pending_key_id = n.as<std::string>();
  if (!IsWellFormedKeyId(*s.pending_key_id)) throw BadValue{"not an obk2. key_id"};
}

void SetRotationState(const YAML::Node& n, Scenario& s) {
  s.rotation_state = OneOf(n, {"active", "pending", "unknown"});
}

void SetKmsHealthz(const YAML::Node& n, Scenario& s) {
  s.kms_healthy = OneOf(n, {"ok", "unhealthy"}) == "ok";
}

void SetDecryptErrors(const YAML::Node& n, Scenario& s) {
  s.decrypt_key_id_errors =
      Counters(n, {"key_id_unknown", "key_id_malformed"}, "key_id_unknown");
}

void SetAadErrors(const YAML::Node& n, Scenario& s) {
  s.aad_validation_errors =
      Counters(n, {"aad_missing", "aad_mismatch", "annotation_invalid"}, "aad_mismatch");
}

// Every scenario key; README.md documents each one.
const std::map<std::string, Setter>& Setters() {
  static const std::map<std::string, Setter> setters = {
      {"key_id", SetKeyId},
      {"key_seed", Field(&Scenario::key_seed)},
      {"key_version", SetKeyVersion},
      {"pending_key_id", SetPendingKeyId},
      {"startup_delay_ms", Field(&Scenario::startup_delay_ms)},
      {"ready", Field(&Scenario::ready)},
      {"ready_reasons", StringsField(&Scenario::ready_reasons)},
      {"rotation_state", SetRotationState},
      {"kms_healthz", SetKmsHealthz},
      {"build_info", OptionalField(&Scenario::build_info)},
      {"circuit_breaker_open", Field(&Scenario::circuit_breaker_open)},
      {"decrypt_key_id_errors", SetDecryptErrors},
      {"aad_validation_errors", SetAadErrors},
      {"extra_hash_series", StringsField(&Scenario::extra_hash_series)},
      {"crash_after_ms", OptionalField(&Scenario::crash_after_ms)},
      {"exit_on_start", Field(&Scenario::exit_on_start)},
      {"doctor", SetDoctor},
      {"doctor_delay_ms", Field(&Scenario::doctor_delay_ms)},
      {"metrics_delay_ms", Field(&Scenario::metrics_delay_ms)},
      {"rotation_plan", SetRotationPlan},
      {"legacy_exit_codes", Field(&Scenario::legacy_exit_codes)},
      {"config_error", OptionalField(&Scenario::config_error)},
  };
  return setters;
}

absl::Status ApplyKey(const std::string& origin, const std::string& key,
                      const YAML::Node& value, Scenario& scenario) {
  auto setter = Setters().find(key);
  if (setter == Setters().end()) {
    return absl::InvalidArgumentError("scenario " + origin + ": unknown key \"" +
                                      key + "\"");
  }
  try {
    setter->second(value, scenario);
  } catch (const BadValue& bad) {
    return absl::InvalidArgumentError("scenario " + origin + ": key \"" + key +
                                      "\": " + bad.why);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("scenario " + origin + ": key \"" + key +
                                      "\": wrong type: " + e.what());
  }
  return absl::OkStatus();
}

absl::Status ApplyDocument(const std::string& yaml_text, const std::string& origin,
                           Scenario& scenario) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("scenario " + origin + ": " + e.what());
  }
  if (root.IsNull()) return absl::OkStatus();  // empty file: all defaults
  if (!root.IsMap()) {
    return absl::InvalidArgumentError("scenario " + origin + ": expected a map of keys");
  }
  for (const auto& item : root) {
    absl::Status status =
        ApplyKey(origin, item.first.as<std::string>(), item.second, scenario);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ApplyOverride(const std::string& assignment, Scenario& scenario) {
  size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError("scenario --fake-set: expected KEY=VALUE, got \"" +
                                      assignment + "\"");
  }
  return ApplyKey("--fake-set", assignment.substr(0, eq),
                  YAML::Load(assignment.substr(eq + 1)), scenario);
}

}  // namespace

std::string Scenario::ActiveKeyId() const {
  return key_id ? *key_id : DeriveKeyId(key_seed, key_version);
}

std::string Scenario::PendingKeyId() const {
  return pending_key_id ? *pending_key_id : DeriveKeyId(key_seed, key_version + 1);
}

std::string Scenario::LatestKeyId() const {
  if (rotation_state == "pending") return PendingKeyId();
  std::string active = ActiveKeyId();
  return active.empty() ? DeriveKeyId(key_seed, key_version) : active;
}

absl::StatusOr<Scenario> ParseScenario(const std::string& yaml_text,
                                       const std::string& origin,
                                       const std::vector<std::string>& overrides) {
  Scenario scenario;
  scenario.key_seed = kDefaultKeySeed;
  if (absl::Status s = ApplyDocument(yaml_text, origin, scenario); !s.ok()) return s;
  for (const std::string& assignment : overrides) {
    try {
      if (absl::Status s = ApplyOverride(assignment, scenario); !s.ok()) return s;
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError("scenario --fake-set: " + std::string(e.what()));
    }
  }
  return scenario;
}

ScenarioSource::ScenarioSource(std::string path, std::vector<std::string> overrides)
    : path_(std::move(path)), overrides_(std::move(overrides)) {}

absl::StatusOr<std::unique_ptr<ScenarioSource>> ScenarioSource::Open(
    std::string path, std::vector<std::string> overrides) {
  std::unique_ptr<ScenarioSource> source(
      new ScenarioSource(std::move(path), std::move(overrides)));
  std::lock_guard<std::mutex> lock(source->mu_);
  std::optional<std::string> text = source->ReadFileLocked();
  if (!text) return absl::NotFoundError("scenario " + source->path_ + ": cannot read file");
  auto parsed = source->ParseLocked(*text);
  if (!parsed.ok()) return parsed.status();
  source->current_ = *parsed;
  source->last_check_ = std::chrono::steady_clock::now();
  return source;
}

std::optional<std::string> ScenarioSource::ReadFileLocked() const {
  if (path_.empty()) return std::string();
  std::ifstream file(path_, std::ios::binary);
  if (!file) return std::nullopt;
  std::stringstream buffer;
  buffer << file.rdbuf();
  return buffer.str();
}

absl::StatusOr<std::shared_ptr<const Scenario>> ScenarioSource::ParseLocked(
    const std::string& text) {
  seen_text_ = text;
  auto parsed = ParseScenario(text, path_.empty() ? "(none)" : path_, overrides_);
  if (!parsed.ok()) return parsed.status();
  return std::make_shared<const Scenario>(std::move(*parsed));
}

std::shared_ptr<const Scenario> ScenarioSource::Current() {
  std::lock_guard<std::mutex> lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (path_.empty() || now - last_check_ < kRecheckInterval) return current_;
  last_check_ = now;
  // Comparing content rather than mtime/size also catches two same-sized
  // writes within one coarse filesystem timestamp tick.
  std::optional<std::string> text = ReadFileLocked();
  if (!text || *text == seen_text_) return current_;  // absent: mid-rename, keep
  auto parsed = ParseLocked(*text);
  if (!parsed.ok()) {
    // Keep serving the last good scenario; an editor may be mid-write.
    LogEvent("warn", "fake.scenario_reload_failed",
             {{"error", std::string(parsed.status().message())}});
    return current_;
  }
  current_ = *parsed;
  return current_;
}

}  // namespace kmsfleet::fake
