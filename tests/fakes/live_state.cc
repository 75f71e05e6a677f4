#include "live_state.h"

#include "event_log.h"

namespace kmsfleet::fake {

LiveState::LiveState(ScenarioSource& scenario, VersionInfo version)
    : scenario_(scenario),
      version_(std::move(version)),
      started_(std::chrono::steady_clock::now()),
      start_unix_seconds_(std::chrono::duration<double>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count()) {}

std::shared_ptr<const Scenario> LiveState::CurrentScenario() {
  return scenario_.Current();
}

std::chrono::milliseconds LiveState::StatusCacheAge() const {
  auto up = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);
  return up % kStatusRefreshInterval;
}

void LiveState::RecordRpc(std::string_view method, std::string_view code,
                          double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.rpc_counts[{std::string(method), std::string(code)}];
  counters_.rpc_durations[std::string(method)].Observe(seconds);
}

void LiveState::RecordDecryptKeyIdError(std::string_view reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.decrypt_key_id_errors[std::string(reason)];
}

void LiveState::RecordAadError(std::string_view reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.aad_validation_errors[std::string(reason)];
}

void LiveState::RecordSocketReclaim() {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.socket_restarts;
}

void LiveState::NoteReadyAnswer(int http_status) {
  std::lock_guard<std::mutex> lock(mu_);
  if (http_status == last_ready_status_) return;
  last_ready_status_ = http_status;
  // Under mu_, so the lines follow the order of last_ready_status_.
  LogEvent("info", "fake.ready_changed",
           {{"ready", http_status == 200}, {"http_status", http_status}});
}

void LiveState::RememberKeyId(const std::string& key_id) {
  std::lock_guard<std::mutex> lock(mu_);
  served_.insert(key_id);
}

bool LiveState::KnowsKeyId(const std::string& key_id) {
  std::shared_ptr<const Scenario> scenario = CurrentScenario();
  if (key_id.empty()) return false;
  // Newer providers decrypt with a pending version as soon as it is saved.
  if (key_id == scenario->ActiveKeyId() ||
      (scenario->rotation_state == "pending" && key_id == scenario->PendingKeyId())) {
    return true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  return served_.count(key_id) != 0;
}

std::string LiveState::RenderMetricsText() {
  std::shared_ptr<const Scenario> scenario = CurrentScenario();
  MetricsInputs inputs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inputs = counters_;
  }
  inputs.scenario = scenario.get();
  inputs.version = version_;
  inputs.status_cache_age_seconds =
      std::chrono::duration<double>(StatusCacheAge()).count();
  inputs.process = SampleProcess(start_unix_seconds_);
  return RenderMetrics(inputs);
}

std::string_view GrpcCodeLabel(int code) {
  static constexpr std::string_view kNames[] = {
      "ok",        "canceled",           "unknown",          "invalid_argument",
      "deadline_exceeded", "not_found",  "already_exists",   "permission_denied",
      "resource_exhausted", "failed_precondition", "aborted", "out_of_range",
      "unimplemented", "internal",       "unavailable",      "data_loss",
      "unauthenticated"};
  if (code < 0 || code >= int(std::size(kNames))) return "unknown";
  return kNames[code];
}

}  // namespace kmsfleet::fake
