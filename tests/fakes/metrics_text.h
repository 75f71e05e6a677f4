// Prometheus text exposition of the fake's /metrics (reference §3.1): every
// family the real provider exports that kmsfleet or an operator reads, with
// HELP/TYPE lines, plus Go-runtime and process families so the page looks
// like a real client_golang registry. Must pass `promtool check metrics`.
// Thread-compatible: RenderMetrics is a pure function of its input.
#ifndef KMSFLEET_TESTS_FAKES_METRICS_TEXT_H_
#define KMSFLEET_TESTS_FAKES_METRICS_TEXT_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "scenario.h"
#include "version_info.h"

namespace kmsfleet::fake {

// Upper bounds of openbao_kms_grpc_duration_seconds: 1 ms doubling, 12
// buckets (reference §3.1).
inline constexpr size_t kDurationBuckets = 12;
double DurationBucketBound(size_t index);

struct DurationHistogram {
  std::array<uint64_t, kDurationBuckets> counts{};  // per bucket, not cumulative
  uint64_t count = 0;
  double sum_seconds = 0;
  void Observe(double seconds);
};

struct ProcessSample {
  double cpu_seconds = 0;
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double start_time_seconds = 0;  // Unix time
  double open_fds = 0;
  double max_fds = 0;
  double threads = 0;
};

struct MetricsInputs {
  const Scenario* scenario = nullptr;
  VersionInfo version;
  // (method, grpc status) -> calls, e.g. ("status", "ok").
  std::map<std::pair<std::string, std::string>, uint64_t> rpc_counts;
  std::map<std::string, DurationHistogram> rpc_durations;  // by method
  // Observed at runtime; the scenario's base values are added on top.
  std::map<std::string, uint64_t> decrypt_key_id_errors;
  std::map<std::string, uint64_t> aad_validation_errors;
  uint64_t socket_restarts = 0;
  double status_cache_age_seconds = 0;
  ProcessSample process;
};

// REQUIRES: inputs.scenario != nullptr.
std::string RenderMetrics(const MetricsInputs& inputs);

// Reads /proc/self for the process_* families.
ProcessSample SampleProcess(double start_time_seconds);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_METRICS_TEXT_H_
