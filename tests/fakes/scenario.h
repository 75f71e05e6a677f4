// The scenario: everything about the fake's behaviour that a test or the
// demo steers (README.md lists every key). It comes from a YAML file
// (--scenario or FAKE_BAO_KMS_SCENARIO) plus --fake-set KEY=VALUE overrides,
// and `serve` re-reads the file while running so behaviour can change live.
#ifndef KMSFLEET_TESTS_FAKES_SCENARIO_H_
#define KMSFLEET_TESTS_FAKES_SCENARIO_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

#include "absl/status/statusor.h"

namespace kmsfleet::fake {

inline constexpr char kScenarioEnv[] = "FAKE_BAO_KMS_SCENARIO";

struct Scenario {
  std::string key_seed;
  // nullopt: derive from key_seed; "": no active key (state not loaded).
  std::optional<std::string> key_id;
  int key_version = 1;
  std::optional<std::string> pending_key_id;  // nullopt: derive
  int startup_delay_ms = 0;
  bool ready = true;
  std::vector<std::string> ready_reasons;  // empty: a default is chosen
  std::string rotation_state = "active";   // active | pending | unknown
  bool kms_healthy = true;                 // kms_healthz: ok | unhealthy
  std::optional<bool> build_info;          // nullopt: by version
  bool circuit_breaker_open = false;
  std::map<std::string, uint64_t> decrypt_key_id_errors;  // reason -> base
  std::map<std::string, uint64_t> aad_validation_errors;  // reason -> base
  std::vector<std::string> extra_hash_series;
  std::optional<int> crash_after_ms;
  bool exit_on_start = false;
  std::set<std::string> doctor_fail;
  std::set<std::string> doctor_warn;
  int doctor_delay_ms = 0;  // doctor and verify-key answer after this long
  int metrics_delay_ms = 0;  // serve's /metrics answers after this long
  // rotation-plan JSON overrides in file order; a null value removes a key.
  std::vector<std::pair<std::string, boost::json::value>> rotation_plan;
  bool legacy_exit_codes = false;
  std::optional<std::string> config_error;

  // The active key_id: explicit, or derived. "" means no active key.
  std::string ActiveKeyId() const;
  // The key a pending rotation would promote (Transit version + 1).
  std::string PendingKeyId() const;
  // The key rebuilt from Transit's latest version, as doctor's
  // key_id.deterministic does (reference §2.3 caution): the pending key
  // during a pending rotation, otherwise the active one, derived from the
  // seed even when no state is loaded.
  std::string LatestKeyId() const;
};

// Parses scenario YAML text. `origin` names the file (or "--fake-set") in
// errors, which also name the offending key. `overrides` are KEY=VALUE
// strings whose VALUE is YAML, applied after the file's keys.
// Errors: kInvalidArgument for unknown keys, bad types or values.
absl::StatusOr<Scenario> ParseScenario(const std::string& yaml_text,
                                       const std::string& origin,
                                       const std::vector<std::string>& overrides);

// Holds the current scenario and reloads its file when the file's content
// changes (so any mtime/size change too), checking at most once per
// kRecheckInterval, lazily from Current(). A file that stops parsing
// keeps the last good scenario (and says so on stderr) so a half-written
// edit cannot crash a running fake.
// Thread-safe.
class ScenarioSource {
 public:
  static constexpr std::chrono::milliseconds kRecheckInterval{100};

  // Loads `path` (may be empty: overrides only).
  // Errors: kInvalidArgument / kNotFound describing the file and key.
  static absl::StatusOr<std::unique_ptr<ScenarioSource>> Open(
      std::string path, std::vector<std::string> overrides);

  // Returns the scenario, first reloading the file if it changed.
  std::shared_ptr<const Scenario> Current();

 private:
  ScenarioSource(std::string path, std::vector<std::string> overrides);
  // nullopt when the file cannot be read; "" when there is no file.
  std::optional<std::string> ReadFileLocked() const;
  // Remembers `text` as seen, then parses it with the overrides.
  absl::StatusOr<std::shared_ptr<const Scenario>> ParseLocked(const std::string& text);

  const std::string path_;
  const std::vector<std::string> overrides_;
  std::mutex mu_;
  std::shared_ptr<const Scenario> current_;  // guarded by mu_
  std::chrono::steady_clock::time_point last_check_;  // guarded by mu_
  std::string seen_text_;                             // guarded by mu_
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_SCENARIO_H_
