// The static pod as the executor's ServiceManager (static_pod_service.h),
// over a scripted runtime and a clock that only moves when slept on.
#include "kmsfleet/node/static_pod_service.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

const std::string kOld = "ghcr.io/dc-tec/bao-kms-provider@sha256:" + std::string(64, 'a');
const std::string kNew = "ghcr.io/dc-tec/bao-kms-provider@sha256:" + std::string(64, 'b');

CriContainer Container(const std::string& id, CriContainerState state, const std::string& image) {
  CriContainer c;
  c.id = id;
  c.state = state;
  c.image = image;
  c.image_ref = image;
  c.image_digest = image.substr(image.find('@') + 1);
  return c;
}

// Each ListContainers answers the next scripted list (the last repeats).
class ScriptedRuntime final : public ContainerRuntime {
 public:
  std::deque<std::vector<CriContainer>> lists;
  int list_calls = 0;
  absl::Status list_error;  // when set, every ListContainers answers it
  std::deque<absl::Status> list_errors;  // answered first, one per call

  std::map<std::string, CriImage> held;  // ImageStatus answers by pinned reference
  absl::Status image_status_error;       // when set, every ImageStatus answers it

  absl::StatusOr<CriImage> PullImage(std::string_view) override { return CriImage{}; }
  absl::StatusOr<std::optional<CriImage>> ImageStatus(std::string_view image) override {
    if (!image_status_error.ok()) return image_status_error;
    auto it = held.find(std::string(image));
    return it == held.end() ? std::optional<CriImage>() : std::optional<CriImage>(it->second);
  }
  absl::StatusOr<std::vector<CriContainer>> ListContainers(const PodContainerSelector&) override {
    ++list_calls;
    if (!list_error.ok()) return list_error;
    if (!list_errors.empty()) {
      absl::Status e = list_errors.front();
      list_errors.pop_front();
      return e;
    }
    std::vector<CriContainer> now = lists.front();
    if (lists.size() > 1) lists.pop_front();
    return now;
  }
  absl::StatusOr<CriContainer> ContainerStatus(std::string_view id) override {
    for (const CriContainer& c : lists.front()) {
      if (c.id == id) return c;
    }
    return absl::NotFoundError("no container");
  }
};

class StepClock final : public MonotonicClock {
 public:
  int64_t NowSteadyMillis() const override { return now_; }
  void SleepFor(std::chrono::milliseconds d) const override { now_ += d.count(); }

 private:
  mutable int64_t now_ = 0;
};

class StaticPodServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(kNew), 0600).ok());
  }
  static std::string Manifest(const std::string& image) {
    return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bao-kms-provider\nspec:\n"
           "  containers:\n    - name: bao-kms-provider\n      image: " + image + "\n";
  }
  std::unique_ptr<ServiceManager> Service(std::function<bool()> stopping = nullptr,
                                          std::chrono::milliseconds poll_interval =
                                              std::chrono::milliseconds(100)) {
    return NewStaticPodServiceManager(
        {.manifest_path = manifest_,
         .pod = {"bao-kms-provider-cp1", "kube-system", "bao-kms-provider"},
         .poll_interval = poll_interval,
         .stopping = std::move(stopping)},
        runtime_, clock_);
  }

  testing::TempDir dir_;
  std::string manifest_ = dir_.path() + "/bao-kms-provider.yaml";
  ScriptedRuntime runtime_;
  StepClock clock_;
};

TEST_F(StaticPodServiceTest, StartWaitsForTheNewestContainerToRunTheManifestsDigest) {
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kOld)},
                    {Container("c2", CriContainerState::kCreated, kNew),
                     Container("c1", CriContainerState::kExited, kOld)},
                    {Container("c2", CriContainerState::kRunning, kNew),
                     Container("c1", CriContainerState::kExited, kOld)}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(runtime_.list_calls, 3);
}

// CRI-O answers ContainerStatus with the image id (bare hex) in image_ref:
// the container runs the manifest's image when that is the id the runtime
// holds the image under, and not otherwise.
TEST_F(StaticPodServiceTest, StartAcceptsAnImageIdForTheManifestsImageAsCriOAnswersIt) {
  const std::string id_new(64, 'c'), id_old(64, 'd');
  runtime_.held[kNew].id = id_new;
  CriContainer running = Container("c2", CriContainerState::kRunning, kNew);
  running.image_ref = id_new;
  running.image_digest.clear();
  runtime_.lists = {{running}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(1)).ok());

  // containerd's form of the id, in the CRI image_id field, is the same id.
  running.image_ref = "sha256:" + id_new;
  running.image_id = "sha256:" + id_new;
  runtime_.lists = {{running}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(1)).ok());

  running.image_ref = id_old;
  running.image_id.clear();
  runtime_.lists = {{running}};
  absl::Status s = Service()->Start("pod", std::chrono::seconds(1));
  EXPECT_EQ(ReasonOf(s), reason::kPodNotReplaced);
  EXPECT_NE(s.message().find("running image id " + id_old), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("image id " + id_new), std::string::npos) << s.message();
}

// A manifest may name the image short (busybox@D) while containerd reports
// it qualified (docker.io/library/busybox@D): the same image, so running.
// The service compares digests and image ids, never names; the runtime is
// asked for the manifest's name, which it resolves as for the kubelet.
TEST_F(StaticPodServiceTest, AShortManifestNameRunsAsTheQualifiedNameTheRuntimeReports) {
  const std::string digest = "sha256:" + std::string(64, 'b');
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest("busybox:1.36@" + digest), 0600).ok());
  runtime_.lists = {{Container("c2", CriContainerState::kRunning,
                               "docker.io/library/busybox@" + digest)}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(1)).ok());
  EXPECT_EQ(clock_.NowSteadyMillis(), 0);

  // CRI-O's answer, the image id: judged against the image held by that name.
  const std::string id(64, 'c');
  runtime_.held["busybox@" + digest].id = id;
  CriContainer running = Container("c2", CriContainerState::kRunning, "busybox@" + digest);
  running.image_ref = id;
  running.image_digest.clear();
  runtime_.lists = {{running}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(1)).ok());
  EXPECT_EQ(clock_.NowSteadyMillis(), 0);
}

// The image id can be judged only against what the runtime holds: a
// runtime that cannot say is asked again until the deadline, and its error
// is the answer, never a pass.
TEST_F(StaticPodServiceTest, StartThatCannotLookUpTheImageIdEndsWithTheRuntimesError) {
  CriContainer running = Container("c2", CriContainerState::kRunning, kNew);
  running.image_ref = std::string(64, 'c');
  running.image_digest.clear();
  runtime_.lists = {{running}};
  runtime_.image_status_error = MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                          "connection refused");
  EXPECT_EQ(ReasonOf(Service()->Start("pod", std::chrono::seconds(1))), reason::kCriUnreachable);
  EXPECT_EQ(clock_.NowSteadyMillis(), 1000);
}

TEST_F(StaticPodServiceTest, StartGivesUpNamingTheImageAndWhatRuns) {
  runtime_.lists = {{Container("c1-0123456789abcdef", CriContainerState::kRunning, kOld)}};
  absl::Status s = Service()->Start("pod", std::chrono::seconds(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(s), reason::kPodNotReplaced);
  EXPECT_NE(s.message().find(kNew), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("kube-system/bao-kms-provider-cp1"), std::string::npos);
  EXPECT_NE(s.message().find("sha256:" + std::string(64, 'a')), std::string::npos);
  EXPECT_EQ(clock_.NowSteadyMillis(), 2000);  // it waited the whole timeout
}

TEST_F(StaticPodServiceTest, StartRefusesAManifestWithoutAPinnedImage) {
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest("ghcr.io/x/y:1.0"), 0600).ok());
  runtime_.lists = {{}};
  absl::Status s = Service()->Start("pod", std::chrono::seconds(1));
  EXPECT_EQ(ReasonOf(s), reason::kImageRefNotPinned);
  EXPECT_EQ(runtime_.list_calls, 0);
}

TEST_F(StaticPodServiceTest, StateIsTheNewestContainer) {
  runtime_.lists = {{}};
  absl::StatusOr<UnitState> none = Service()->State("pod");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->activity, UnitActivity::kStopped);
  for (auto [state, activity] :
       {std::pair{CriContainerState::kRunning, UnitActivity::kRunning},
        std::pair{CriContainerState::kCreated, UnitActivity::kStarting},
        std::pair{CriContainerState::kExited, UnitActivity::kFailed},
        std::pair{CriContainerState::kUnknown, UnitActivity::kUnknown}}) {
    runtime_.lists = {{Container("c9", state, kNew), Container("c1", CriContainerState::kRunning, kOld)}};
    absl::StatusOr<UnitState> s = Service()->State("pod");
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->activity, activity) << CriStateName(state);
    EXPECT_EQ(s->invocation_id, "c9");  // a replaced container reads as a restart
  }
}

// A runtime that cannot be reached is the error, not a stopped pod: the
// executor must fail its preflight there, before anything changes.
TEST_F(StaticPodServiceTest, AnUnreachableRuntimeIsTheErrorOfState) {
  runtime_.list_error = MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                  "no socket at /run/containerd/containerd.sock");
  EXPECT_EQ(ReasonOf(Service()->State("pod").status()), reason::kCriUnreachable);
  EXPECT_EQ(clock_.NowSteadyMillis(), 0);  // no waiting on a runtime that is not there
}

// Start runs after the manifest changed, where giving up restores the old
// one or ends RollbackFailed: a runtime failing a call while the kubelet
// replaces containers (a restart of containerd, a container removed
// between list and status) is asked again, up to the deadline.
TEST_F(StaticPodServiceTest, StartAsksARuntimeThatFailsACallAgain) {
  runtime_.list_errors = {MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                    "connection refused")};
  runtime_.lists = {{Container("c2", CriContainerState::kRunning, kNew)}};
  EXPECT_TRUE(Service()->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(runtime_.list_calls, 2);
}

TEST_F(StaticPodServiceTest, StartThatNeverReachesTheRuntimeEndsWithItsError) {
  runtime_.list_error = MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                  "no socket at /run/containerd/containerd.sock");
  EXPECT_EQ(ReasonOf(Service()->Start("pod", std::chrono::seconds(2))), reason::kCriUnreachable);
  EXPECT_EQ(clock_.NowSteadyMillis(), 2000);
}

TEST_F(StaticPodServiceTest, StopLeavesTheContainerToTheKubeletAndRestartIsRefused) {
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kOld)}};
  EXPECT_TRUE(Service()->Stop("pod", std::chrono::seconds(1)).ok());
  EXPECT_EQ(runtime_.list_calls, 1);  // it only notes which container runs
  EXPECT_EQ(Service()->Restart("pod", std::chrono::seconds(1)).code(),
            absl::StatusCode::kUnimplemented);
}

// Found in review: a restage of the same digest under a new tag changes
// the manifest, so the kubelet replaces the container, but the old one
// already runs the digest the new manifest names. Start took it for the
// new one before the kubelet had acted, and the verify that followed saw
// the replacement as a restart and rolled the swap back.
TEST_F(StaticPodServiceTest, StartNeverTakesTheContainerFromBeforeTheInstall) {
  const std::string digest = "sha256:" + std::string(64, 'b');
  const std::string before = "ghcr.io/dc-tec/bao-kms-provider:0.2.0@" + digest;
  const std::string after = "ghcr.io/dc-tec/bao-kms-provider:0.2.0-r2@" + digest;
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(before), 0600).ok());
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, before)},   // Stop's look
                    {Container("c1", CriContainerState::kRunning, before)},   // kubelet not yet
                    {Container("c2", CriContainerState::kCreated, after),
                     Container("c1", CriContainerState::kExited, before)},
                    {Container("c2", CriContainerState::kRunning, after),
                     Container("c1", CriContainerState::kExited, before)}};
  std::unique_ptr<ServiceManager> service = Service();
  ASSERT_TRUE(service->Stop("pod", std::chrono::seconds(1)).ok());
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(after), 0600).ok());  // the install

  EXPECT_TRUE(service->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(runtime_.list_calls, 4) << "Start returned before c2 ran";
  EXPECT_EQ(clock_.NowSteadyMillis(), 200);
}

// The other half: when nothing was installed (a rollback whose install
// never ran), the kubelet replaces nothing and the container Stop saw is
// the one to wait for.
TEST_F(StaticPodServiceTest, StartTakesTheCurrentContainerWhenTheManifestDidNotChange) {
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kNew)}};
  std::unique_ptr<ServiceManager> service = Service();
  ASSERT_TRUE(service->Stop("pod", std::chrono::seconds(1)).ok());
  EXPECT_TRUE(service->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(clock_.NowSteadyMillis(), 0);
}

// A restore after the kubelet never acted on the failed release's
// manifest: the container both Stops saw is the one from before the
// install, and the restored manifest describes it. Start takes it, rather
// than waiting for a replacement that never comes and ending the rollback
// RollbackFailed, even when both releases share a digest.
TEST_F(StaticPodServiceTest, ARestoreTakesTheContainerTheKubeletNeverReplaced) {
  const std::string digest = "sha256:" + std::string(64, 'b');
  const std::string before = "ghcr.io/dc-tec/bao-kms-provider:0.1.0@" + digest;
  const std::string after = "ghcr.io/dc-tec/bao-kms-provider:0.2.0@" + digest;
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(before), 0600).ok());
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, before)}};
  std::unique_ptr<ServiceManager> service = Service();
  ASSERT_TRUE(service->Stop("pod", std::chrono::seconds(1)).ok());         // the swap's
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(after), 0600).ok());     // its install
  EXPECT_EQ(ReasonOf(service->Start("pod", std::chrono::milliseconds(300))),
            reason::kPodNotReplaced);                                      // never acted on
  ASSERT_TRUE(service->Stop("pod", std::chrono::seconds(1)).ok());         // the rollback's
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(before), 0600).ok());    // the restore
  const int64_t restored_at = clock_.NowSteadyMillis();
  EXPECT_TRUE(service->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(clock_.NowSteadyMillis(), restored_at);
}

// Stop asks the runtime which container runs. Down, it notes the newest
// container seen last (a failed Stop would end a rollback with the failed
// release installed); only with none seen yet does it fail.
TEST_F(StaticPodServiceTest, StopWithTheRuntimeDownNotesTheContainerSeenLast) {
  std::unique_ptr<ServiceManager> service = Service();
  runtime_.list_error = absl::UnavailableError("cri down");
  EXPECT_EQ(service->Stop("pod", std::chrono::seconds(1)).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(clock_.NowSteadyMillis(), 1000) << "asked again until its timeout";
  runtime_.list_error = absl::OkStatus();
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kNew)}};
  ASSERT_TRUE(service->Start("pod", std::chrono::seconds(1)).ok());  // c1 seen
  runtime_.list_errors = {absl::UnavailableError("cri down")};
  ASSERT_TRUE(service->Stop("pod", std::chrono::seconds(1)).ok());
  ASSERT_TRUE(WriteFileAtomic(manifest_, Manifest(kOld), 0600).ok());  // an install
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kOld)},
                    {Container("c1", CriContainerState::kRunning, kOld)},
                    {Container("c2", CriContainerState::kRunning, kOld),
                     Container("c1", CriContainerState::kExited, kOld)}};
  const int64_t installed_at = clock_.NowSteadyMillis();
  EXPECT_TRUE(service->Start("pod", std::chrono::seconds(5)).ok());
  EXPECT_EQ(clock_.NowSteadyMillis(), installed_at + 200) << "c1 was taken for the new one";
}

// Found in review: a rollback recovered at boot reached Stop before the
// container runtime answered; with no container seen yet, Stop failed at
// once and the rollback ended RollbackFailed. It asks again until its
// timeout, as Start does.
TEST_F(StaticPodServiceTest, AStopWithNothingSeenWaitsForTheRuntimeToAnswer) {
  runtime_.list_errors = {MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                    "no socket at /run/containerd/containerd.sock"),
                          MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                    "server is not initialized yet")};
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kNew)}};
  std::unique_ptr<ServiceManager> service = Service();
  EXPECT_TRUE(service->Stop("pod", std::chrono::seconds(90)).ok());
  EXPECT_EQ(runtime_.list_calls, 3);
  EXPECT_EQ(clock_.NowSteadyMillis(), 200);
}

// Found in review of the wait above: a stop during it failed the step,
// which ended a recovered rollback RollbackFailed. Left to the next start,
// as Start's wait is.
TEST_F(StaticPodServiceTest, AStopThatWaitsForTheRuntimeEndsWhenTheAgentStops) {
  runtime_.list_error = MakeError(absl::StatusCode::kUnavailable, reason::kCriUnreachable,
                                  "server is not initialized yet");
  constexpr int64_t kStopAtMs = 250;
  std::unique_ptr<ServiceManager> service =
      Service([this] { return clock_.NowSteadyMillis() >= kStopAtMs; });
  absl::Status s = service->Stop("pod", std::chrono::seconds(90));
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(ReasonOf(s), reason::kAgentStopping) << s;
  EXPECT_NE(s.message().find("server is not initialized yet"), std::string::npos) << s;
  EXPECT_LE(clock_.NowSteadyMillis(), kStopAtMs + kStopCheckSlice.count());
}

// Found in review: Start slept through the agent's stop for as long as its
// timeout (unit_timeout_ms), so a SIGTERM during a swap waited it out. It
// now stops within a slice and leaves the operation to the next start, as
// a verify wait does (Cancelled AGENT_STOPPING; swap_runner.cc).
TEST_F(StaticPodServiceTest, StartStopsWaitingOnceTheAgentStops) {
  runtime_.lists = {{Container("c1", CriContainerState::kRunning, kOld)}};
  constexpr int64_t kStopAtMs = 250;
  std::unique_ptr<ServiceManager> service =
      Service([this] { return clock_.NowSteadyMillis() >= kStopAtMs; }, std::chrono::seconds(10));
  absl::Status s = service->Start("pod", std::chrono::seconds(90));
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(ReasonOf(s), reason::kAgentStopping) << s;
  EXPECT_NE(s.message().find(kNew), std::string::npos) << s.message();
  EXPECT_LE(clock_.NowSteadyMillis(), kStopAtMs + kStopCheckSlice.count());
  EXPECT_EQ(runtime_.list_calls, 1);
}

}  // namespace
}  // namespace kmsfleet
