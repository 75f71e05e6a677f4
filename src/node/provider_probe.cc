#include "kmsfleet/node/provider_probe.h"

#include <algorithm>
#include <future>

#include "kmsfleet/core/node_observation.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/key_id_hash.h"
#include "kmsfleet/node/kms_client.h"
#include "kmsfleet/node/listener_check.h"
#include "kmsfleet/node/subprocess.h"

namespace kmsfleet {
namespace {

HttpResult ToResult(absl::StatusOr<HttpResponse> response) {
  HttpResult result;
  if (!response.ok()) {
    result.transport = response.status();
    return result;
  }
  result.status = response->status;
  result.body = std::move(response->body);
  return result;
}

absl::StatusOr<std::string> RunVersion(const std::string& binary, const std::string& run_as,
                                       std::chrono::milliseconds timeout) {
  SubprocessOptions options;
  options.timeout = timeout;
  options.max_output_bytes = 64 << 10;
  KMSFLEET_ASSIGN_OR_RETURN(std::vector<std::string> argv, AsUser(run_as, {binary, "version"}));
  absl::StatusOr<SubprocessResult> run = RunSubprocess(argv, options);
  if (!run.ok()) return run.status();
  if (run->timed_out || run->term_signal != 0 || run->exit_code != 0) {
    std::string how = run->timed_out ? "timed out"
                      : run->term_signal ? "killed by signal " +
                                               std::to_string(run->term_signal)
                                         : "exited " + std::to_string(run->exit_code);
    return MakeError(absl::StatusCode::kUnavailable, reason::kSubprocessFailed,
                     binary + " version " + how + ": " +
                         run->stderr_text.substr(0, 200),
                     {{"path", binary}});
  }
  return std::move(run->stdout_text);
}

// The registry's content, or why there is none to report.
absl::StatusOr<std::string> ReadRegistry(const std::string& path) {
  if (path.empty()) return absl::FailedPreconditionError("no key registry path configured");
  return ReadBoundedFile(path, kMaxRegistryFileBytes);
}

class LiveProviderProbe final : public ProviderProbe {
 public:
  LiveProviderProbe(std::string node, ProviderEndpoints endpoints,
                    const Clock& clock)
      : node_(std::move(node)),
        endpoints_(std::move(endpoints)),
        kms_(endpoints_.kms_socket),
        clock_(clock) {}

  // kmsfleet::ProviderProbe
  v1::NodeState Observe() override { return ObserveAnd(VersionCommand::kWhenNoBuildInfo); }

  v1::NodeState ObserveForVerify() override {
    return ObserveAnd(VersionCommand::kWhenReadyWithoutBuildInfo);
  }

  std::optional<bool> HealthListenerAccepts() override {
    return ListenerAccepts(endpoints_.ready);
  }

  std::string RunningVersion() override {
    RawObservation raw;
    raw.node = node_;
    raw.metrics = ToResult(std::move(HttpGetAll({endpoints_.metrics}, endpoints_.http)[0]));
    const v1::NodeState state = AssembleNodeState(raw);
    if (state.provider_version_source() == "build_info") return state.provider_version();
    return Observe().provider_version();  // asks `version` when /metrics does not say
  }

 private:
  enum class VersionCommand { kWhenNoBuildInfo, kWhenReadyWithoutBuildInfo };

  v1::NodeState ObserveAnd(VersionCommand version) {
    // The four reads are independent; running them together bounds an
    // observation by the slowest timeout rather than their sum. The three
    // HTTP reads share this thread; the KMS call, a blocking gRPC one,
    // takes the only other.
    auto kms_status = std::async(std::launch::async,
                                 [this] { return kms_.Query(endpoints_.kms_timeout); });
    std::vector<absl::StatusOr<HttpResponse>> http = HttpGetAll(
        {endpoints_.metrics, endpoints_.ready, endpoints_.live}, endpoints_.http);
    RawObservation raw;
    raw.node = node_;
    raw.kms_status = kms_status.get();
    if (raw.kms_status.ok() && !raw.kms_status->key_id().empty()) {
      raw.kms_key_id_hash = KeyIdHash(raw.kms_status->key_id());
    }
    raw.metrics = ToResult(std::move(http[0]));
    raw.ready = ToResult(std::move(http[1]));
    raw.live = ToResult(std::move(http[2]));
    raw.observed_at_unix_ms = clock_.NowUnixMillis();
    v1::NodeState state = AssembleNodeState(raw);
    ApplyRegistryRead(ReadRegistry(endpoints_.registry_path), endpoints_.registry_path,
                      state);
    const bool wanted =
        version == VersionCommand::kWhenNoBuildInfo || state.ready();
    if (wanted && NeedsVersionCommand(state) && !endpoints_.binary.empty()) {
      ApplyVersionCommand(RunVersion(endpoints_.binary, endpoints_.run_as, endpoints_.command_timeout),
                          state);
    }
    return state;
  }

  const std::string node_;
  const ProviderEndpoints endpoints_;
  KmsStatusClient kms_;
  const Clock& clock_;
};

}  // namespace

std::unique_ptr<ProviderProbe> NewProviderProbe(std::string node,
                                                ProviderEndpoints endpoints,
                                                const Clock& clock) {
  return std::make_unique<LiveProviderProbe>(std::move(node),
                                             std::move(endpoints), clock);
}

std::chrono::milliseconds ObserveBound(const ProviderEndpoints& endpoints) {
  return std::max(endpoints.http.total_timeout, endpoints.kms_timeout) +
         (endpoints.binary.empty() ? std::chrono::milliseconds(0) : endpoints.command_timeout);
}

}  // namespace kmsfleet
