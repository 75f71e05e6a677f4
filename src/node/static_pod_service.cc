// The static pod seen as the executor's ServiceManager
// (static_pod_service.h).
#include "kmsfleet/node/static_pod_service.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <utility>

#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/manifest_edit.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

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

// The live manifest as one read: the image Start waits for and the bytes'
// SHA-256, which tells whether it changed since Stop.
struct LiveManifest {
  ImageRef image;
  std::string sha256;
};

// What Stop saw, for the Start after it.
struct BeforeInstall {
  std::string container_id;     // "" when the pod had no container
  std::string manifest_sha256;  // "" when the manifest could not be read
};

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
    KMSFLEET_ASSIGN_OR_RETURN(LiveManifest live, ReadLive());
    const std::string replaced = ReplacedContainer(live);
    const int64_t deadline = steady_.NowSteadyMillis() + timeout.count();
    std::string seen = "no container";
    absl::Status last_error;
    for (;;) {
      absl::StatusOr<bool> runs = RunsImage(live.image, replaced, seen);
      if (runs.ok() && *runs) return absl::OkStatus();
      last_error = runs.status();
      const int64_t now = steady_.NowSteadyMillis();
      if (now >= deadline) break;
      if (!SleepUnlessStopping(std::min<int64_t>(o_.poll_interval.count(), deadline - now))) {
        return StoppedWaiting(live.image, seen);
      }
    }
    if (!last_error.ok()) return last_error;
    return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kPodNotReplaced,
                     "the kubelet did not run " + live.image.ToString() + " in " +
                         StaticPodName(o_.pod) + " within " +
                         std::to_string(timeout.count()) + " ms; newest: " + seen,
                     {{"pod", o_.pod.pod_namespace + "/" + o_.pod.pod_name},
                      {"image", live.image.ToString()}});
  }

  // Stops nothing (the kubelet does, once the manifest changes); notes
  // which container runs before it does. When the runtime fails this
  // call, the newest container seen last stands in (the preflight's
  // State, or the Start and verify of the swap a rollback undoes): a
  // failed Stop would end a rollback with the failed release installed.
  absl::Status Stop(const std::string&, std::chrono::milliseconds timeout) override {
    absl::StatusOr<std::optional<CriContainer>> newest = NewestForStop(timeout);
    absl::StatusOr<LiveManifest> live = ReadLive();
    std::lock_guard<std::mutex> lock(mu_);
    if (!newest.ok() && !last_seen_id_) return newest.status();
    const BeforeInstall now{*last_seen_id_, live.ok() ? live->sha256 : std::string()};
    before_ = now;
    // Still the container the last Stop noted, though the manifest changed
    // since: the kubelet never acted on that install, so the container runs
    // what the manifest before it named, which a restore puts back. Start
    // may take it then (else the rollback would wait for a replacement
    // that never comes, and end RollbackFailed).
    if (last_stop_ && !now.container_id.empty() &&
        now.container_id == last_stop_->container_id && !now.manifest_sha256.empty() &&
        now.manifest_sha256 != last_stop_->manifest_sha256) {
      before_->container_id.clear();
    }
    last_stop_ = now;
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
  // Whether the pod's newest container runs `want` and is not the
  // container `replaced` ("" when none is); `seen` describes it.
  absl::StatusOr<bool> RunsImage(const ImageRef& want, const std::string& replaced,
                                 std::string& seen) {
    KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriContainer> newest, Newest());
    if (!newest) {
      seen = "no container";
      return false;
    }
    seen = Describe(*newest);
    if (!replaced.empty() && newest->id == replaced) {
      seen += ", the one running before the manifest changed";
      return false;
    }
    return Runs(*newest, want, seen);
  }

  // Whether `container` is running `want`; `seen` gets why not.
  absl::StatusOr<bool> Runs(const CriContainer& container, const ImageRef& want,
                            std::string& seen) {
    if (container.state != CriContainerState::kRunning) return false;
    KMSFLEET_ASSIGN_OR_RETURN(CriContainer status, runtime_.ContainerStatus(container.id));
    if (status.image_digest == want.digest) return true;
    // CRI-O answers the image id in image_ref (cri-o#7149), and a runtime
    // may put another repo digest of the image first: then the image id
    // decides, against the id of the image the runtime holds as `want`.
    // Neither check compares names, so a short manifest name needs no
    // normalising here: the runtime is asked for the name as written and
    // resolves it as it did for the kubelet's pull.
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

  // The pod's newest container, also kept as the one seen last (Stop's
  // fallback).
  absl::StatusOr<std::optional<CriContainer>> Newest() {
    KMSFLEET_ASSIGN_OR_RETURN(std::vector<CriContainer> all, runtime_.ListContainers(o_.pod));
    std::optional<CriContainer> newest;
    if (!all.empty()) newest = all.front();
    std::lock_guard<std::mutex> lock(mu_);
    last_seen_id_ = newest ? newest->id : "";
    return newest;
  }

  // Newest, asked again until `timeout` while the runtime fails and no
  // container was ever seen (Stop has none to stand in). Found in review:
  // a rollback recovered at boot reached Stop before the container runtime
  // answered, and ended RollbackFailed with the right manifest in place.
  absl::StatusOr<std::optional<CriContainer>> NewestForStop(std::chrono::milliseconds timeout) {
    const int64_t deadline = steady_.NowSteadyMillis() + timeout.count();
    for (;;) {
      absl::StatusOr<std::optional<CriContainer>> newest = Newest();
      if (newest.ok() || SeenOne()) return newest;
      const int64_t now = steady_.NowSteadyMillis();
      if (now >= deadline) return newest;
      if (!SleepUnlessStopping(std::min<int64_t>(o_.poll_interval.count(), deadline - now))) {
        // As Start's wait: left to the next start, not a failed step
        // (found in review of this fix: a stop during the wait ended the
        // rollback RollbackFailed).
        return StoppedWhile("the container runtime to answer for " + StaticPodName(o_.pod) +
                                " (" + std::string(newest.status().message()) + ")",
                            "");
      }
    }
  }

  bool SeenOne() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_seen_id_.has_value();
  }

  absl::StatusOr<LiveManifest> ReadLive() const {
    KMSFLEET_ASSIGN_OR_RETURN(std::string text,
                              ReadBoundedFile(o_.manifest_path, kMaxManifestBytes));
    KMSFLEET_ASSIGN_OR_RETURN(
        std::string image, ObserveManifestImage(text, o_.manifest_path, o_.pod.container_name));
    KMSFLEET_ASSIGN_OR_RETURN(ImageRef ref, ParseImageRef(image, o_.manifest_path + " image"));
    return LiveManifest{std::move(ref), Sha256Hex(text)};
  }

  // The container Start must not take for the new one: Stop's, unless the
  // manifest is the one Stop saw (nothing was installed, so the kubelet
  // replaces nothing). Taken once: a later Start without a Stop is a
  // recovery's, which has nothing noted.
  std::string ReplacedContainer(const LiveManifest& live) {
    std::lock_guard<std::mutex> lock(mu_);
    std::optional<BeforeInstall> before = std::exchange(before_, std::nullopt);
    if (!before) return "";
    const bool unchanged =
        !before->manifest_sha256.empty() && before->manifest_sha256 == live.sha256;
    return unchanged ? "" : before->container_id;
  }

  // Sleeps `ms` of steady time in slices; false as soon as the agent is
  // stopping, so a stop waits a slice at most, not the whole timeout.
  bool SleepUnlessStopping(int64_t ms) const {
    for (;;) {
      if (o_.stopping && o_.stopping()) return false;
      if (ms <= 0) return true;
      const int64_t step = std::min<int64_t>(ms, kStopCheckSlice.count());
      steady_.SleepFor(std::chrono::milliseconds(step));
      ms -= step;
    }
  }

  absl::Status StoppedWaiting(const ImageRef& want, const std::string& seen) const {
    return StoppedWhile("the kubelet to run " + want.ToString() + " in " +
                            StaticPodName(o_.pod) + " (newest: " + seen + ")",
                        want.ToString());
  }

  // A wait the agent's stop ended: left to the next start (Cancelled
  // AGENT_STOPPING), never a failed step.
  // `image`: the one waited for, "" for none.
  absl::Status StoppedWhile(const std::string& waiting_for, const std::string& image) const {
    const std::string text = "kmsfleetd is stopping while it waits for " + waiting_for +
                             "; the next start waits again";
    const std::string pod = o_.pod.pod_namespace + "/" + o_.pod.pod_name;
    if (image.empty()) {
      return MakeError(absl::StatusCode::kCancelled, reason::kAgentStopping, text, {{"pod", pod}});
    }
    return MakeError(absl::StatusCode::kCancelled, reason::kAgentStopping, text,
                     {{"pod", pod}, {"image", image}});
  }

  const StaticPodServiceOptions o_;
  ContainerRuntime& runtime_;
  const MonotonicClock& steady_;
  std::mutex mu_;
  std::optional<BeforeInstall> before_;       // guarded by mu_; set by Stop
  std::optional<BeforeInstall> last_stop_;    // guarded by mu_; what Stop saw last
  std::optional<std::string> last_seen_id_;   // guarded by mu_; "" = no container
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
