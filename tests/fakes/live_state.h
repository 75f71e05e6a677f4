// The running fake's mutable state, shared by the gRPC handlers, the HTTP
// listeners and the serve loop: the live scenario, the counters /metrics
// reports, and every key_id this process has served (so ciphertext written
// before a live key change still decrypts, like a retained key version).
// Thread-safe.
#ifndef KMSFLEET_TESTS_FAKES_LIVE_STATE_H_
#define KMSFLEET_TESTS_FAKES_LIVE_STATE_H_

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "metrics_text.h"
#include "scenario.h"
#include "version_info.h"

namespace kmsfleet::fake {

// How often the simulated Status cache refreshes; /ready's cache_age_ms and
// openbao_kms_status_cache_age_seconds cycle through [0, this).
inline constexpr std::chrono::milliseconds kStatusRefreshInterval{5000};

class LiveState {
 public:
  LiveState(ScenarioSource& scenario, VersionInfo version);

  // The current scenario (reloaded from its file when it changed).
  std::shared_ptr<const Scenario> CurrentScenario();
  const VersionInfo& version() const { return version_; }
  std::chrono::milliseconds StatusCacheAge() const;

  // `method` is status|encrypt|decrypt, `code` a lower_snake gRPC code.
  void RecordRpc(std::string_view method, std::string_view code, double seconds);
  void RecordDecryptKeyIdError(std::string_view reason);
  void RecordAadError(std::string_view reason);
  void RecordSocketReclaim();
  // Called with each /ready answer's HTTP status before it is sent. Logs
  // `fake.ready_changed` {ready, http_status} at the first answer and
  // whenever the answer differs from the one before. A test-only line:
  // upstream logs no readiness change (reference §3.4 lists its stable
  // messages; §11: its readiness event names are unknown), hence the
  // `fake.` prefix. The fleet tests read from it when a restarted provider
  // first answered 200, which `serve.ready` (listeners bound) does not say.
  void NoteReadyAnswer(int http_status);

  // Remembers a key_id as served; KnowsKeyId is true for remembered ids and
  // for the scenario's current active and pending keys.
  void RememberKeyId(const std::string& key_id);
  bool KnowsKeyId(const std::string& key_id);

  std::string RenderMetricsText();

 private:
  ScenarioSource& scenario_;
  const VersionInfo version_;
  const std::chrono::steady_clock::time_point started_;
  const double start_unix_seconds_;
  std::mutex mu_;
  MetricsInputs counters_;         // guarded by mu_ (scenario field unused)
  std::set<std::string> served_;  // guarded by mu_
  int last_ready_status_ = 0;      // guarded by mu_; 0 before the first answer
};

// The gRPC code name as the real metrics label spells it (reference §3.1).
std::string_view GrpcCodeLabel(int code);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_LIVE_STATE_H_
