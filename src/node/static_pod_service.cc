// The static pod seen as the executor's ServiceManager
// (static_pod_service.h).
#include "kmsfleet/node/static_pod_service.h"

#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/static_pod_installer.h"

namespace kmsfleet {
namespace {

UnitActivity ActivityOf(CriContainerState state) {
  switch (state) {
    case CriContainerState::kRunning:
      return UnitActivity::kRunning;
    case CriContainerState::kCreated:
      return UnitActivity::kStarting;
    case CriContainerState::kExited:
      return UnitActivity::kFailed;  // a static pod's container never ends by design
    case CriContainerState::kUnknown:
      break;
  }
  return UnitActivity::kUnknown;
}

std::string Describe(const CriContainer& c) {
  return "container " + c.id.substr(0, 13) + " " + std::string(CriStateName(c.state)) +
         " image " + c.image;
}

class StaticPodService final : public ServiceManager {
 public:
  StaticPodService(StaticPodServiceOptions options, ContainerRuntime& runtime,
                   const MonotonicClock& steady)
      : o_(std::move(options)), runtime_(runtime), steady_(steady) {}

  // Start runs after the manifest changed (an install or a restore), when
  // giving up restores or ends RollbackFailed: a runtime that fails a call
  // while the kubelet replaces containers is asked again until the
  // deadline, and only its last answer counts.
  absl::Status Start(const std::string&, std::chrono::milliseconds timeout) override {
    KMSFLEET_ASSIGN_OR_RETURN(ImageRef want, ManifestImage());
    const int64_t deadline = steady_.NowSteadyMillis() + timeout.count();
    std::string seen = "no container";
    absl::Status last_error;
    for (;;) {
      absl::StatusOr<bool> runs = RunsDigest(want.digest, seen);
      if (runs.ok() && *runs) return absl::OkStatus();
      last_error = runs.status();
      if (steady_.NowSteadyMillis() >= deadline) break;
      steady_.SleepFor(o_.poll_interval);
    }
    if (!last_error.ok()) return last_error;
    return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kPodNotReplaced,
                     "the kubelet did not run " + want.ToString() + " in " +
                         StaticPodName(o_.pod) + " within " +
                         std::to_string(timeout.count()) + " ms; newest: " + seen,
                     {{"pod", o_.pod.pod_namespace + "/" + o_.pod.pod_name},
                      {"image", want.ToString()}});
  }

  absl::Status Stop(const std::string&, std::chrono::milliseconds) override {
    return absl::OkStatus();
  }

  absl::Status Restart(const std::string&, std::chrono::milliseconds) override {
    return MakeError(absl::StatusCode::kUnimplemented, reason::kServiceManagerError,
                     StaticPodName(o_.pod) + " is restarted by the kubelet, not by kmsfleet");
  }

  absl::StatusOr<UnitState> State(const std::string&) override {
    KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriContainer> newest, Newest());
    UnitState out;
    if (!newest) {
      out.activity = UnitActivity::kStopped;
      out.detail = "no container";
      return out;
    }
    out.activity = ActivityOf(newest->state);
    out.detail = Describe(*newest);
    out.invocation_id = newest->id;
    return out;
  }

 private:
  // Whether the pod's newest container runs `digest`; `seen` describes it.
  absl::StatusOr<bool> RunsDigest(const std::string& digest, std::string& seen) {
    KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriContainer> newest, Newest());
    if (!newest) {
      seen = "no container";
      return false;
    }
    seen = Describe(*newest);
    if (newest->state != CriContainerState::kRunning) return false;
    KMSFLEET_ASSIGN_OR_RETURN(CriContainer status, runtime_.ContainerStatus(newest->id));
    if (status.image_digest == digest) return true;
    seen += " running digest " +
            (status.image_digest.empty() ? std::string("unknown") : status.image_digest);
    return false;
  }

  absl::StatusOr<std::optional<CriContainer>> Newest() {
    KMSFLEET_ASSIGN_OR_RETURN(std::vector<CriContainer> all, runtime_.ListContainers(o_.pod));
    if (all.empty()) return std::optional<CriContainer>();
    return std::optional<CriContainer>(all.front());
  }

  absl::StatusOr<ImageRef> ManifestImage() {
    KMSFLEET_ASSIGN_OR_RETURN(std::string image,
                              ReadManifestImage(o_.manifest_path, o_.pod.container_name));
    return ParseImageRef(image, o_.manifest_path + " image");
  }

  const StaticPodServiceOptions o_;
  ContainerRuntime& runtime_;
  const MonotonicClock& steady_;
};

}  // namespace

std::string StaticPodName(const PodContainerSelector& pod) {
  return "static pod " + pod.pod_namespace + "/" + pod.pod_name;
}

std::unique_ptr<ServiceManager> NewStaticPodServiceManager(StaticPodServiceOptions options,
                                                           ContainerRuntime& runtime,
                                                           const MonotonicClock& steady) {
  return std::make_unique<StaticPodService>(std::move(options), runtime, steady);
}

}  // namespace kmsfleet
