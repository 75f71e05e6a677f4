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

// The id of the image a container runs: CRI's image_id, or else an
// image_ref that is an id (no repository: "sha256:<hex>" or CRI-O's bare
// hex); "" when neither says.
std::string ImageIdOf(const CriContainer& c) {
  if (!c.image_id.empty()) return c.image_id;
  if (!c.image_ref.empty() && c.image_ref.find_first_of("/@:") == std::string::npos) {
    return c.image_ref;
  }
  if (c.image_ref.starts_with("sha256:")) return c.image_ref;
  return "";
}

// containerd writes ids as "sha256:<hex>", CRI-O as bare hex.
bool SameImageId(std::string_view a, std::string_view b) {
  constexpr std::string_view kPrefix = "sha256:";
  if (a.starts_with(kPrefix)) a.remove_prefix(kPrefix.size());
  if (b.starts_with(kPrefix)) b.remove_prefix(kPrefix.size());
  return !a.empty() && a == b;
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
      absl::StatusOr<bool> runs = RunsImage(want, seen);
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
  // Whether the pod's newest container runs `want`; `seen` describes it.
  absl::StatusOr<bool> RunsImage(const ImageRef& want, std::string& seen) {
    KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriContainer> newest, Newest());
    if (!newest) {
      seen = "no container";
      return false;
    }
    seen = Describe(*newest);
    if (newest->state != CriContainerState::kRunning) return false;
    KMSFLEET_ASSIGN_OR_RETURN(CriContainer status, runtime_.ContainerStatus(newest->id));
    if (status.image_digest == want.digest) return true;
    // CRI-O answers the image id in image_ref (cri-o#7149), and a runtime
    // may put another repo digest of the image first: then the image id
    // decides, against the id of the image the runtime holds as `want`.
    const std::string running_id = ImageIdOf(status);
    if (!running_id.empty()) {
      KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriImage> held, runtime_.ImageStatus(want.Pinned()));
      if (held && SameImageId(held->id, running_id)) return true;
      seen += " running image id " + running_id + ", while " + want.Pinned() + " is " +
              (held ? "image id " + held->id : std::string("not held"));
      return false;
    }
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
