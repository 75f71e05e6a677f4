#include "metrics_text.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet::fake {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

std::string FormatValue(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return ec == std::errc() ? std::string(buffer, end) : "0";
}

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Collects families and writes them sorted by name, as client_golang does.
class Exposition {
 public:
  void Family(const std::string& name, const std::string& type, const std::string& help) {
    current_ = &families_[name];
    *current_ = "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  // REQUIRES: Family() was called first (the current family receives it).
  void Sample(const std::string& name, const Labels& labels, double value) {
    *current_ += name;
    if (!labels.empty()) {
      *current_ += "{";
      for (size_t i = 0; i < labels.size(); ++i) {
        *current_ += (i ? "," : "") + labels[i].first + "=\"" +
                     EscapeLabel(labels[i].second) + "\"";
      }
      *current_ += "}";
    }
    *current_ += " " + FormatValue(value) + "\n";
  }
  std::string Text() const {
    std::string out;
    for (const auto& [name, text] : families_) out += text;
    return out;
  }

 private:
  std::map<std::string, std::string> families_;
  std::string* current_ = nullptr;
};

void AddGoRuntime(const ProcessSample& p, Exposition& out) {
  out.Family("go_gc_duration_seconds", "summary",
             "A summary of the wall-time pause (stop-the-world) duration in "
             "garbage collection cycles.");
  const double quantiles[][2] = {{0, 2.1e-05}, {0.25, 3.4e-05}, {0.5, 4.8e-05},
                                 {0.75, 7.2e-05}, {1, 0.000311}};
  for (const auto& q : quantiles) {
    out.Sample("go_gc_duration_seconds", {{"quantile", FormatValue(q[0])}}, q[1]);
  }
  out.Sample("go_gc_duration_seconds_sum", {}, 0.00184);
  out.Sample("go_gc_duration_seconds_count", {}, 27);
  out.Family("go_goroutines", "gauge", "Number of goroutines that currently exist.");
  out.Sample("go_goroutines", {}, 18 + p.threads);
  out.Family("go_info", "gauge", "Information about the Go environment.");
  out.Sample("go_info", {{"version", "go1.24.4"}}, 1);
  out.Family("go_memstats_alloc_bytes", "gauge",
             "Number of heap bytes allocated and currently in use.");
  out.Sample("go_memstats_alloc_bytes", {}, std::floor(p.resident_bytes * 0.4));
  out.Family("go_memstats_heap_objects", "gauge",
             "Number of currently allocated objects.");
  out.Sample("go_memstats_heap_objects", {}, std::floor(p.resident_bytes / 160));
  out.Family("go_threads", "gauge", "Number of OS threads created.");
  out.Sample("go_threads", {}, p.threads);
}

void AddProcess(const ProcessSample& p, Exposition& out) {
  out.Family("process_cpu_seconds_total", "counter",
             "Total user and system CPU time spent in seconds.");
  out.Sample("process_cpu_seconds_total", {}, p.cpu_seconds);
  out.Family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  out.Sample("process_max_fds", {}, p.max_fds);
  out.Family("process_open_fds", "gauge", "Number of open file descriptors.");
  out.Sample("process_open_fds", {}, p.open_fds);
  out.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  out.Sample("process_resident_memory_bytes", {}, p.resident_bytes);
  out.Family("process_start_time_seconds", "gauge",
             "Start time of the process since unix epoch in seconds.");
  out.Sample("process_start_time_seconds", {}, p.start_time_seconds);
  out.Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  out.Sample("process_virtual_memory_bytes", {}, p.virtual_bytes);
}

void AddGrpc(const MetricsInputs& in, Exposition& out) {
  if (!in.rpc_counts.empty()) {
    out.Family("openbao_kms_grpc_requests_total", "counter",
               "KMS v2 gRPC requests by method and status.");
    for (const auto& [key, count] : in.rpc_counts) {
      out.Sample("openbao_kms_grpc_requests_total",
                 {{"method", key.first}, {"status", key.second}}, double(count));
    }
  }
  if (in.rpc_durations.empty()) return;
  out.Family("openbao_kms_grpc_duration_seconds", "histogram",
             "KMS v2 gRPC handler latency in seconds.");
  for (const auto& [method, histogram] : in.rpc_durations) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kDurationBuckets; ++i) {
      cumulative += histogram.counts[i];
      out.Sample("openbao_kms_grpc_duration_seconds_bucket",
                 {{"method", method}, {"le", FormatValue(DurationBucketBound(i))}},
                 double(cumulative));
    }
    out.Sample("openbao_kms_grpc_duration_seconds_bucket",
               {{"method", method}, {"le", "+Inf"}}, double(histogram.count));
    out.Sample("openbao_kms_grpc_duration_seconds_sum", {{"method", method}},
               histogram.sum_seconds);
    out.Sample("openbao_kms_grpc_duration_seconds_count", {{"method", method}},
               double(histogram.count));
  }
  out.Family("openbao_kms_grpc_in_flight", "gauge", "KMS v2 gRPC handlers in flight.");
  for (const auto& [method, histogram] : in.rpc_durations) {
    out.Sample("openbao_kms_grpc_in_flight", {{"method", method}}, 0);
  }
}

// Counter families with a fixed reason set, pre-initialised to zero so a
// rate() over them works from the first scrape.
void AddReasonCounter(const std::string& name, const std::string& help,
                      const std::vector<std::string>& reasons,
                      const std::map<std::string, uint64_t>& base,
                      const std::map<std::string, uint64_t>& live, Exposition& out) {
  out.Family(name, "counter", help);
  for (const std::string& reason : reasons) {
    uint64_t value = 0;
    if (auto it = base.find(reason); it != base.end()) value += it->second;
    if (auto it = live.find(reason); it != live.end()) value += it->second;
    out.Sample(name, {{"reason", reason}}, double(value));
  }
}

void AddKeyState(const MetricsInputs& in, Exposition& out) {
  const Scenario& s = *in.scenario;
  const std::string active = s.ActiveKeyId();
  std::vector<std::string> hashes = s.extra_hash_series;
  if (!active.empty()) hashes.insert(hashes.begin(), kmsfleet::KeyIdHash(active));
  if (!hashes.empty()) {
    out.Family("openbao_kms_status_key_id_hash", "gauge",
               "Active key_id as a base64url SHA-256 hash; 1 for the active key.");
    for (const std::string& hash : hashes) {
      out.Sample("openbao_kms_status_key_id_hash", {{"hash", hash}}, 1);
    }
  }
  out.Family("openbao_kms_key_version", "gauge",
             "Transit key version used for new encryptions (0 if none).");
  out.Sample("openbao_kms_key_version", {}, active.empty() ? 0 : s.key_version);
  out.Family("openbao_kms_status_cache_age_seconds", "gauge",
             "Age of the cached KMS Status in seconds.");
  out.Sample("openbao_kms_status_cache_age_seconds", {}, in.status_cache_age_seconds);
  out.Family("openbao_kms_rotation_state", "gauge",
             "Rotation state; 1 on exactly one of active, pending, unknown.");
  for (const char* state : {"active", "pending", "unknown"}) {
    out.Sample("openbao_kms_rotation_state", {{"state", state}},
               s.rotation_state == state ? 1 : 0);
  }
  out.Family("openbao_kms_circuit_breaker_state", "gauge",
             "OpenBao circuit breaker state: 0 closed, 1 open.");
  out.Sample("openbao_kms_circuit_breaker_state", {}, s.circuit_breaker_open ? 1 : 0);
}

void AddProviderInfo(const MetricsInputs& in, Exposition& out) {
  const Scenario& s = *in.scenario;
  // build_info arrived in 0.1.0-preview.3 (reference §3.1); older builds
  // lack the family entirely.
  bool build_info = s.build_info.value_or(
      CompareSemVer(in.version.version, kDefaultFakeVersion) >= 0);
  if (build_info) {
    out.Family("openbao_kms_build_info", "gauge",
               "Provider build metadata; always 1 for the running binary.");
    out.Sample("openbao_kms_build_info",
               {{"version", in.version.version}, {"commit", in.version.commit},
                {"build_date", in.version.build_date},
                {"dirty", in.version.dirty ? "true" : "false"}},
               1);
  }
  out.Family("openbao_kms_auth_method_info", "gauge", "Configured auth method.");
  out.Sample("openbao_kms_auth_method_info", {{"method", "jwt"}}, 1);
  out.Family("openbao_kms_auth_login_total", "counter", "OpenBao logins by status.");
  out.Sample("openbao_kms_auth_login_total", {{"status", "ok"}}, 1);
  out.Family("openbao_kms_token_ttl_seconds", "gauge", "Remaining OpenBao token TTL.");
  out.Sample("openbao_kms_token_ttl_seconds", {}, 3300);
  out.Family("openbao_kms_socket_restarts_total", "counter",
             "Stale KMS sockets removed at startup.");
  out.Sample("openbao_kms_socket_restarts_total", {}, double(in.socket_restarts));
}

}  // namespace

double DurationBucketBound(size_t index) { return 0.001 * double(1u << index); }

void DurationHistogram::Observe(double seconds) {
  for (size_t i = 0; i < kDurationBuckets; ++i) {
    if (seconds <= DurationBucketBound(i)) {
      ++counts[i];
      break;
    }
  }
  ++count;
  sum_seconds += seconds;
}

std::string RenderMetrics(const MetricsInputs& in) {
  Exposition out;
  AddGoRuntime(in.process, out);
  AddProcess(in.process, out);
  AddGrpc(in, out);
  AddReasonCounter("openbao_kms_decrypt_key_id_errors_total",
                   "Decrypt requests rejected for their key_id, by reason.",
                   {"key_id_malformed", "key_id_unknown"},
                   in.scenario->decrypt_key_id_errors, in.decrypt_key_id_errors, out);
  AddReasonCounter("openbao_kms_aad_validation_errors_total",
                   "Decrypt requests rejected by annotation or AAD validation.",
                   {"aad_mismatch", "aad_missing", "annotation_invalid"},
                   in.scenario->aad_validation_errors, in.aad_validation_errors, out);
  AddKeyState(in, out);
  AddProviderInfo(in, out);
  return out.Text();
}

ProcessSample SampleProcess(double start_time_seconds) {
  ProcessSample sample;
  sample.start_time_seconds = start_time_seconds;
  const double page = double(::sysconf(_SC_PAGESIZE));
  std::ifstream statm("/proc/self/statm");
  double pages_virtual = 0, pages_resident = 0;
  statm >> pages_virtual >> pages_resident;
  sample.virtual_bytes = pages_virtual * page;
  sample.resident_bytes = pages_resident * page;
  struct rusage usage {};
  ::getrusage(RUSAGE_SELF, &usage);
  sample.cpu_seconds = double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  struct rlimit limit {};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  sample.max_fds = double(limit.rlim_cur);
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (const dirent* entry = ::readdir(dir)) sample.open_fds += entry->d_name[0] != '.';
    ::closedir(dir);
  }
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("Threads:", 0) == 0) sample.threads = std::stod(line.substr(8));
  }
  return sample;
}

}  // namespace kmsfleet::fake
