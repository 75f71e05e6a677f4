// The executor over fakes of every seam (issue 8 §5): a simulated node
// whose service manager, installer, provider commands, probe, journals and
// clocks answer from one World, so each failure path runs in milliseconds
// without root or systemd. tests/integration/swap_test.cc runs the same
// executor against a real systemd.
#include "kmsfleet/node/executor.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/command_memo.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/journal_store.h"
#include "kmsfleet/node/key_id_hash.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

constexpr char kOld[] = "0.1.0";
constexpr char kNew[] = "0.2.0";
constexpr char kHash[] = "p3EAs1e_A8OHqbyfv1s-mC5fFFpIRgQs8TMsnvIzE8c";
constexpr char kSchema[] = "keyregistry.openbao-kms/v1alpha1";
constexpr int64_t kWindowMs = 2000;
constexpr int64_t kPollMs = 100;

absl::Status Boom(std::string_view reason, std::string message) {
  return MakeError(absl::StatusCode::kAborted, reason, message);
}

// The simulated node. Every fake reads and changes it under `mu`.
struct World {
  std::mutex mu;
  int64_t steady_ms = 0;
  int64_t wall_ms = 1'700'000'000'000;
  std::map<std::string, std::string> version_of_sha;  // release digest -> version
  std::map<std::string, std::string> sha_of_path;     // capture path -> digest
  std::string installed_sha;
  bool running = true;
  bool failed = false;
  int invocation = 1;
  std::vector<std::string> calls;  // "stop", "start", "install <version>"
  // The binaries `version` ran on, those it fails on, and a hook called
  // after each run that answered.
  std::vector<std::string> version_runs;
  std::vector<std::string> rotation_plan_runs;  // "installed" or "release"
  int doctor_runs = 0;
  std::set<std::string> version_fails;
  std::function<void(World&, const std::string& binary)> after_version;
  // Called once the installed release was copied as evidence.
  std::function<void()> after_capture;
  // Called as doctor answers.
  std::function<void()> after_doctor;
  // The binaries whose kept answers the executor learnt ahead.
  std::vector<std::string> learnt;
  // Behaviour of a version once started.
  std::set<std::string> exits_on_start, never_ready;
  std::map<std::string, std::string> reports_version;  // as build_info
  std::map<std::string, std::string> serves_hash;      // default kHash
  std::optional<double> decrypt_errors = 0.0;
  double aad_errors = 0;
  // Knobs for single failures.
  int stop_failures = 0, start_failures = 0, install_failures = 0;
  int observe_failures = 0;  // reads of the installed binary that fail (EIO)
  absl::Status cannot_install;  // what the installer's pre-check answers
  absl::Status doctor_verdict;
  // Called on every steady sleep, after the clock moved, and after every
  // successful start.
  std::function<void(World&)> on_sleep, on_start;
  // Called when the service manager is asked for the unit's state, before
  // `mu` is taken (so it may wait for other fakes).
  std::function<void(World&)> before_state;
  int states_answered = 0;  // the unit states the service manager answered
  // What rotation-plan reports from now on, when set (FakeCli's
  // rotation_state otherwise).
  std::optional<std::string> rotation_state_now;
  // Reads of the steady clock, and their count when rotation-plan last
  // answered (-1: not yet).
  int steady_reads = 0, steady_reads_at_rotation_plan = -1;
  // When > 0, a started provider binds its health listener this long
  // after its start: until then an observation finds no listener
  // (HEALTH_UNREACHABLE), and the probe can tell whether it listens. At 0
  // it is up at once and the probe cannot tell (nullopt).
  int64_t binds_after_start_ms = 0;
  int64_t started_at_ms = -1'000'000;  // the running provider bound long ago
  int listener_looks = 0;  // HealthListenerAccepts calls
  // What HealthListenerAccepts answers instead, when set: nullopt (the
  // probe cannot tell), or true (a listener that accepts while some read
  // still fails, as a /live on another address).
  std::optional<std::optional<bool>> listener_says;

  std::string Installed() const {
    auto it = version_of_sha.find(installed_sha);
    return it == version_of_sha.end() ? "" : it->second;
  }
};

class FakeServices final : public ServiceManager {
 public:
  explicit FakeServices(World& w) : w_(w) {}
  absl::Status Start(const std::string& unit, std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.calls.push_back("start");
    if (w_.start_failures > 0) {
      --w_.start_failures;
      return Boom(reason::kUnitFailed, "StartUnit " + unit + " ended with result \"failed\"");
    }
    ++w_.invocation;
    w_.started_at_ms = w_.steady_ms;
    w_.running = !w_.exits_on_start.contains(w_.Installed());
    w_.failed = !w_.running;
    if (w_.on_start) w_.on_start(w_);
    return absl::OkStatus();
  }
  absl::Status Stop(const std::string& unit, std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.calls.push_back("stop");
    if (w_.stop_failures > 0) {
      --w_.stop_failures;
      return Boom(reason::kTimeout, "StopUnit " + unit + " did not finish");
    }
    w_.running = false;
    w_.failed = false;
    return absl::OkStatus();
  }
  absl::Status Restart(const std::string& unit, std::chrono::milliseconds) override {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.calls.push_back("restart " + unit);
    return absl::OkStatus();
  }
  absl::StatusOr<UnitState> State(const std::string&) override {
    if (w_.before_state) w_.before_state(w_);
    std::lock_guard<std::mutex> lock(w_.mu);
    ++w_.states_answered;
    UnitState s;
    s.activity = w_.running  ? UnitActivity::kRunning
                 : w_.failed ? UnitActivity::kFailed
                             : UnitActivity::kStopped;
    s.detail = std::string(ActivityName(s.activity));
    s.invocation_id = "inv-" + std::to_string(w_.invocation);
    if (w_.failed) {
      s.exit_status = 1;
      s.last_output = "requires fresh bound state";
    }
    return s;
  }

 private:
  World& w_;
};

class FakeInstaller final : public Installer {
 public:
  explicit FakeInstaller(World& w) : w_(w) {}
  absl::StatusOr<std::string> Observe() override {
    std::lock_guard<std::mutex> lock(w_.mu);
    if (w_.observe_failures > 0) {
      --w_.observe_failures;
      return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                       "read " + ExecutorOptions().install_path + ": Input/output error");
    }
    return w_.installed_sha;
  }
  absl::StatusOr<std::string> Digest(const std::string& release) override {
    {
      std::lock_guard<std::mutex> lock(w_.mu);
      if (release == ExecutorOptions().install_path) return w_.installed_sha;
      if (auto it = w_.sha_of_path.find(release); it != w_.sha_of_path.end()) return it->second;
    }
    return Sha256File(release);  // a staged file
  }
  absl::StatusOr<CapturedRelease> Capture(const std::string& evidence_dir) override {
    CapturedRelease c;
    {
      std::lock_guard<std::mutex> lock(w_.mu);
      c = {evidence_dir + "/previous-binary", w_.installed_sha};
      w_.sha_of_path[c.path] = c.sha256;
    }
    // A file, as the real installer's copy is: a rollback looks for it.
    testing::WriteFile(c.path, "copy of " + c.sha256);
    if (w_.after_capture) w_.after_capture();
    return c;
  }
  absl::Status CheckCanInstall() override {
    std::lock_guard<std::mutex> lock(w_.mu);
    return w_.cannot_install;
  }
  using Installer::Install;
  absl::Status Install(const std::string&, const std::string& sha256,
                       const LiveCheck&) override {
    std::lock_guard<std::mutex> lock(w_.mu);
    if (w_.installed_sha == sha256) return absl::OkStatus();
    w_.calls.push_back("install " + w_.version_of_sha[sha256]);
    if (w_.install_failures > 0) {
      --w_.install_failures;
      return Boom(reason::kArtifactIo, "rename over /usr/bin/bao-kms-provider: EROFS");
    }
    w_.installed_sha = sha256;
    return absl::OkStatus();
  }

 private:
  World& w_;
};

class FakeCli final : public ProviderCli {
 public:
  std::string rotation_state = "active";  // set before the executor runs
  std::string state_checkpoint_status = "current";  // likewise
  // When set, doctor and rotation-plan each wait for the other to start
  // and fail when it does not come: run one after the other, both fail.
  bool rendezvous = false;
  FakeCli(World& w, FakeInstaller& installer) : w_(w), installer_(installer) {}
  absl::StatusOr<std::string> Version(const std::string& binary) override {
    absl::StatusOr<std::string> sha = installer_.Digest(binary);
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.version_runs.push_back(binary);
    if (w_.version_fails.contains(binary)) {
      return Boom(reason::kVersionCommandFailed, binary + " version: exit status 1");
    }
    if (!sha.ok()) return sha.status();
    std::string version = w_.version_of_sha[*sha];
    if (w_.after_version) w_.after_version(w_, binary);
    return version;
  }
  absl::StatusOr<PreflightResult> Preflight(const std::string& binary,
                                            const std::string& version,
                                            const std::string&) override {
    KMSFLEET_RETURN_IF_ERROR(Meet("doctor"));
    if (w_.after_doctor) w_.after_doctor();
    PreflightResult r;
    r.binary_version = version;
    std::lock_guard<std::mutex> lock(w_.mu);
    ++w_.doctor_runs;
    r.verdict = w_.doctor_verdict;
    (void)binary;
    return r;
  }
  absl::StatusOr<PreflightResult> PreflightImage(const std::string&) override {
    return absl::UnimplementedError("systemd mode runs no image");
  }
  absl::StatusOr<RotationReport> RotationPlan(const std::string& binary) override {
    KMSFLEET_RETURN_IF_ERROR(Meet("rotation-plan"));
    if (rotation_plan_fails) {
      return Boom(reason::kSubprocessFailed, binary + " rotation-plan: exit status 1");
    }
    const bool installed = binary == ExecutorOptions().install_path;
    RotationReport r;
    r.rotation_state = rotation_state;
    r.state_checkpoint_status = state_checkpoint_status;
    // As RunRotationPlan returns them: pass, or none from a release older
    // than the live Transit check.
    const bool predates = installed ? installed_predates_transit_check
                                    : release_predates_transit_check;
    r.transit_metadata_status = predates ? "" : "pass";
    std::lock_guard<std::mutex> lock(w_.mu);
    if (w_.rotation_state_now) r.rotation_state = *w_.rotation_state_now;
    w_.rotation_plan_runs.push_back(installed ? "installed" : "release");
    w_.steady_reads_at_rotation_plan = w_.steady_reads;
    return r;
  }
  bool installed_predates_transit_check = false, release_predates_transit_check = false;
  bool rotation_plan_fails = false;
  void LearnKeptAnswers(const std::string& binary) override {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.learnt.push_back(binary);
  }

 private:
  absl::Status Meet(const std::string& who) {
    if (!rendezvous) return absl::OkStatus();
    std::unique_lock<std::mutex> lock(meet_mu_);
    ++arrived_;
    meet_cv_.notify_all();
    if (meet_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return arrived_ >= 2; })) {
      return absl::OkStatus();
    }
    return absl::DeadlineExceededError(who + " ran alone");
  }

  std::mutex meet_mu_;
  std::condition_variable meet_cv_;
  int arrived_ = 0;
  World& w_;
  FakeInstaller& installer_;
};

class FakeProbe final : public ProviderProbe {
 public:
  explicit FakeProbe(World& w) : w_(w) {}
  v1::NodeState Observe() override {
    std::lock_guard<std::mutex> lock(w_.mu);
    v1::NodeState s;
    const std::string version = w_.Installed();
    if (!w_.running || w_.never_ready.contains(version)) return s;
    if (!Bound()) {
      v1::Condition* c = s.add_conditions();
      c->set_reason(reason::kHealthUnreachable);
      c->set_message("connect: Connection refused");
      return s;
    }
    s.set_ready(true);
    auto reported = w_.reports_version.find(version);
    s.set_provider_version(reported == w_.reports_version.end() ? version
                                                                 : reported->second);
    auto hash = w_.serves_hash.find(version);
    std::string h = hash == w_.serves_hash.end() ? kHash : hash->second;
    s.set_key_id_hash_metric(h);
    s.set_key_id_hash_socket(h);
    s.set_kms_healthz("ok");
    if (w_.decrypt_errors) s.set_decrypt_key_id_errors_total(*w_.decrypt_errors);
    s.set_aad_validation_errors_total(w_.aad_errors);
    return s;
  }
  std::optional<bool> HealthListenerAccepts() override {
    std::lock_guard<std::mutex> lock(w_.mu);
    ++w_.listener_looks;
    if (w_.listener_says) return *w_.listener_says;
    if (w_.binds_after_start_ms == 0) return std::nullopt;
    return w_.running && Bound();
  }

 private:
  bool Bound() const { return w_.steady_ms >= w_.started_at_ms + w_.binds_after_start_ms; }

  World& w_;
};

class FakeJournals final : public JournalStore {
 public:
  absl::Status Save(const SwapJournal& j) override {
    std::lock_guard<std::mutex> lock(mu_);
    const bool ready_in_window = j.phase == SwapPhase::kVerifying && j.target_ready_seen;
    if (j.open && (failing_phases_.contains(j.phase) || (failing_ready_ && ready_in_window))) {
      ++failed_phase_writes_;
      return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                       "write state/journal/" + j.operation_id + ".json.tmp: " +
                           "No space left on device");
    }
    if (!j.open) {
      ++close_attempts_;
      if (disk_full_) {
        // As WriteFileAtomic words it: a new temp file on every attempt.
        return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                         "write state/journal/" + j.operation_id + ".json.tmp." +
                             std::to_string(close_attempts_) +
                             ": No space left on device");
      }
    }
    records_[j.operation_id] = j;
    if (on_save) on_save(j);
    if (landing_but_failing_) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                       "fsync state/journal: Input/output error");
    }
    return absl::OkStatus();
  }
  // While set, every write lands but reports failure, as one whose rename
  // succeeded and whose directory fsync then failed.
  void LandButFail(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    landing_but_failing_ = on;
  }
  // Called after each write, with the store's lock held: it must not call
  // back into the store.
  std::function<void(const SwapJournal&)> on_save;
  // What a scan reports it could not read, as the file store words it.
  void SetUnreadable(std::vector<std::string> unreadable) {
    std::lock_guard<std::mutex> lock(mu_);
    unreadable_ = std::move(unreadable);
  }
  // While full, every write of a closed journal fails (ENOSPC).
  void SetDiskFull(bool full) {
    std::lock_guard<std::mutex> lock(mu_);
    disk_full_ = full;
  }
  int close_attempts() {
    std::lock_guard<std::mutex> lock(mu_);
    return close_attempts_;
  }
  // While set, every write of an open journal entering one of `phases`
  // fails (ENOSPC).
  void FailPhases(std::set<SwapPhase> phases) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_phases_ = std::move(phases);
  }
  // While set, every write in the window that says the target was seen
  // ready fails (ENOSPC): the write made the moment it is seen.
  void FailReadyWrites(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    failing_ready_ = on;
  }
  int failed_phase_writes() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_phase_writes_;
  }
  absl::StatusOr<SwapJournal> Load(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = records_.find(id);
    if (it == records_.end()) {
      return MakeError(absl::StatusCode::kNotFound, reason::kOperationNotFound, "no " + id);
    }
    return it->second;
  }
  absl::Status Remove(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    records_.erase(id);
    return absl::OkStatus();
  }
  Scan LoadAll() override {
    std::lock_guard<std::mutex> lock(mu_);
    Scan scan;
    for (const auto& [id, j] : records_) scan.journals.push_back(j);
    scan.unreadable = unreadable_;
    return scan;
  }

 private:
  std::mutex mu_;
  std::map<std::string, SwapJournal> records_;
  bool disk_full_ = false;
  std::vector<std::string> unreadable_;
  int close_attempts_ = 0;
  std::set<SwapPhase> failing_phases_;
  bool failing_ready_ = false;
  int failed_phase_writes_ = 0;
  bool landing_but_failing_ = false;
};

class FakeWall final : public Clock {
 public:
  explicit FakeWall(World& w) : w_(w) {}
  int64_t NowUnixMillis() const override {
    std::lock_guard<std::mutex> lock(w_.mu);
    return w_.wall_ms;
  }

 private:
  World& w_;
};

// A preflight also pauses on it while the files its checks read settle
// (Executor::kMaxSettleWaitMs), judged on the real coarse clock unless the
// test sets files_now_unix_ms: a test that counts steady time calls
// SettleFiles first.
class FakeSteady final : public MonotonicClock {
 public:
  explicit FakeSteady(World& w) : w_(w) {}
  int64_t NowSteadyMillis() const override {
    std::lock_guard<std::mutex> lock(w_.mu);
    ++w_.steady_reads;
    return w_.steady_ms;
  }
  void SleepFor(std::chrono::milliseconds d) const override {
    std::function<void(World&)> hook;
    {
      std::lock_guard<std::mutex> lock(w_.mu);
      w_.steady_ms += d.count();
      w_.wall_ms += d.count();
      hook = w_.on_sleep;
    }
    if (hook) {
      std::lock_guard<std::mutex> lock(w_.mu);
      hook(w_);
    }
  }

 private:
  World& w_;
};

std::string Registry(int removed, const std::string& schema = kSchema,
                     const std::string& active_key_id = "") {
  std::string snaps = "{\"state\":\"active\"}";
  for (int i = 0; i < removed; ++i) snaps += ",{\"state\":\"removed\"}";
  const std::string active =
      active_key_id.empty() ? "" : "\"activeKeyId\":\"" + active_key_id + "\",";
  return "{\"schemaVersion\":\"" + schema + "\"," + active + "\"snapshots\":[" + snaps + "]}";
}

// A registry whose active snapshot is at Transit version `version`.
std::string RegistryAtTransitVersion(int version) {
  return "{\"schemaVersion\":\"" + std::string(kSchema) +
         "\",\"snapshots\":[{\"state\":\"active\",\"transitVersion\":" +
         std::to_string(version) + "}]}";
}

// Once rotation-plan has answered and the executor has read the clock
// after it: moves the clock on by `later_ms` and has every later report
// say a rotation is pending. Waits for that moment 5 s at most.
void StartRotationOnceRotationPlanAnswered(World& w, int64_t later_ms) {
  for (int i = 0; i < 5000; ++i) {
    {
      std::lock_guard<std::mutex> lock(w.mu);
      if (w.steady_reads_at_rotation_plan >= 0 &&
          w.steady_reads > w.steady_reads_at_rotation_plan) {
        w.steady_ms += later_ms;
        w.rotation_state_now = "pending";
        return;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest()
      : services_(w_), installer_(w_), cli_(w_, installer_), probe_(w_), wall_(w_),
        steady_(w_) {
    options_.node = "cp-1";
    options_.state_dir = dir_.File("state");
    options_.registry_path = dir_.File("key-registry.json");
    options_.artifacts.state_dir = options_.state_dir;
    options_.unit_timeout = std::chrono::milliseconds(1000);
    options_.ready_timeout = std::chrono::milliseconds(10000);
    options_.poll_interval = std::chrono::milliseconds(kPollMs);
    options_.default_stabilization_ms = kWindowMs;
    old_sha_ = std::string(64, 'o');
    w_.version_of_sha[old_sha_] = kOld;
    w_.installed_sha = old_sha_;
    testing::WriteFile(options_.registry_path, Registry(0));
    testing::WriteFile(options_.registry_path + ".checkpoint", Registry(0));
    new_sha_ = StageRelease(kNew);
  }

  // Swaps to kNew, which must end Stable, having run doctor `runs` times
  // in all (preflights included).
  void SwapExpectingDoctorRuns(int runs) {
    SwapJournal j = SwapTo(kNew);
    EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_EQ(w_.doctor_runs, runs);
  }

  // Waits until every file written so far is older than a timestamp tick
  // (CommandMemo::kSettledMs): a preflight keeps its checks only then.
  // (Longer than that by a kernel tick, 10 ms at most: files are stamped
  // from the coarse clock, which the age is judged by.)
  static void SettleFiles() {
    std::this_thread::sleep_for(std::chrono::milliseconds(CommandMemo::kSettledMs + 15));
  }

  // `path`'s status-change time, in milliseconds since the epoch.
  static int64_t ChangedAtMs(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return int64_t{st.st_ctim.tv_sec} * 1000 + st.st_ctim.tv_nsec / 1000000;
  }

  // Writes the key registry after every other file has settled, and has
  // the preflight judge the files by a clock standing still `offset_ms`
  // after the registry's stamp (before it, when negative).
  void WriteRegistryUnderStillFileClock(int64_t offset_ms) {
    SettleFiles();
    testing::WriteFile(options_.registry_path, Registry(0) + "\n");
    const std::string registry = options_.registry_path;
    options_.files_now_unix_ms = [registry, offset_ms] {
      return ChangedAtMs(registry) + offset_ms;
    };
  }

  int64_t SteadyMs() {
    std::lock_guard<std::mutex> lock(w_.mu);
    return w_.steady_ms;
  }

  // Puts a staged release of `version` where FindStaged looks.
  std::string StageRelease(const std::string& version) {
    std::string dir = options_.state_dir + "/artifacts/" + version;
    std::filesystem::create_directories(dir);
    std::string body = "release " + version;
    testing::WriteFile(dir + "/bao-kms-provider", body);
    std::string sha = Sha256Hex(body);
    testing::WriteFile(dir + "/staged.sha256", sha + "  bao-kms-provider\n");
    w_.version_of_sha[sha] = version;
    return sha;
  }

  Executor& executor() {
    if (!executor_) {
      executor_ = std::make_unique<Executor>(
          options_, ExecutorSeams{probe_, services_, installer_, cli_, journals_, wall_,
                                  steady_});
      // A single-node control plane: unfenced commands are admitted.
      executor_->SetFenceCheck(NoElectionFenceCheck(options_.node, /*standalone=*/true));
    }
    return *executor_;
  }

  // Waits (in real time, briefly: fake sleeps do not block) for `id` to
  // close and the worker to finish (it closes the journal, then goes idle).
  // Runs `call` on another thread; aborts the whole run if it hangs on
  // `what` (the detached thread still uses this fixture, so the test
  // cannot just fail).
  void RunOrAbort(const char* what, std::function<void()> call) {
    auto done = std::make_shared<std::promise<void>>();
    std::future<void> finished = done->get_future();
    std::thread([call = std::move(call), done] {
      call();
      done->set_value();
    }).detach();
    if (finished.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      std::fprintf(stderr, "the executor hung on %s\n", what);
      std::abort();
    }
  }
  void DestroyExecutorOrAbort(const char* what) {
    RunOrAbort(what, [this] { executor_.reset(); });
  }
  void StopExecutorOrAbort(const char* what) {
    RunOrAbort(what, [this] { executor_->Stop(); });
  }

  // Starts a swap whose stabilisation window never ends (the fake clock
  // stands still once the new release has started) and waits until it is
  // in it. ThawClock lets time move again.
  void SwapIntoAnEndlessWindow() {
    int starts = 0;
    w_.on_start = [this, starts](World& w) mutable {
      if (++starts == 1) frozen_at_ = w.steady_ms;
    };
    w_.on_sleep = [this](World& w) {
      if (frozen_at_) w.steady_ms = *frozen_at_;
    };
    ASSERT_TRUE(executor().Swap({kNew, {"", kWindowMs, "op-1", std::nullopt}, ""}).ok());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < deadline) {
      absl::StatusOr<SwapJournal> j = journals_.Load("op-1");
      if (j.ok() && j->phase == SwapPhase::kVerifying) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ASSERT_EQ(journals_.Load("op-1")->phase, SwapPhase::kVerifying);
  }
  void ThawClock() {
    std::lock_guard<std::mutex> lock(w_.mu);
    frozen_at_.reset();
  }

  SwapJournal WaitClosed(const std::string& id) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      absl::StatusOr<SwapJournal> j =
          executor().WaitForUpdate(id, 1000, std::chrono::milliseconds(5));
      if (j.ok() && !j->open && !executor().Busy()) return *j;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ADD_FAILURE() << "operation " << id << " did not close";
    return {};
  }

  // Waits (in real time) until the executor tried to write a closed
  // journal at least `n` times.
  bool WaitForCloseAttempts(int n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (journals_.close_attempts() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  // The registry names `key_id` active and both releases serve it, as a
  // provider does: its metric's hash is that of the registry's active key
  // (a swap is refused before its stop otherwise, ACTIVE_KEY_NOT_EXPECTED).
  void RegistryNamesServedKey(const std::string& key_id) {
    testing::WriteFile(options_.registry_path, Registry(0, kSchema, key_id));
    w_.serves_hash[kOld] = w_.serves_hash[kNew] = KeyIdHash(key_id);
  }

  // An open journal of a swap to kNew left at `phase`, as a crash leaves it.
  void SaveOpenSwap(const std::string& id, SwapPhase phase) {
    SwapJournal j;
    j.operation_id = id;
    j.kind = "swap";
    j.target_version = kNew;
    j.phase = phase;
    j.open = true;
    ASSERT_TRUE(journals_.Save(j).ok());
  }

  // Swaps to kNew over a registry naming obk2.first, then rolls that swap
  // back (op-2) with `at_capture` written over the registry as the
  // rollback's capture begins. Returns op-2 once closed; it must have
  // ended before the stop, the provider untouched.
  SwapJournal RollBackWithRegistryAtCapture(const std::string& at_capture) {
    RegistryNamesServedKey("obk2.first");
    EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
    const std::string registry = options_.registry_path;
    executor().SetStepHook([registry, at_capture](std::string_view point) {
      if (point == "capturing") testing::WriteFile(registry, at_capture);
    });
    const size_t calls = Calls().size();
    EXPECT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
    SwapJournal back = WaitClosed("op-2");
    EXPECT_EQ(back.phase, SwapPhase::kPreflighted) << back.failure_message;
    EXPECT_EQ(Calls().size(), calls) << "the provider was touched";
    return back;
  }

  SwapJournal SwapTo(const std::string& version, int64_t stabilization_ms = 0,
                     const std::string& id = "op-1") {
    absl::StatusOr<SwapJournal> started =
        executor().Swap({version, {"", stabilization_ms, id, std::nullopt}, ""});
    EXPECT_TRUE(started.ok()) << started.status();
    return WaitClosed(id);
  }

  std::string Installed() {
    std::lock_guard<std::mutex> lock(w_.mu);
    return w_.Installed();
  }

  std::vector<std::string> Calls() {
    std::lock_guard<std::mutex> lock(w_.mu);
    return w_.calls;
  }

  void ExpectOldServing() {
    EXPECT_EQ(Installed(), kOld);
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_TRUE(w_.running);
  }
  // A swap refused by its preflight: it ends there for `why`, and the
  // provider was never touched.
  SwapJournal ExpectRefusedAtPreflight(std::string_view why) {
    SwapJournal j = SwapTo(kNew);
    EXPECT_EQ(j.phase, SwapPhase::kPreflighted);
    EXPECT_EQ(j.failure_reason, why) << j.failure_message;
    EXPECT_TRUE(Calls().empty());
    return j;
  }

  World w_;
  // Where SwapIntoAnEndlessWindow holds the fake clock; guarded by w_.mu.
  std::optional<int64_t> frozen_at_;
  testing::TempDir dir_;
  FakeServices services_;
  FakeInstaller installer_;
  FakeCli cli_;
  FakeProbe probe_;
  FakeJournals journals_;
  FakeWall wall_;
  FakeSteady steady_;
  ExecutorOptions options_;
  std::string old_sha_, new_sha_;
  std::unique_ptr<Executor> executor_;
};

// The installed binary's `version` runs beside doctor and rotation-plan,
// not alone after them: the capture takes it, since its copy has the
// digest the installed file had when `version` ran.
TEST_F(ExecutorTest, CaptureTakesTheVersionRunBesideThePreflight) {
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(j.previous_version, kOld);
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.version_runs, std::vector<std::string>{options_.install_path});
}

// Found in review: a registry pair copied before the checks (with an
// early copy of the binary) missed a record the provider removed
// meanwhile, from the evidence a rollback is judged by. It is read at the
// capture step, just before the stop.
TEST_F(ExecutorTest, TheRegistryIsCapturedAtTheCaptureStep) {
  // The provider removes a record while doctor runs.
  w_.after_doctor = [this] { testing::WriteFile(options_.registry_path, Registry(1)); };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(j.registry_removed_records, 1);
  EXPECT_EQ(j.registry_sha256, Sha256Hex(Registry(1)));
}

// A swap refused by its checks ends with no capture, in its journal or
// on disk.
TEST_F(ExecutorTest, ASwapRefusedByItsChecksRecordsNoCapture) {
  cli_.rotation_state = "pending";
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kPreflighted);
  EXPECT_EQ(j.failure_reason, reason::kRotationInProgress);
  EXPECT_TRUE(j.previous_binary.empty());
  EXPECT_TRUE(j.evidence_dir.empty());
  EXPECT_FALSE(std::filesystem::exists(options_.state_dir + "/operations/" + j.operation_id));
  EXPECT_TRUE(Calls().empty()) << ::testing::PrintToString(Calls());
}

// At start, with nothing to recover, the agent learns its installed
// release's `version` and `config` answers off any command's path.
TEST_F(ExecutorTest, TheInstalledReleaseIsLearntAtStart) {
  executor().StartRecovery();
  executor().Stop();
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.learnt, std::vector<std::string>{options_.install_path});
}

// A plan's preflight asks the installed binary's `version` too, beside
// its checks, so that the swaps after it find the answer in the memo.
TEST_F(ExecutorTest, PlanPreflightAsksTheInstalledVersion) {
  absl::StatusOr<PreflightOutcome> pre = executor().Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(pre->installed_version, kOld);
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.version_runs, std::vector<std::string>{options_.install_path});
}

// That `version` failing is not the preflight's failure: the checks stand,
// and the swap's capture will ask again and report it.
TEST_F(ExecutorTest, PlanPreflightPassesWhenTheInstalledVersionFails) {
  w_.version_fails.insert(options_.install_path);
  absl::StatusOr<PreflightOutcome> pre = executor().Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_TRUE(pre->doctor.verdict.ok()) << pre->doctor.verdict;
  EXPECT_TRUE(pre->rotation_plan.ok()) << pre->rotation_plan;
  EXPECT_EQ(pre->installed_version, "");
}

// Replaced after its `version` ran, the installed binary is not what the
// capture copied: `version` runs again on the copy, the release a
// rollback would restore.
TEST_F(ExecutorTest, CaptureRunsVersionAgainWhenTheInstalledBinaryChanged) {
  const std::string other_sha(64, 'x');
  w_.version_of_sha[other_sha] = "0.1.5";
  w_.after_version = [&](World& w, const std::string& binary) {
    if (binary == options_.install_path) w.installed_sha = other_sha;
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(j.previous_version, "0.1.5");
  EXPECT_EQ(j.previous_sha256, other_sha);
  std::lock_guard<std::mutex> lock(w_.mu);
  ASSERT_EQ(w_.version_runs.size(), 2u);
  EXPECT_EQ(w_.version_runs[1], j.previous_binary);
}

// The run beside the checks failed: that is not the swap's failure, the
// capture runs `version` on its copy and records what that says.
TEST_F(ExecutorTest, CaptureRunsVersionAgainWhenTheRunBesideTheChecksFailed) {
  w_.version_fails.insert(options_.install_path);
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(j.previous_version, kOld);
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.version_runs, (std::vector<std::string>{options_.install_path, j.previous_binary}));
}

TEST_F(ExecutorTest, HappySwapThenRollbackOfIt) {
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(j.previous_version, kOld);
  EXPECT_EQ(j.expected_key_id_hash, kHash);
  EXPECT_EQ(Installed(), kNew);
  EXPECT_EQ(Calls(), (std::vector<std::string>{"stop", "install 0.2.0", "start"}));
  // Evidence before and after: the registry did not change.
  EXPECT_EQ(j.registry_sha256, Sha256Hex(Registry(0)));
  EXPECT_EQ(j.registry_sha256_after, j.registry_sha256);
  EXPECT_EQ(j.checkpoint_sha256_after, j.checkpoint_sha256);
  EXPECT_EQ(j.registry_schema, kSchema);
  EXPECT_GE(w_.steady_ms, kWindowMs);

  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-2");
  EXPECT_EQ(back.phase, SwapPhase::kStable) << back.failure_message;
  EXPECT_EQ(back.of_operation_id, "op-1") << "the rollback names the swap it undid";
  ExpectOldServing();
}

// Found in review: a rollback checked what is installed only when it was
// admitted; a binary replaced by hand during its doctor was captured and
// the older release installed over it. Refused before the stop now.
TEST_F(ExecutorTest, ARollbackKeepsABinaryReplacedByHandDuringItsChecks) {
  SwapJournal j = SwapTo(kNew);
  ASSERT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  const std::string by_hand = std::string(64, 'e');
  w_.after_doctor = [this, by_hand] {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.installed_sha = by_hand;
  };
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-2");
  EXPECT_NE(back.phase, SwapPhase::kStable);
  EXPECT_EQ(back.failure_reason, reason::kNotRollbackable) << back.failure_message;
  EXPECT_THAT(back.failure_message, HasSubstr(ExecutorOptions().install_path));
  EXPECT_EQ(back.replaces_sha256, j.target_sha256);
  EXPECT_EQ(w_.installed_sha, by_hand) << "the change by hand was installed over";
  EXPECT_EQ(Calls(), (std::vector<std::string>{"stop", "install 0.2.0", "start"}))
      << "the provider was touched";
}

// Found in review: every swap copies the installed binary into its
// evidence in the state directory, with no regard for what was left free
// there. A swap's copy keeps the reserve and is refused before the stop;
// a rollback, the way back, is not refused for it.
TEST_F(ExecutorTest, ASwapsCaptureKeepsTheFreeSpaceReserveAndARollbacksDoesNot) {
  options_.artifacts.free_space_reserve_bytes = uint64_t{1} << 62;
  SwapJournal refused = ExpectRefusedAtPreflight(reason::kArtifactIo);
  EXPECT_THAT(refused.failure_message, HasSubstr("kept free"));
  ExpectOldServing();
  options_.artifacts.free_space_reserve_bytes = kStateFreeSpaceReserveBytes;
  executor_.reset();
  SwapJournal up = SwapTo(kNew, 0, "op-up");
  ASSERT_EQ(up.phase, SwapPhase::kStable) << up.failure_message;
  options_.artifacts.free_space_reserve_bytes = uint64_t{1} << 62;
  executor_.reset();
  ASSERT_TRUE(executor().Rollback({"op-up", {"", 0, "op-back", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-back");
  EXPECT_EQ(back.phase, SwapPhase::kStable) << back.failure_message;
  ExpectOldServing();
}

// Found in review: the hand-off ordered two operations under one fence
// (here none, an operator's) by the wall clock, so a step back between
// them hid a RollbackFailed behind the earlier Stable. The executor
// numbers operations as it admits them, across restarts.
TEST_F(ExecutorTest, AClockStepBackHidesNoRollbackFailedFromTheHandOff) {
  SwapJournal up = SwapTo(kNew, 0, "op-up");
  ASSERT_EQ(up.phase, SwapPhase::kStable) << up.failure_message;
  executor_.reset();  // a restart: the numbering goes on from the journals
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.wall_ms -= 3600 * 1000;
    w_.exits_on_start = {kOld, kNew};  // the rollback's start, then its restore's
  }
  ASSERT_TRUE(executor().Rollback({"op-up", {"", 0, "op-back", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-back");
  ASSERT_EQ(back.phase, SwapPhase::kRollbackFailed) << back.failure_message;
  EXPECT_LT(back.started_unix_ms, up.started_unix_ms);
  EXPECT_GT(back.sequence, up.sequence);
  EXPECT_GT(up.sequence, 0u);
  EXPECT_EQ(executor().HandoffOutcome(v1::Fence()).outcome, v1::HANDOFF_ROLLBACK_FAILED);
}

// Found in review: a swap installed whatever was staged when it started.
TEST_F(ExecutorTest, ASwapExpectingOtherStagedBytesIsRefusedBeforeAnythingIsRecorded) {
  const std::string other(64, 'e');
  absl::StatusOr<SwapJournal> refused =
      executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, other});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kStagedArtifactChanged);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(new_sha_));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(other));
  EXPECT_FALSE(journals_.Load("op-1").ok());
  EXPECT_EQ(Installed(), kOld);
  EXPECT_FALSE(executor().Busy());

  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-2", std::nullopt}, new_sha_}).ok());
  EXPECT_EQ(WaitClosed("op-2").phase, SwapPhase::kStable);
  EXPECT_EQ(Installed(), kNew);
}

// Found in review: `rollback --of A` was admitted whatever was installed
// since A, so it could skip a later swap (or, as here, undo A twice: one
// more stop and start of a serving provider for nothing).
TEST_F(ExecutorTest, ARollbackOfASwapWhoseReleaseWasReplacedSinceIsRefused) {
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  ASSERT_EQ(WaitClosed("op-2").phase, SwapPhase::kStable);
  const size_t calls = Calls().size();
  absl::StatusOr<SwapJournal> again = executor().Rollback({"op-1", {"", 0, "op-3", std::nullopt}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(ReasonOf(again.status()), reason::kNotRollbackable);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("op-1"));
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("replaced it"));
  EXPECT_EQ(Calls().size(), calls) << "nothing was stopped";
  EXPECT_FALSE(executor().Busy());
  ExpectOldServing();
}

// Found in review: a plan's walk-back undid a node's last swap, which
// after a mend by hand had gone from the newer release to itself, and
// reinstalled the newer release. The plan sends the version a rollback
// must reinstall: another is refused before anything is done.
TEST_F(ExecutorTest, ARollbackThatWouldNotReinstallTheExpectedVersionIsRefused) {
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  const size_t calls = Calls().size();
  absl::StatusOr<SwapJournal> refused =
      executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}, "0.0.9"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kRollbackTargetMismatch);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr(std::string("replaced ") + kOld + ", not 0.0.9"));
  EXPECT_EQ(Calls().size(), calls) << "nothing was stopped";
  EXPECT_FALSE(executor().Busy());
  EXPECT_EQ(Installed(), kNew);
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-3", std::nullopt}, kOld}).ok());
  EXPECT_EQ(WaitClosed("op-3").phase, SwapPhase::kStable);
  ExpectOldServing();
}

// Found in review: every swap's copy of the binary it replaced (tens of
// MB) stayed in the state directory for ever. Each end keeps the copies
// of `rollback_steps` rollbacks in a row from what is installed; the
// journals and the registry copies stay.
TEST_F(ExecutorTest, AnOperationsEndKeepsOnlyTheCopiesOfTheRollbackChain) {
  options_.rollback_steps = 2;
  StageRelease("0.3.0");
  StageRelease("0.4.0");
  std::vector<SwapJournal> ops = {SwapTo(kNew, 0, "op-1"), SwapTo("0.3.0", 0, "op-2"),
                                  SwapTo("0.4.0", 0, "op-3")};
  for (const SwapJournal& j : ops) ASSERT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_FALSE(std::filesystem::exists(ops[0].previous_binary)) << "three rollbacks back";
  EXPECT_TRUE(std::filesystem::exists(ops[1].previous_binary));
  EXPECT_TRUE(std::filesystem::exists(ops[2].previous_binary));
  for (const SwapJournal& j : ops) {
    EXPECT_TRUE(std::filesystem::exists(j.evidence_dir + "/key-registry.json"));
    EXPECT_TRUE(journals_.Load(j.operation_id).ok());
  }
  // Two rollbacks in a row work, the rollback's own copy costing none.
  ASSERT_TRUE(executor().Rollback({"op-3", {"", 0, "op-4", std::nullopt}}).ok());
  ASSERT_EQ(WaitClosed("op-4").phase, SwapPhase::kStable);
  ASSERT_TRUE(executor().Rollback({"op-2", {"", 0, "op-5", std::nullopt}}).ok());
  ASSERT_EQ(WaitClosed("op-5").phase, SwapPhase::kStable);
  EXPECT_EQ(Installed(), kNew);
  // The third would need op-1's copy: refused before anything is stopped.
  const size_t calls = Calls().size();
  absl::StatusOr<SwapJournal> refused =
      executor().Rollback({"op-1", {"", 0, "op-6", std::nullopt}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ReasonOf(refused.status()), reason::kNotRollbackable);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr(ops[0].previous_binary));
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("is gone"));
  EXPECT_EQ(Calls().size(), calls) << "nothing was stopped";
  EXPECT_FALSE(journals_.Load("op-6").ok());
}

// Found in review: a swap that ends RolledBack leaves the previous
// release installed; the copy that undoes the swap before it stays.
TEST_F(ExecutorTest, ASwapRolledBackKeepsTheCopyOfTheSwapBeforeIt) {
  options_.rollback_steps = 1;
  StageRelease("0.3.0");
  SwapJournal up = SwapTo(kNew, 0, "op-1");
  ASSERT_EQ(up.phase, SwapPhase::kStable);
  w_.start_failures = 1;
  SwapJournal failed = SwapTo("0.3.0", 0, "op-2");
  ASSERT_EQ(failed.phase, SwapPhase::kRolledBack);
  EXPECT_TRUE(std::filesystem::exists(up.previous_binary));
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-3", std::nullopt}}).ok());
  EXPECT_EQ(WaitClosed("op-3").phase, SwapPhase::kStable);
  ExpectOldServing();
  // Pruned at the next end: its own end holds it open.
  EXPECT_FALSE(std::filesystem::exists(failed.previous_binary)) << "no rollback can use it";
}

// A failed rollback's copy stays (the break-glass runbook restores from
// it), and so does the copy it was installing.
TEST_F(ExecutorTest, AFailedRollbacksCopiesAreKept) {
  options_.rollback_steps = 1;
  StageRelease("0.3.0");
  SwapJournal up = SwapTo(kNew, 0, "op-1");
  ASSERT_EQ(up.phase, SwapPhase::kStable);
  SwapJournal failed = up;  // as a rollback of op-1 that failed left it
  failed.operation_id = "op-0";
  failed.kind = "rollback";
  failed.phase = SwapPhase::kRollbackFailed;
  failed.target_binary = up.previous_binary;
  failed.evidence_dir = options_.state_dir + "/operations/op-0";
  failed.previous_binary = failed.evidence_dir + "/previous-binary";
  failed.started_unix_ms = 1;
  std::filesystem::create_directories(failed.evidence_dir);
  testing::WriteFile(failed.previous_binary, "copy");
  ASSERT_TRUE(journals_.Save(failed).ok());
  SwapJournal next = SwapTo("0.3.0", 0, "op-2");
  ASSERT_EQ(next.phase, SwapPhase::kStable);
  EXPECT_TRUE(std::filesystem::exists(failed.previous_binary));
  EXPECT_TRUE(std::filesystem::exists(up.previous_binary)) << "the failed rollback's target";
  EXPECT_TRUE(std::filesystem::exists(next.previous_binary));
}

// Copies an older agent left are deleted at the next start, before a
// swap could be refused for the space they take; so is a copy a crash
// left unnamed by its journal (the capture was not recorded).
TEST_F(ExecutorTest, AStartDeletesTheCopiesLeftByAnOlderAgent) {
  options_.rollback_steps = 100;
  StageRelease("0.3.0");
  SwapJournal first = SwapTo(kNew, 0, "op-1");
  SwapJournal second = SwapTo("0.3.0", 0, "op-2");
  ASSERT_TRUE(std::filesystem::exists(first.previous_binary));
  SwapJournal crashed;
  crashed.operation_id = "op-x";
  crashed.phase = SwapPhase::kPreflighted;
  crashed.open = false;
  ASSERT_TRUE(journals_.Save(crashed).ok());
  const std::string unnamed = options_.state_dir + "/operations/op-x/previous-binary";
  std::filesystem::create_directories(options_.state_dir + "/operations/op-x");
  testing::WriteFile(unnamed, "copy");
  DestroyExecutorOrAbort("the destructor");
  options_.rollback_steps = 1;
  executor().StartRecovery();
  executor().Started();
  EXPECT_FALSE(std::filesystem::exists(first.previous_binary));
  EXPECT_FALSE(std::filesystem::exists(unnamed));
  EXPECT_TRUE(std::filesystem::exists(second.previous_binary)) << "0.3.0 is installed";
}

// A recovered operation's end does not prune from its journal's word:
// the release installed by hand while the agent was down decides.
TEST_F(ExecutorTest, AfterARecoveryWhatIsInstalledDecidesWhatIsKept) {
  options_.rollback_steps = 2;
  StageRelease("0.3.0");
  SwapJournal first = SwapTo(kNew, 0, "op-1");
  SwapJournal second = SwapTo("0.3.0", 0, "op-2");
  ASSERT_EQ(second.phase, SwapPhase::kStable);
  ASSERT_TRUE(std::filesystem::exists(first.previous_binary));
  DestroyExecutorOrAbort("the destructor");
  options_.rollback_steps = 1;
  // Left Stable but open by a crash before the close; meanwhile an
  // operator put 0.2.0 back by hand.
  second.open = true;
  ASSERT_TRUE(journals_.Save(second).ok());
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.installed_sha = new_sha_;
  }
  executor().StartRecovery();
  WaitClosed("op-2");
  executor().Started();
  EXPECT_TRUE(std::filesystem::exists(first.previous_binary))
      << "0.2.0 is installed: op-1 can be rolled back, whatever op-2's journal says";
  EXPECT_FALSE(std::filesystem::exists(second.previous_binary));
}

// The crash tests' build kills the agent at these points (crash_hook.h).
TEST_F(ExecutorTest, TheStepHookSeesTheAdmissionEveryPhaseAndTheRename) {
  std::mutex mu;
  std::vector<std::string> points;
  executor().SetStepHook([&](std::string_view p) {
    std::lock_guard<std::mutex> lock(mu);
    points.emplace_back(p);
  });
  EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(points, (std::vector<std::string>{"admitting", "Staged", "Preflighted", "capturing",
                                              "Stopped", "Installed", "after-rename", "Started",
                                              "Verifying", "Stable"}));
}

// /metrics' kmsfleet_node_operation_duration_seconds: each phase is
// reported once, as the operation leaves it, with the time spent there.
TEST_F(ExecutorTest, ThePhaseObserverTimesEveryPhaseLeft) {
  std::mutex mu;
  std::vector<std::pair<std::string, double>> left;
  executor().SetPhaseObserver([&](std::string_view phase, double seconds) {
    std::lock_guard<std::mutex> lock(mu);
    left.emplace_back(phase, seconds);
  });
  EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  std::lock_guard<std::mutex> lock(mu);
  std::vector<std::string> phases;
  double verifying = -1;
  for (const auto& [phase, seconds] : left) {
    phases.push_back(phase);
    EXPECT_GE(seconds, 0) << phase;
    if (phase == "Verifying") verifying = seconds;
  }
  EXPECT_EQ(phases, (std::vector<std::string>{"Idle", "Staged", "Preflighted", "Stopped",
                                              "Installed", "Started", "Verifying"}));
  // The stabilisation window is spent in Verifying, on the test's clock.
  EXPECT_GE(verifying, kWindowMs / 1000.0);
}

TEST_F(ExecutorTest, UnitFailingToStopRollsBack) {
  w_.stop_failures = 1;
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kTimeout);
  ExpectOldServing();
}

TEST_F(ExecutorTest, UnitFailingToStartRollsBack) {
  w_.start_failures = 1;
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kUnitFailed);
  ExpectOldServing();
}

TEST_F(ExecutorTest, InstallFailureRollsBackWithoutReinstalling) {
  w_.install_failures = 1;
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kArtifactIo);
  ExpectOldServing();
  // The previous binary was still in place: the rollback only restarted it.
  EXPECT_EQ(Calls(), (std::vector<std::string>{"stop", "install 0.2.0", "stop", "start"}));
}

TEST_F(ExecutorTest, NeverReadyRollsBackAtTheDeadline) {
  w_.never_ready.insert(kNew);
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kNotReady);
  EXPECT_GE(w_.steady_ms, options_.ready_timeout.count() + kWindowMs);
  ExpectOldServing();
  // A rejected start: the registry pair is as it was.
  EXPECT_EQ(j.registry_sha256_after, j.registry_sha256);
}

// A rejected start must leave the registry pair as it was; a new version
// that wrote the checkpoint without ever becoming ready is named.
TEST_F(ExecutorTest, ARejectedStartThatChangedTheRegistryPairIsNamed) {
  w_.never_ready.insert(kNew);
  const std::string checkpoint = options_.registry_path + ".checkpoint";
  w_.on_start = [checkpoint](World& w) {
    if (w.Installed() == kNew) testing::WriteFile(checkpoint, Registry(0) + " ");
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kNotReady);
  EXPECT_FALSE(j.target_ready_seen);
  EXPECT_NE(j.checkpoint_sha256_after, j.checkpoint_sha256);
  EXPECT_THAT(j.failure_message, HasSubstr("[EVIDENCE_CHANGED]"));
  EXPECT_THAT(j.failure_message, HasSubstr(checkpoint + " changed"));
}

// Once the target was ready it may have written the pair: no complaint.
TEST_F(ExecutorTest, ARegistryWrittenAfterReadyIsNotAnEvidenceChange) {
  w_.serves_hash[kNew] = "another-key";
  const std::string checkpoint = options_.registry_path + ".checkpoint";
  w_.on_start = [checkpoint](World& w) {
    if (w.Installed() == kNew) testing::WriteFile(checkpoint, Registry(0) + " ");
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_TRUE(j.target_ready_seen);
  EXPECT_THAT(j.failure_message, ::testing::Not(HasSubstr("EVIDENCE_CHANGED")));
}

TEST_F(ExecutorTest, ExitOnStartNamesTheExitStatusAndOutput) {
  w_.exits_on_start.insert(kNew);
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kUnitFailed);
  EXPECT_THAT(j.failure_message, HasSubstr("exit status 1"));
  EXPECT_THAT(j.failure_message, HasSubstr("requires fresh bound state"));
  ExpectOldServing();
}

TEST_F(ExecutorTest, WrongVersionRollsBack) {
  w_.reports_version[kNew] = "0.2.1";
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kVersionMismatch);
  ExpectOldServing();
}

TEST_F(ExecutorTest, KeyIdHashMismatchRollsBack) {
  w_.serves_hash[kNew] = "another-key";
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kKeyIdHashMismatch);
  ExpectOldServing();
}

TEST_F(ExecutorTest, RisingCountersRollBackEvenWithoutTheDecryptCounter) {
  w_.decrypt_errors.reset();
  int sleeps = 0;
  w_.on_sleep = [&sleeps](World& w) {
    if (w.Installed() == kNew && ++sleeps == 5) w.aad_errors += 1;
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kCountersRising);
}

TEST_F(ExecutorTest, ARestartInsideTheWindowFailsIt) {
  // systemd restarts the provider between two polls; /ready is 200 at each.
  int sleeps = 0;
  w_.on_sleep = [&sleeps](World& w) {
    if (w.Installed() == kNew && ++sleeps == 5) ++w.invocation;
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, reason::kUnitRestarted);
  ExpectOldServing();
}

// An NTP step forward of an hour on the wall clock must not complete the
// window: only steady time counts.
TEST_F(ExecutorTest, AWallClockStepDoesNotShortenTheWindow) {
  int64_t verify_started = -1;
  w_.on_sleep = [&verify_started](World& w) {
    if (w.Installed() != kNew) return;
    if (verify_started < 0) {
      verify_started = w.steady_ms - kPollMs;
      w.wall_ms += 3600 * 1000;
    }
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable);
  EXPECT_GE(w_.steady_ms - verify_started, kWindowMs);
}

// A window that is not a whole number of polls ends on time: the last
// wait is cut to the window's end (it used to run to the next poll).
TEST_F(ExecutorTest, TheWindowEndsOnTimeBetweenTwoPolls) {
  int64_t started_at = -1;
  w_.on_start = [&started_at](World& w) { started_at = w.steady_ms; };
  SwapJournal j = SwapTo(kNew, /*stabilization_ms=*/kPollMs * 5 / 2);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(w_.steady_ms - started_at, kPollMs * 5 / 2);
}

// A provider that binds its health listener between two polls is polled
// as it binds, not a quarter poll later: the window counts from that poll.
TEST_F(ExecutorTest, TheWindowStartsWhenTheHealthListenerBinds) {
  w_.binds_after_start_ms = 7;  // before the first quarter poll, 25 ms
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(w_.steady_ms - w_.started_at_ms, 7 + kWindowMs);
  // Seven refused, a millisecond apart, then the one that found it.
  EXPECT_EQ(w_.listener_looks, 8);
}

// A probe that cannot tell, or a listener accepting from the first look
// (another read failed), waits the quarter poll out, as before.
TEST_F(ExecutorTest, AListenerThatCannotBeSeenBindingWaitsThePollOut) {
  for (const std::optional<bool> says : {std::optional<bool>(), std::optional<bool>(true)}) {
    SCOPED_TRACE(says ? "accepts at once" : "cannot tell");
    w_.binds_after_start_ms = 7;
    w_.listener_says = says;
    w_.listener_looks = 0;
    SwapJournal j = SwapTo(kNew, 0, says ? "op-accepts" : "op-unknown");
    EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
    EXPECT_EQ(w_.steady_ms - w_.started_at_ms, kPollMs / 4 + kWindowMs);
    EXPECT_EQ(w_.listener_looks, 1);
    // Back to the old release for the next round.
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.installed_sha = old_sha_;
  }
}

// A provider up at once is never watched for.
TEST_F(ExecutorTest, AProviderUpAtOnceIsNotWatchedFor) {
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(w_.listener_looks, 0);
}

TEST_F(ExecutorTest, StabilizationBeyondAnHourIsRefused) {
  absl::StatusOr<SwapJournal> r =
      executor().Swap({kNew, {"", kMaxStabilizationMs + 1, "op-1", std::nullopt}, ""});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(r.status()), reason::kInvalidArgument);
  EXPECT_TRUE(Calls().empty());
  EXPECT_FALSE(executor().Busy());
}

TEST_F(ExecutorTest, RunAdmittedHoldsTheNodeBusyAndObeysTheFenceCheck) {
  bool busy_inside = false;
  absl::Status ran = executor().RunAdmitted(std::nullopt, [&] { busy_inside = executor().Busy(); });
  EXPECT_TRUE(ran.ok()) << ran;
  EXPECT_TRUE(busy_inside) << "a hand-off query during the restart must answer running";
  EXPECT_FALSE(executor().Busy());
  // A member of an election without the coordinator's fence: refused, not run.
  executor().SetFenceCheck([](const std::optional<v1::Fence>& fence) {
    return fence ? absl::OkStatus()
                 : MakeError(absl::StatusCode::kFailedPrecondition, reason::kFenceRequired,
                             "no fence");
  });
  bool ran_unfenced = false;
  absl::Status refused = executor().RunAdmitted(std::nullopt, [&] { ran_unfenced = true; });
  EXPECT_EQ(ReasonOf(refused), reason::kFenceRequired);
  EXPECT_FALSE(ran_unfenced);
  EXPECT_FALSE(executor().Busy());
}

// Found in review: the wait for a fence's commit came after the executor
// was marked busy, so a forged fence one record ahead, which no election
// commits, held the node busy (hand-off queries answered "running") for
// the whole wait, command after command.
TEST_F(ExecutorTest, TheWaitForAFencesCommitHoldsNothingBusy) {
  std::vector<bool> busy_while_waiting;
  executor().SetFenceWait(
      [&](const v1::Fence&) { busy_while_waiting.push_back(executor().Busy()); });
  executor().SetFenceCheck([](const std::optional<v1::Fence>&) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kUnknownFence, "never committed");
  });
  v1::Fence forged;
  forged.set_term(1);
  forged.set_index(2);
  forged.set_in_flight("cp-1");
  absl::StatusOr<SwapJournal> swap = executor().Swap({kNew, {"", 0, "op-1", forged}, ""});
  EXPECT_EQ(ReasonOf(swap.status()), reason::kUnknownFence);
  absl::StatusOr<SwapJournal> back = executor().Rollback({"op-0", {"", 0, "op-2", forged}});
  EXPECT_EQ(ReasonOf(back.status()), reason::kUnknownFence);
  EXPECT_EQ(busy_while_waiting, (std::vector<bool>{false, false}));
  // No fence, nothing to wait for.
  (void)executor().Swap({kNew, {"", 0, "op-3", std::nullopt}, ""});
  EXPECT_EQ(busy_while_waiting.size(), 2u);
  EXPECT_FALSE(executor().Busy());
  EXPECT_TRUE(Calls().empty());
}

// From review: a command whose caller had given up by the time the agent
// got to start it (a coordinator's call timed out while the agent waited
// for the fence's commit, or was starved of CPU) still started, after
// that caller may have decided on the node as it was. It is refused
// CALLER_GONE with nothing started; sent again by a caller still there,
// the same id runs.
TEST_F(ExecutorTest, ACommandWhoseCallerGaveUpIsNotStarted) {
  CommandParams gone{"", 0, "op-1", std::nullopt};
  gone.caller_gone = [] { return true; };
  absl::StatusOr<SwapJournal> swap = executor().Swap({kNew, gone, ""});
  EXPECT_EQ(ReasonOf(swap.status()), reason::kCallerGone) << swap.status();
  EXPECT_TRUE(absl::IsNotFound(executor().Get("op-1").status()));
  bool ran = false;
  absl::Status restart = executor().RunAdmitted(
      std::nullopt, [&ran] { ran = true; }, std::nullopt, [] { return true; });
  EXPECT_EQ(ReasonOf(restart), reason::kCallerGone) << restart;
  EXPECT_FALSE(ran);
  EXPECT_FALSE(executor().Busy());
  EXPECT_TRUE(Calls().empty());
  ExpectOldServing();
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  gone.operation_id = "op-2";
  absl::StatusOr<SwapJournal> back = executor().Rollback({"op-1", gone});
  EXPECT_EQ(ReasonOf(back.status()), reason::kCallerGone) << back.status();
  EXPECT_TRUE(absl::IsNotFound(executor().Get("op-2").status()));
  EXPECT_EQ(Installed(), kNew);
}

// Found in review: a lookup of an operation whose command was still being
// admitted (its call had timed out, and the coordinator, paused, followed
// it follow-only) was answered NotFound, and the plan gave the node's slot
// back untouched as the swap started. Until the admission ends the id is
// OPERATION_BEING_ADMITTED, and a watch waits for that end: the journal
// once started, NotFound once refused.
TEST_F(ExecutorTest, AnOperationBeingAdmittedIsNotAnsweredNotFound) {
  absl::Status looked_up, watched;
  executor().SetFenceCheck([&](const std::optional<v1::Fence>&) {
    looked_up = executor().Get("op-1").status();
    watched = executor().WaitForUpdate("op-1", 0, std::chrono::milliseconds(20)).status();
    return absl::OkStatus();
  });
  EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  EXPECT_TRUE(IsBeingAdmitted(looked_up)) << looked_up;
  EXPECT_TRUE(IsBeingAdmitted(watched)) << watched;

  std::thread watcher;
  absl::StatusOr<SwapJournal> after_refusal;
  executor().SetFenceCheck([&](const std::optional<v1::Fence>&) {
    watcher = std::thread([&] {
      after_refusal = executor().WaitForUpdate("op-2", 0, std::chrono::seconds(10));
    });
    looked_up = executor().Get("op-2").status();
    return absl::OkStatus();
  });
  CommandParams gone{"", 0, "op-2", std::nullopt};
  gone.caller_gone = [] { return true; };
  EXPECT_EQ(ReasonOf(executor().Rollback({"op-1", gone}).status()), reason::kCallerGone);
  watcher.join();
  EXPECT_TRUE(IsBeingAdmitted(looked_up)) << looked_up;
  EXPECT_TRUE(absl::IsNotFound(after_refusal.status())) << after_refusal.status();
  EXPECT_TRUE(absl::IsNotFound(executor().Get("op-2").status()));
  EXPECT_EQ(Installed(), kNew);
}

// From review: an id already used answered with its operation whatever
// was sent under it: `node swap --version 0.3.0` under the id of a swap
// to 0.2.0 printed that Stable swap, and a rollback under a swap's id
// returned the swap. Another command under the id is refused; the same
// one sent again still gets its operation.
TEST_F(ExecutorTest, AnIdAlreadyUsedIsRefusedForAnotherCommand) {
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  absl::StatusOr<SwapJournal> other = executor().Swap({"0.3.0", {"", 0, "op-1", std::nullopt}, ""});
  EXPECT_EQ(ReasonOf(other.status()), reason::kOperationIdReused) << other.status();
  EXPECT_THAT(other.status().message(), HasSubstr(std::string("already names a swap to ") + kNew));
  EXPECT_THAT(other.status().message(), HasSubstr("not a swap to 0.3.0"));
  absl::StatusOr<SwapJournal> back = executor().Rollback({"op-1", {"", 0, "op-1", std::nullopt}});
  EXPECT_EQ(ReasonOf(back.status()), reason::kOperationIdReused) << back.status();
  absl::StatusOr<SwapJournal> again = executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->phase, SwapPhase::kStable);
  EXPECT_EQ(Installed(), kNew);
}

// Found in review: the operator refused ACTIVE_KEY_NOT_EXPECTED who sent
// the swap again with the corrected --expected-key-id-hash, under the same
// --operation-id, got the refusal back as if the corrected one had been
// judged. With another hash, window or staged digest it is refused
// OPERATION_ID_REUSED, naming both; sent again unchanged, or without the
// setting, it is still answered with its operation; and a coordinator's
// re-send of its step, whose hash is the round's, is answered too.
TEST_F(ExecutorTest, AnOperatorsSwapSentAgainWithOtherSettingsIsACommandOfItsOwn) {
  RegistryNamesServedKey("obk2.first");
  const std::string stale = KeyIdHash("obk2.before");
  const std::string served = KeyIdHash("obk2.first");
  ASSERT_TRUE(executor().Swap({kNew, {stale, 0, "op-1", std::nullopt}, ""}).ok());
  SwapJournal refused = WaitClosed("op-1");
  ASSERT_EQ(refused.failure_reason, reason::kActiveKeyNotExpected) << refused.failure_message;

  absl::Status corrected = executor().Swap({kNew, {served, 0, "op-1", std::nullopt}, ""}).status();
  EXPECT_EQ(ReasonOf(corrected), reason::kOperationIdReused) << corrected;
  EXPECT_THAT(corrected.message(), HasSubstr("with expected key_id hash " + stale));
  EXPECT_THAT(corrected.message(), HasSubstr(std::string(reason::kActiveKeyNotExpected)));
  EXPECT_THAT(corrected.message(), HasSubstr("not " + served));
  EXPECT_TRUE(Calls().empty()) << "the provider was touched";
  for (const CommandParams& same : {CommandParams{stale, 0, "op-1", std::nullopt},
                                    CommandParams{"", 0, "op-1", std::nullopt}}) {
    absl::StatusOr<SwapJournal> again = executor().Swap({kNew, same, ""});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->failure_reason, reason::kActiveKeyNotExpected);
  }

  ASSERT_TRUE(executor().Swap({kNew, {served, 0, "op-2", std::nullopt}, ""}).ok());
  SwapJournal up = WaitClosed("op-2");
  ASSERT_EQ(up.phase, SwapPhase::kStable) << up.failure_message;
  absl::Status longer = executor().Swap({kNew, {"", 5 * up.stabilization_ms, "op-2",
                                                std::nullopt}, ""}).status();
  EXPECT_EQ(ReasonOf(longer), reason::kOperationIdReused) << longer;
  EXPECT_THAT(longer.message(), HasSubstr("stabilisation window (ms) " +
                                          std::to_string(up.stabilization_ms)));
  const std::string other_digest(64, 'a');
  absl::Status digest = executor().Swap({kNew, {"", 0, "op-2", std::nullopt}, other_digest}).status();
  EXPECT_EQ(ReasonOf(digest), reason::kOperationIdReused) << digest;
  EXPECT_THAT(digest.message(), HasSubstr("staged digest " + up.staged_digest));
  EXPECT_FALSE(up.staged_digest.empty());
  absl::StatusOr<SwapJournal> same_digest =
      executor().Swap({kNew, {served, 0, "op-2", std::nullopt}, up.staged_digest});
  ASSERT_TRUE(same_digest.ok()) << same_digest.status();
  EXPECT_EQ(same_digest->phase, SwapPhase::kStable);

  CommandParams coordinator{stale, 0, "op-2", std::nullopt};
  coordinator.bound_to_plan = true;
  absl::StatusOr<SwapJournal> resent = executor().Swap({kNew, coordinator, ""});
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_EQ(resent->phase, SwapPhase::kStable) << "answered with the step's operation";
}

// A rollback's id sent again for the rollback of another swap was
// answered with the first rollback, as if the second had run.
TEST_F(ExecutorTest, ARollbacksIdIsRefusedForTheRollbackOfAnotherSwap) {
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-back", std::nullopt}}).ok());
  ASSERT_EQ(WaitClosed("op-back").phase, SwapPhase::kStable);
  absl::StatusOr<SwapJournal> other =
      executor().Rollback({"op-9", {"", 0, "op-back", std::nullopt}});
  EXPECT_EQ(ReasonOf(other.status()), reason::kOperationIdReused) << other.status();
  EXPECT_THAT(other.status().message(), HasSubstr("already names a rollback of op-1"));
  EXPECT_THAT(other.status().message(), HasSubstr("not a rollback of op-9"));
  absl::StatusOr<SwapJournal> again =
      executor().Rollback({"op-1", {"", 0, "op-back", std::nullopt}});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->of_operation_id, "op-1");
}

// Found in review: the id was looked up only before the wait for the
// fence, so the same command sent twice at once could run twice: the
// second, waiting for its fence while the first ran and ended, then wrote
// a new journal over the first's and swapped again.
TEST_F(ExecutorTest, ACommandSentTwiceAtOnceRunsOnce) {
  executor().SetFenceCheck([](const std::optional<v1::Fence>&) { return absl::OkStatus(); });
  bool first_wait = true;
  executor().SetFenceWait([&](const v1::Fence&) {
    if (!first_wait) return;
    first_wait = false;
    // The other copy of the command runs to its end meanwhile.
    ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
    WaitClosed("op-1");
  });
  v1::Fence fence;
  fence.set_term(1);
  fence.set_index(2);
  fence.set_in_flight("cp-1");
  absl::StatusOr<SwapJournal> second = executor().Swap({kNew, {"", 0, "op-1", fence}, ""});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->open) << "answered from the first run's record";
  EXPECT_EQ(second->phase, SwapPhase::kStable);
  EXPECT_FALSE(executor().Busy());
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(std::count(w_.calls.begin(), w_.calls.end(), "stop"), 1);
}

// Refusals that need no fence (busy, stopping, starting) come at once,
// not after the wait for the fence's commit.
TEST_F(ExecutorTest, ABusyNodeRefusesAFencedCommandWithoutWaitingForItsFence) {
  int waits = 0;
  executor().SetFenceWait([&](const v1::Fence&) { ++waits; });
  v1::Fence fence;
  fence.set_term(1);
  fence.set_index(2);
  fence.set_in_flight("cp-1");
  absl::Status inside;
  absl::Status ran = executor().RunAdmitted(std::nullopt, [&] {
    inside = executor().Swap({kNew, {"", 0, "op-1", fence}, ""}).status();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  EXPECT_EQ(ReasonOf(inside), reason::kOperationInProgress) << inside;
  EXPECT_EQ(waits, 0);
}

// A member's command is judged with the settings it carries (found in
// review: the plan check saw only id and version, so a member could send
// the step with a window and a digest of its own).
TEST_F(ExecutorTest, TheMembersPlanCheckSeesTheWindowAndDigestTheCommandCarries) {
  std::vector<NodeCommand> judged;
  executor().SetPlanCheck([&](const NodeCommand& c) -> absl::StatusOr<PlanBinding> {
    judged.push_back(c);
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kCommandNotInPlan, "not it");
  });
  CommandParams member{"", 1234, "op-1", std::nullopt, /*bound_to_plan=*/true};
  absl::StatusOr<SwapJournal> swap = executor().Swap({kNew, member, "digest-of-the-plan"});
  EXPECT_EQ(ReasonOf(swap.status()), reason::kCommandNotInPlan);
  member.operation_id = "op-2";
  member.stabilization_ms = 0;
  absl::StatusOr<SwapJournal> back = executor().Rollback({"op-0", member});
  EXPECT_EQ(ReasonOf(back.status()), reason::kCommandNotInPlan);
  ASSERT_EQ(judged.size(), 2u);
  EXPECT_EQ(judged[0].kind, NodeCommand::Kind::kSwap);
  EXPECT_EQ(judged[0].stabilization_ms, 1234);
  EXPECT_EQ(judged[0].expected_staged_digest, "digest-of-the-plan");
  EXPECT_EQ(judged[1].kind, NodeCommand::Kind::kRollback);
  EXPECT_EQ(judged[1].stabilization_ms, 0);
  EXPECT_TRUE(Calls().empty());
  EXPECT_FALSE(executor().Busy());
  ExpectOldServing();
}

// Found in review: a fenced command's expected_key_id_hash had no bound
// but the 2 MiB message, and went into a journal that a restarted agent
// refuses to read past 256 KiB: JOURNAL_CORRUPT for every later command.
TEST_F(ExecutorTest, AnExpectedHashThatIsNoKeyIdHashIsRefusedBeforeAnythingStarts) {
  for (const std::string& hash : {std::string(1 << 20, 'A'), std::string("abc def"),
                                  std::string("h\n\"x")}) {
    absl::StatusOr<SwapJournal> swap =
        executor().Swap({kNew, {hash, 0, "op-" + std::to_string(hash.size()), std::nullopt}, ""});
    EXPECT_EQ(swap.status().code(), absl::StatusCode::kInvalidArgument) << swap.status();
    EXPECT_EQ(ReasonOf(swap.status()), reason::kInvalidArgument);
    EXPECT_LT(swap.status().message().size(), 512u);
  }
  EXPECT_TRUE(Calls().empty());
  EXPECT_FALSE(executor().Busy());
  EXPECT_FALSE(std::filesystem::exists(options_.state_dir + "/journal"))
      << "no journal was written";
  ExpectOldServing();
  absl::StatusOr<SwapJournal> fine = executor().Swap(
      {kNew, {"VPIZk_Ad9tg90Eo8t6Jf8V5tAhe29gAD_LP5J08kgrM", 0, "op-ok", std::nullopt}, ""});
  EXPECT_NE(ReasonOf(fine.status()), reason::kInvalidArgument) << fine.status();
}

// Found in review: after SIGTERM the listeners drain for seconds, and a
// swap admitted then could stop the provider just before systemd kills the
// agent. From the signal on, nothing new is admitted.
TEST_F(ExecutorTest, AStoppingAgentAdmitsNothingNew) {
  executor().RefuseNewCommands();
  absl::StatusOr<SwapJournal> swap = executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""});
  EXPECT_EQ(swap.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(swap.status()), reason::kAgentStopping);
  bool ran = false;
  EXPECT_EQ(ReasonOf(executor().RunAdmitted(std::nullopt, [&] { ran = true; })),
            reason::kAgentStopping);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(Calls().empty());
  EXPECT_FALSE(executor().Busy());
  ExpectOldServing();
  // Nor a stage or a preflight, which can run for minutes (a download,
  // doctor) while the agent's stop waits for the call.
  StageRequest stage;
  stage.version = "0.3.0";
  EXPECT_EQ(ReasonOf(executor().Stage(stage).status()), reason::kAgentStopping);
  absl::StatusOr<PreflightOutcome> preflight = executor().Preflight(kNew);
  EXPECT_EQ(preflight.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(preflight.status()), reason::kAgentStopping);
  EXPECT_FALSE(std::filesystem::exists(options_.state_dir + "/artifacts/0.3.0"));
}

// A swap admitted before the signal, still in its checks when it comes,
// ends before the provider's stop: the provider is not stopped during the
// drain, and the plan sends the swap again once the agent is back.
TEST_F(ExecutorTest, ASwapInItsChecksWhenTheAgentIsToldToStopEndsBeforeTheStop) {
  w_.after_version = [this](World&, const std::string& binary) {
    if (binary == options_.install_path) executor().RefuseNewCommands();
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kPreflighted);
  EXPECT_EQ(j.failure_reason, reason::kAgentStopping);
  EXPECT_THAT(j.failure_message, HasSubstr("ended before the provider's stop"));
  EXPECT_FALSE(j.open);
  EXPECT_TRUE(j.previous_binary.empty()) << "ended before the capture step took a copy";
  EXPECT_FALSE(std::filesystem::exists(options_.state_dir + "/operations/" + j.operation_id));
  EXPECT_TRUE(Calls().empty()) << ::testing::PrintToString(Calls());
  ExpectOldServing();
  executor().Stop();
  EXPECT_FALSE(executor().LeftAnOperationOpen());
}

// The same signal while the evidence is captured: its last step ends the
// operation, and the provider is not stopped during the agent's drain.
TEST_F(ExecutorTest, ASwapCapturingItsEvidenceWhenTheAgentIsToldToStopEndsBeforeTheStop) {
  w_.after_capture = [this] { executor().RefuseNewCommands(); };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kPreflighted);
  EXPECT_EQ(j.failure_reason, reason::kAgentStopping);
  EXPECT_THAT(j.failure_message, HasSubstr("ended before the provider's stop"));
  EXPECT_FALSE(j.open);
  EXPECT_FALSE(j.previous_binary.empty());  // the capture had run
  EXPECT_TRUE(Calls().empty()) << ::testing::PrintToString(Calls());
  ExpectOldServing();
  executor().Stop();
  EXPECT_FALSE(executor().LeftAnOperationOpen());
}

// Found in review: kmsfleetd's cluster listener serves before its local
// socket and /metrics start, and either can still fail; a coordinator's
// swap admitted in that window ran in an agent whose start then failed.
TEST_F(ExecutorTest, AStartingAgentAdmitsNothingUntilStarted) {
  executor().RefuseNewCommandsUntilStarted();
  absl::StatusOr<SwapJournal> early = executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""});
  EXPECT_EQ(early.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(early.status()), reason::kAgentStarting);
  EXPECT_THAT(early.status().message(), HasSubstr("still starting"));
  bool ran = false;
  EXPECT_EQ(ReasonOf(executor().RunAdmitted(std::nullopt, [&] { ran = true; })),
            reason::kAgentStarting);
  EXPECT_FALSE(ran);
  EXPECT_TRUE(Calls().empty());
  EXPECT_FALSE(executor().Busy());
  executor().Started();
  EXPECT_TRUE(executor().RunAdmitted(std::nullopt, [&] { ran = true; }).ok());
  EXPECT_TRUE(ran);
}

TEST_F(ExecutorTest, ReasonCodesForBadRequests) {
  absl::StatusOr<SwapJournal> bad_id =
      executor().Swap({kNew, {"", 0, "../etc", std::nullopt}, ""});
  EXPECT_EQ(bad_id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(bad_id.status()), reason::kInvalidOperationId);

  w_.never_ready.insert(kNew);
  EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kRolledBack);
  absl::StatusOr<SwapJournal> not_stable =
      executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}});
  EXPECT_EQ(ReasonOf(not_stable.status()), reason::kNotRollbackable);
  absl::StatusOr<SwapJournal> unknown =
      executor().Rollback({"op-9", {"", 0, "op-3", std::nullopt}});
  EXPECT_EQ(ReasonOf(unknown.status()), reason::kOperationNotFound);
}

TEST_F(ExecutorTest, DoctorFailureChangesNothing) {
  w_.doctor_verdict = MakeError(absl::StatusCode::kFailedPrecondition,
                                reason::kDoctorFailed, "transit.metadata failed");
  ExpectRefusedAtPreflight(reason::kDoctorFailed);
  ExpectOldServing();
}

// The staged binary is hashed once per swap, by the operation's first
// step, before anything else: changed since it was staged, it is never
// installed, and nothing is stopped.
TEST_F(ExecutorTest, AStagedBinaryChangedSinceStagingEndsTheSwapBeforeTheStop) {
  testing::WriteFile(options_.state_dir + "/artifacts/" + kNew + "/bao-kms-provider",
                     std::string("release ") + kNew + " and something else");
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStaged);
  EXPECT_EQ(j.failure_reason, reason::kChecksumMismatch) << j.failure_message;
  EXPECT_THAT(j.failure_message, HasSubstr("bao-kms-provider"));
  EXPECT_TRUE(Calls().empty());
  ExpectOldServing();
}

// What the install needs besides the release (a static pod's manifest
// directory the agent can write) is checked before the stop, by the swap
// and by the plan's preflight: found at the install, it cost a provider
// restart and a rollback.
TEST_F(ExecutorTest, AnInstallThatCannotHappenIsRefusedBeforeTheStop) {
  w_.cannot_install = MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                                "write into /etc/kubernetes/manifests: Read-only file system");
  ExpectRefusedAtPreflight(reason::kArtifactIo);
  ExpectOldServing();
  EXPECT_EQ(ReasonOf(executor().Preflight(kNew).status()), reason::kArtifactIo);
}

TEST_F(ExecutorTest, APendingRotationDefersTheSwap) {
  cli_.rotation_state = "pending";
  ExpectRefusedAtPreflight(reason::kRotationInProgress);
}

// Reference §10: the installed release's rotation-plan must show a
// registry checkpoint that is current before its provider is stopped.
// A binary that prints no status is not judged on it.
TEST_F(ExecutorTest, ARegistryCheckpointThatIsNotCurrentRefusesTheSwapBeforeTheStop) {
  cli_.state_checkpoint_status = "behind";
  SwapJournal j = ExpectRefusedAtPreflight(reason::kStateCheckpointNotCurrent);
  EXPECT_THAT(j.failure_message, HasSubstr("stateCheckpointStatus behind"));
  ExpectOldServing();
  // A preflight reports it for the coordinator to judge, with the plan's
  // acknowledgements.
  absl::StatusOr<PreflightOutcome> pre = executor().PreflightInstalled();
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_TRUE(pre->rotation_plan.ok()) << pre->rotation_plan;
  EXPECT_EQ(pre->rotation.state_checkpoint_status, "behind");
}

// The runbook's gate is the upgrade's: a rollback is not refused for the
// checkpoint (the older release starts on it as the newer does), and
// neither is a swap whose plan acknowledged it.
TEST_F(ExecutorTest, ACheckpointThatIsNotCurrentHoldsUpNeitherARollbackNorAnAcknowledgedSwap) {
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  cli_.state_checkpoint_status = "missing";
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-2");
  EXPECT_EQ(back.phase, SwapPhase::kStable) << back.failure_reason << ": " << back.failure_message;
  ExpectOldServing();
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.checkpoint_acknowledged = true};
  });
  CommandParams bound{"", kWindowMs, "op-3", std::nullopt};
  bound.bound_to_plan = true;
  ASSERT_TRUE(executor().Swap({kNew, bound, ""}).ok());
  SwapJournal acknowledged = WaitClosed("op-3");
  EXPECT_EQ(acknowledged.phase, SwapPhase::kStable) << acknowledged.failure_message;
  EXPECT_TRUE(acknowledged.checkpoint_acknowledged);
}

// An operator swapping by hand (`node swap --acknowledge`) gets past the
// checkpoint as a plan's acknowledgement does; any other code, and any
// code from a member's certificate (a plan's swap takes the plan's), is
// refused before anything is journaled.
TEST_F(ExecutorTest, AnOperatorsSwapAcknowledgesTheCheckpointAndNothingElse) {
  cli_.state_checkpoint_status = "missing";
  SwapParams one_way{kNew, {"", kWindowMs, "op-1", std::nullopt}, "", {"ONE_WAY_UPGRADE"}};
  absl::Status s = executor().Swap(one_way).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("only STATE_CHECKPOINT_NOT_CURRENT"));
  CommandParams bound{"", kWindowMs, "op-1", std::nullopt};
  bound.bound_to_plan = true;
  s = executor().Swap({kNew, bound, "", {"STATE_CHECKPOINT_NOT_CURRENT"}}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("the committed plan's are used"));
  EXPECT_TRUE(absl::IsNotFound(journals_.Load("op-1").status())) << "nothing journaled";
  ExpectOldServing();

  ASSERT_TRUE(executor()
                  .Swap({kNew, {"", kWindowMs, "op-1", std::nullopt}, "",
                         {"STATE_CHECKPOINT_NOT_CURRENT"}})
                  .ok());
  SwapJournal j = WaitClosed("op-1");
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_reason << ": " << j.failure_message;
  EXPECT_TRUE(j.checkpoint_acknowledged);
}

// Found in review: the operator refused for the checkpoint who sent the
// same line again with --acknowledge (same --operation-id) was answered
// with the refused operation. That is refused OPERATION_ID_REUSED; the
// same acknowledged command sent again is answered with its operation.
TEST_F(ExecutorTest, AnAcknowledgementUnderTheIdOfTheRefusedSwapIsACommandOfItsOwn) {
  cli_.state_checkpoint_status = "behind";
  SwapJournal refused = ExpectRefusedAtPreflight(reason::kStateCheckpointNotCurrent);
  const SwapParams acknowledged{kNew, {"", kWindowMs, refused.operation_id, std::nullopt}, "",
                                {"STATE_CHECKPOINT_NOT_CURRENT"}};
  absl::Status again = executor().Swap(acknowledged).status();
  EXPECT_EQ(ReasonOf(again), reason::kOperationIdReused) << again;
  EXPECT_THAT(again.message(), HasSubstr("give it a new --operation-id"));
  SwapParams fresh = acknowledged;
  fresh.command.operation_id = "op-acknowledged";
  ASSERT_TRUE(executor().Swap(fresh).ok());
  EXPECT_EQ(WaitClosed("op-acknowledged").phase, SwapPhase::kStable);
  absl::StatusOr<SwapJournal> resent = executor().Swap(fresh);
  ASSERT_TRUE(resent.ok()) << resent.status();
  EXPECT_EQ(resent->phase, SwapPhase::kStable) << "answered with its own operation";
}

// From review: doctor and rotation-plan run together, and the pair was
// as old as the end of the slower: with OpenBao slow to answer doctor, a
// rotation-plan report as old as doctor's run let a rotation begun
// meanwhile pass. rotation-plan is asked again when doctor ends long
// after it, and the swap is refused with nothing touched.
TEST_F(ExecutorTest, ARotationBegunWhileASlowDoctorRanIsSeen) {
  // doctor takes two seconds, and a rotation begins meanwhile
  w_.after_doctor = [this] { StartRotationOnceRotationPlanAnswered(w_, 2000); };
  ExpectRefusedAtPreflight(reason::kRotationInProgress);
  ExpectOldServing();
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 2u) << "asked again once doctor ended";
  EXPECT_EQ(w_.doctor_runs, 1);
}

// The rotation-plan asked again after a slow doctor fails: the swap is
// refused with that failure, nothing touched.
TEST_F(ExecutorTest, ARotationPlanAskedAgainThatFailsRefusesTheSwap) {
  w_.after_doctor = [this] {
    StartRotationOnceRotationPlanAnswered(w_, 2000);
    cli_.rotation_plan_fails = true;  // read next on this thread
  };
  ExpectRefusedAtPreflight(reason::kSubprocessFailed);
  ExpectOldServing();
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 1u) << "the second run failed before it was counted";
}

// A doctor that fails refuses the swap whatever rotation-plan says: a slow
// one is not followed by another rotation-plan.
TEST_F(ExecutorTest, ASlowFailingDoctorIsNotFollowedByAnotherRotationPlan) {
  w_.doctor_verdict = Boom(reason::kDoctorFailed, "doctor: openbao_auth fail");
  w_.after_doctor = [this] {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.steady_ms += 2000;
  };
  ExpectRefusedAtPreflight(reason::kDoctorFailed);
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 1u);
}

// Found in review: the swap asks the service manager beside its doctor
// and rotation-plan, and each bus call may take up to its timeout. A
// manager that answered long after the checks ended left them that old at
// the stop: here a rotation begins while the manager is slow. The checks
// are run again when the answer comes late, and the swap is refused with
// nothing touched.
TEST_F(ExecutorTest, ChecksOlderThanALateServiceManagerAnswerAreRunAgain) {
  w_.before_state = [slow_once = true](World& w) mutable {
    if (!std::exchange(slow_once, false)) return;
    // The bus answers only after the checks ended (the swap read the clock
    // once rotation-plan had answered), 3 s later.
    StartRotationOnceRotationPlanAnswered(w, 3000);
  };
  ExpectRefusedAtPreflight(reason::kRotationInProgress);
  ExpectOldServing();
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 2u) << "the checks ran again";
}

// The released previews print no transitMetadataStatus: their report is
// of the local registry only (reference §2.6). With one installed, the
// release's binary is asked, in the plan's preflight and in the swap, and
// its report is the one the plan judges. Before, every upgrade from a
// released version was refused ROTATION_PLAN_UNTRUSTED on every node.
TEST_F(ExecutorTest, AnInstalledReleaseOlderThanTheTransitCheckIsCheckedByTheNewOne) {
  cli_.installed_predates_transit_check = true;
  absl::StatusOr<PreflightOutcome> pre = executor().Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_TRUE(pre->rotation_plan.ok()) << pre->rotation_plan;
  EXPECT_EQ(pre->rotation.transit_metadata_status, "pass");
  w_.steady_ms += kChecksFreshForMs + 1;  // the swap asks again
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs,
            (std::vector<std::string>{"installed", "release", "installed", "release"}));
}

// The plan's preflight runs doctor and rotation-plan on every node, and the
// first node's swap asked them again tens of milliseconds later on its way
// to the stop: a passing pair is kept for it while fresh.
TEST_F(ExecutorTest, ChecksThatPassedInAPreflightJustBeforeAreNotRunAgain) {
  SettleFiles();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  w_.steady_ms += kChecksFreshForMs;  // as old as a kept pair may be
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.doctor_runs, 1);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 1u);
}

// A kept pair is as old as the start of its rotation-plan, not the end
// of the checks: checks that took 200 ms, kept, are too old 850 ms after
// they ended.
TEST_F(ExecutorTest, AKeptPairsAgeCountsFromTheStartOfItsChecks) {
  SettleFiles();
  w_.after_doctor = [this] {
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.steady_ms += 200;  // within kRotationPlanAskAgainAfterMs: not asked again
  };
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  w_.after_doctor = nullptr;
  w_.steady_ms += kChecksFreshForMs - 150;
  SwapExpectingDoctorRuns(2);
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs.size(), 2u);
}

TEST_F(ExecutorTest, ChecksOlderThanTheirFreshnessAreRunAgain) {
  SettleFiles();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  w_.steady_ms += kChecksFreshForMs + 1;
  w_.rotation_state_now = "pending";  // a rotation began meanwhile
  ExpectRefusedAtPreflight(reason::kRotationInProgress);
  ExpectOldServing();
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.doctor_runs, 2);
}

// doctor and rotation-plan read the registry: a pair kept from before a
// write to it says nothing of what it holds now.
TEST_F(ExecutorTest, ChecksAreRunAgainWhenAFileTheyReadChanged) {
  SettleFiles();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  testing::WriteFile(options_.registry_path, Registry(0) + "\n");
  SwapExpectingDoctorRuns(2);
}

// A file that changed within a timestamp tick of the run could change
// again unseen (command_memo.h): the pair is not kept. Here the file
// clock stands still, so the file never settles however long the
// preflight waits for it.
TEST_F(ExecutorTest, ChecksOfAFileChangedJustBeforeAreNotKept) {
  // The preflight looks a moment after the write, however busy the machine.
  WriteRegistryUnderStillFileClock(1);
  const int64_t start = SteadyMs();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  EXPECT_LE(SteadyMs() - start, Executor::kMaxSettleWaitMs) << "it gave up waiting";
  SwapExpectingDoctorRuns(2);
}

// A loaded node oversleeps: the wait is bounded by the time its pauses
// took, not only by the pauses it asked for.
TEST_F(ExecutorTest, APreflightsWaitIsBoundedByTheTimeItsPausesTook) {
  WriteRegistryUnderStillFileClock(1);
  int pauses = 0;
  w_.on_sleep = [&pauses](World& w) {
    ++pauses;
    w.steady_ms += 15;  // each pause overruns by 15 ms
  };
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  w_.on_sleep = nullptr;
  EXPECT_EQ(pauses, 1) << "9 ms asked, 24 taken: no time left for another 9";
  SwapExpectingDoctorRuns(2);
}

// A file that will not settle within kMaxSettleWaitMs (here the clock is
// 30 ms behind its stamp) is not waited for at all.
TEST_F(ExecutorTest, APreflightDoesNotWaitForAFileThatWillNotSettleSoon) {
  WriteRegistryUnderStillFileClock(-30);
  const int64_t start = SteadyMs();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  EXPECT_EQ(SteadyMs(), start);
  SwapExpectingDoctorRuns(2);
}

// The plan's preflight follows the node's stage by a few milliseconds: it
// waits for the release to settle, so that the first node's swap need not
// run doctor and rotation-plan again on its way to the stop.
TEST_F(ExecutorTest, APreflightJustAfterAWriteWaitsForItToSettle) {
  SettleFiles();
  testing::WriteFile(options_.registry_path, Registry(0) + "\n");
  // A moment after the write, and moving with the executor's pauses.
  const std::string registry = options_.registry_path;
  const int64_t start = w_.steady_ms;
  options_.files_now_unix_ms = [this, registry, start] {
    std::lock_guard<std::mutex> lock(w_.mu);
    return ChangedAtMs(registry) + 1 + (w_.steady_ms - start);
  };
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_GE(w_.steady_ms - start, CommandMemo::kSettledMs - 1) << "it waited";
    EXPECT_LE(w_.steady_ms - start, Executor::kMaxSettleWaitMs) << "no longer than it may";
  }
  SwapExpectingDoctorRuns(1);
}

// Only a passing pair is kept: the swap asks again and judges what it
// finds then.
TEST_F(ExecutorTest, AFailedPreflightIsNotKeptForTheSwap) {
  SettleFiles();
  w_.doctor_verdict = Boom(reason::kDoctorFailed, "doctor: openbao_auth fail");
  absl::StatusOr<PreflightOutcome> pre = executor().Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_FALSE(pre->doctor.verdict.ok());
  w_.doctor_verdict = absl::OkStatus();
  SwapExpectingDoctorRuns(2);
}

// A pair is kept for the release it checked.
TEST_F(ExecutorTest, AKeptPairServesOnlyItsRelease) {
  SettleFiles();
  ASSERT_TRUE(executor().Preflight(kNew).ok());
  SwapJournal j = SwapTo(kNew);
  ASSERT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  const std::string newer = "0.3.0";
  StageRelease(newer);
  SettleFiles();
  ASSERT_TRUE(executor().Preflight(kNew).ok()) << "a preflight of another release";
  SwapJournal again = SwapTo(newer, 0, "op-2");
  EXPECT_EQ(again.phase, SwapPhase::kStable) << again.failure_message;
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.doctor_runs, 3) << "the second swap ran its own";
}

// When neither binary checks Transit live, nothing here can rule out a
// pending key version: refused before anything changes, naming both.
TEST_F(ExecutorTest, WhenNeitherReleaseChecksTransitTheSwapIsRefused) {
  cli_.installed_predates_transit_check = true;
  cli_.release_predates_transit_check = true;
  SwapJournal j = ExpectRefusedAtPreflight(reason::kRotationPlanUntrusted);
  EXPECT_THAT(j.failure_message, HasSubstr("neither " + options_.install_path + " nor "));
  EXPECT_THAT(j.failure_message, HasSubstr("transitMetadataStatus"));
  ExpectOldServing();
  absl::StatusOr<PreflightOutcome> pre = executor().Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(ReasonOf(pre->rotation_plan), reason::kRotationPlanUntrusted);
}

// An upgrade's dry run stages nothing: rotation-plan of the installed
// release only, and nothing is run from the new one. A release too old to
// report the live Transit check cannot stand for the real run's check
// (which asks the new release): not evaluated, rather than refused.
TEST_F(ExecutorTest, ADryRunAsksOnlyTheInstalledReleaseAndSaysWhenItCannotStandIn) {
  absl::StatusOr<PreflightOutcome> pre = executor().PreflightInstalled();
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_TRUE(pre->rotation_plan.ok()) << pre->rotation_plan;
  EXPECT_EQ(pre->rotation.transit_metadata_status, "pass");
  EXPECT_TRUE(pre->doctor.doctor.checks.empty());
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_EQ(w_.rotation_plan_runs, std::vector<std::string>{"installed"});
  }
  cli_.rotation_state = "pending";
  pre = executor().PreflightInstalled();
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(ReasonOf(pre->rotation_plan), reason::kRotationInProgress);
  cli_.rotation_state = "active";
  cli_.installed_predates_transit_check = true;
  pre = executor().PreflightInstalled();
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(ReasonOf(pre->rotation_plan), reason::kNotEvaluated);
  EXPECT_THAT(std::string(pre->rotation_plan.message()), HasSubstr(options_.install_path));
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs,
            (std::vector<std::string>{"installed", "installed", "installed"}));
}

// A rotation-plan that fails is a failure the dry run shows, not a check
// it leaves to the real run: the real run's would fail the same way.
TEST_F(ExecutorTest, ADryRunWhoseRotationPlanFailsReportsTheFailure) {
  cli_.rotation_plan_fails = true;
  absl::StatusOr<PreflightOutcome> pre = executor().PreflightInstalled();
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(ReasonOf(pre->rotation_plan), reason::kSubprocessFailed);
  EXPECT_THAT(std::string(pre->rotation_plan.message()), HasSubstr(options_.install_path));
}

// A release that checks Transit installed is asked alone.
TEST_F(ExecutorTest, AnInstalledReleaseThatChecksTransitIsAskedAlone) {
  cli_.release_predates_transit_check = true;
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_EQ(w_.rotation_plan_runs, std::vector<std::string>{"installed"});
}

// doctor and rotation-plan only read, and run together before a swap.
TEST_F(ExecutorTest, DoctorAndRotationPlanRunTogether) {
  cli_.rendezvous = true;
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(Installed(), kNew);
}

// Run together, doctor and rotation-plan are still judged doctor first:
// when both fail, the doctor's reason is the one reported.
TEST_F(ExecutorTest, WhenDoctorAndRotationPlanBothFailDoctorIsReported) {
  w_.doctor_verdict = MakeError(absl::StatusCode::kFailedPrecondition,
                                reason::kDoctorFailed, "transit.metadata failed");
  cli_.rotation_state = "pending";
  ExpectRefusedAtPreflight(reason::kDoctorFailed);
}

// A systemd swap asks the unit's state as its worker starts, beside its
// journal writes, and its checks before the stop take that answer while it
// is under kChecksFreshForMs old. One older is asked again: here the unit
// failed in the 2 s between the early answer ("running") and the checks,
// and the swap is refused with nothing touched, as if it had been stopped
// from the start.
TEST_F(ExecutorTest, AnEarlyUnitStateGrownOldIsAskedAgain) {
  std::atomic<bool> early_answered{false};
  executor().SetStepHook([&](std::string_view point) {
    if (point != "Preflighted") return;
    // The early answer is in (it runs on a thread of its own), then time
    // passes and the unit fails before the checks ask.
    for (int i = 0; i < 5000 && !early_answered; ++i) {
      {
        std::lock_guard<std::mutex> lock(w_.mu);
        early_answered = w_.states_answered > 0;
      }
      if (!early_answered) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::lock_guard<std::mutex> lock(w_.mu);
    w_.steady_ms += kChecksFreshForMs + 1000;
    w_.running = false;
    w_.failed = true;
  });
  SwapJournal j = ExpectRefusedAtPreflight(reason::kUnitFailed);
  EXPECT_TRUE(early_answered) << "the early state was asked before the checks";
  EXPECT_THAT(j.failure_message, HasSubstr("failed"));
}

TEST_F(ExecutorTest, StoppedUnitIsRefusedBeforeAnythingChanges) {
  w_.running = false;
  SwapJournal j = ExpectRefusedAtPreflight(reason::kUnitFailed);
  EXPECT_THAT(j.failure_message, HasSubstr("stopped"));
}

TEST_F(ExecutorTest, RemovedRecordsWrittenByTheNewVersionRefuseTheRollback) {
  w_.exits_on_start.insert(kNew);
  const std::string registry = options_.registry_path;
  // The new version retires a record as it starts, then exits.
  w_.on_start = [registry](World& w) {
    if (w.Installed() == kNew) testing::WriteFile(registry, Registry(1));
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRollbackFailed);
  EXPECT_EQ(j.failure_reason, reason::kRollbackRefusedRemoved);
  EXPECT_THAT(j.failure_message, HasSubstr("first failure"));
  EXPECT_EQ(Installed(), kNew);  // left as it is for the operator
}

// Reference §8.1: never roll back once a rotation was promoted under the
// newer release. The node judges it itself from its registry, whoever
// sends the rollback (a coordinator compares with its plan's baseline; a
// replayed command or an operator's `node rollback` does not).
TEST_F(ExecutorTest, ARotationPromotedUnderTheNewReleaseRefusesItsRollback) {
  RegistryNamesServedKey("obk2.first");
  SwapJournal up = SwapTo(kNew);
  ASSERT_EQ(up.phase, SwapPhase::kStable) << up.failure_message;
  EXPECT_EQ(up.registry_active_key_id_hash, KeyIdHash("obk2.first"));
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.second"));
  const size_t calls = Calls().size();
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  SwapJournal back = WaitClosed("op-2");
  EXPECT_EQ(back.phase, SwapPhase::kPreflighted) << back.failure_message;
  EXPECT_EQ(back.failure_reason, reason::kRollbackRefusedKeyRotated);
  EXPECT_THAT(back.failure_message, HasSubstr(KeyIdHash("obk2.second")));
  EXPECT_EQ(Calls().size(), calls) << "the provider was touched";
  EXPECT_EQ(Installed(), kNew);
}

// A swap to an older release by hand (a plan refuses a downgrade) is a
// rollback by another name: after a rotation promoted under the newer
// release it is refused before the stop, judged against the key the
// capture of the swap that replaced the older release kept.
TEST_F(ExecutorTest, ASwapToAnOlderReleaseAfterARotationPromotedUnderTheNewerIsRefused) {
  RegistryNamesServedKey("obk2.first");
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  StageRelease(kOld);
  RegistryNamesServedKey("obk2.second");
  const size_t calls = Calls().size();
  SwapJournal down = SwapTo(kOld, 0, "op-2");
  EXPECT_EQ(down.phase, SwapPhase::kPreflighted) << down.failure_message;
  EXPECT_EQ(down.failure_reason, reason::kRollbackRefusedKeyRotated);
  EXPECT_THAT(down.failure_message,
              HasSubstr(KeyIdHash("obk2.first") + " when 0.1.0 last ran on this node"));
  EXPECT_EQ(Calls().size(), calls) << "the provider was touched";
  EXPECT_EQ(Installed(), kNew);
  // Expecting the key the older release served gets the same answer, not
  // ACTIVE_KEY_NOT_EXPECTED's "send it again" (found in review).
  const std::string older_key = KeyIdHash("obk2.first");
  ASSERT_TRUE(executor().Swap({kOld, {older_key, 0, "op-2e", std::nullopt}, ""}).ok());
  EXPECT_EQ(WaitClosed("op-2e").failure_reason, reason::kRollbackRefusedKeyRotated);
  // The release it runs, again (break-glass): not judged.
  EXPECT_EQ(SwapTo(kNew, 0, "op-again").phase, SwapPhase::kStable);
  // The key it last ran with still active: the same downgrade goes ahead.
  RegistryNamesServedKey("obk2.first");
  SwapJournal back = SwapTo(kOld, 0, "op-3");
  EXPECT_EQ(back.phase, SwapPhase::kStable) << back.failure_message;
  EXPECT_EQ(Installed(), kOld);
}

// The capture is the last read before the stop: a rotation promoted after
// the rollback's checks, while the newer provider still served, is seen
// there (found in review).
TEST_F(ExecutorTest, ARotationPromotedAfterTheRollbacksChecksIsSeenAtTheCapture) {
  SwapJournal back = RollBackWithRegistryAtCapture(Registry(0, kSchema, "obk2.second"));
  EXPECT_EQ(back.failure_reason, reason::kRollbackRefusedKeyRotated);
  EXPECT_EQ(Installed(), kNew);
}

// As for a rotation, records removed (`retire-versions --apply`) or a
// schema changed after the rollback's checks are seen at the capture
// (found in review: only the checks judged them).
TEST_F(ExecutorTest, RecordsRemovedAfterTheRollbacksChecksAreSeenAtTheCapture) {
  SwapJournal back = RollBackWithRegistryAtCapture(Registry(1, kSchema, "obk2.first"));
  EXPECT_EQ(back.failure_reason, reason::kRollbackRefusedRemoved) << back.failure_message;
  EXPECT_EQ(Installed(), kNew);
}

TEST_F(ExecutorTest, ASchemaChangedAfterTheRollbacksChecksIsSeenAtTheCapture) {
  SwapJournal back = RollBackWithRegistryAtCapture(Registry(0, "v9", "obk2.first"));
  EXPECT_EQ(back.failure_reason, reason::kRollbackRefusedSchema) << back.failure_message;
  EXPECT_EQ(Installed(), kNew);
}

// A registry that cannot be parsed at the capture proves nothing about
// its key: a rollback judged for a rotation ends there.
TEST_F(ExecutorTest, ARegistryUnreadableAtARollbacksCaptureEndsItBeforeTheStop) {
  SwapJournal back = RollBackWithRegistryAtCapture("{\"schemaVersion\":");
  EXPECT_EQ(back.failure_reason, reason::kMalformedRegistry);
}

// A swap journaled before the capture kept the registry's key (an older
// agent's) is judged by the hash its target was verified serving; undoing
// a rollback (back to the newer release) is not judged, and undoing that
// (back to the older again) is, against its own capture (found in review:
// a chain of rollbacks carried no key and reinstalled the older release).
TEST_F(ExecutorTest, AnOlderJournalIsJudgedByItsVerifiedHashAndARollbacksUndoIsNot) {
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.first"));
  const std::string first = KeyIdHash("obk2.first");
  w_.serves_hash[kOld] = w_.serves_hash[kNew] = first;
  SwapJournal up = SwapTo(kNew);
  ASSERT_EQ(up.phase, SwapPhase::kStable);
  up.registry_active_key_id_hash.clear();  // as an older agent wrote it
  ASSERT_TRUE(journals_.Save(up).ok());
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.second"));
  executor_.reset();  // a restart reads the journal again
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}}).ok());
  SwapJournal refused = WaitClosed("op-2");
  EXPECT_EQ(refused.failure_reason, reason::kRollbackRefusedKeyRotated)
      << refused.failure_message;
  EXPECT_EQ(up.expected_key_id_hash, first);
  EXPECT_THAT(refused.failure_message, HasSubstr(first));  // what op-1's target served
  // Back on the rotated key the older release never saw: a rollback is
  // refused; but once on the older release (rolled back before the
  // rotation), undoing that rollback goes forward and is not judged.
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.first"));
  ASSERT_TRUE(executor().Rollback({"op-1", {"", 0, "op-3", std::nullopt}}).ok());
  ASSERT_EQ(WaitClosed("op-3").phase, SwapPhase::kStable);
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.third"));
  ASSERT_TRUE(executor().Rollback({"op-3", {"", 0, "op-4", std::nullopt}}).ok());
  SwapJournal forward = WaitClosed("op-4");
  EXPECT_EQ(forward.phase, SwapPhase::kStable) << forward.failure_message;
  EXPECT_EQ(Installed(), kNew);
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.fourth"));
  ASSERT_TRUE(executor().Rollback({"op-4", {"", 0, "op-5", std::nullopt}}).ok());
  SwapJournal chain = WaitClosed("op-5");
  EXPECT_EQ(chain.failure_reason, reason::kRollbackRefusedKeyRotated) << chain.failure_message;
  EXPECT_THAT(chain.failure_message, HasSubstr(KeyIdHash("obk2.third")));
  EXPECT_EQ(Installed(), kNew);
}

// Unless the target promoted a Transit version since the capture: an agent
// down in its window (here the target promotes as it starts, then fails),
// and the older release never promoted that key (found in review).
TEST_F(ExecutorTest, ARestoreIsRefusedOnceItsTargetPromotedATransitVersion) {
  testing::WriteFile(options_.registry_path, RegistryAtTransitVersion(1));
  w_.exits_on_start.insert(kNew);
  const std::string registry = options_.registry_path;
  w_.on_start = [registry](World& w) {
    if (w.Installed() == kNew) testing::WriteFile(registry, RegistryAtTransitVersion(2));
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.registry_active_transit_version, 1);
  EXPECT_EQ(j.phase, SwapPhase::kRollbackFailed);
  EXPECT_EQ(j.failure_reason, reason::kRollbackRefusedKeyRotated) << j.failure_message;
  EXPECT_EQ(Installed(), kNew);  // left as it is: fix forward
}

// A restore already in place when the agent restarted (during its verify)
// was judged before it ran: the older release, serving again, may have
// promoted since, and recovery finishes it (found in review).
TEST_F(ExecutorTest, ARestoreAlreadyInPlaceAtARestartIsNotJudgedAgain) {
  testing::WriteFile(options_.registry_path, RegistryAtTransitVersion(1));
  w_.exits_on_start.insert(kNew);
  std::optional<SwapJournal> rolling_back;
  journals_.on_save = [&](const SwapJournal& j) {
    if (j.phase == SwapPhase::kRollingBack && !rolling_back) rolling_back = j;
  };
  ASSERT_EQ(SwapTo(kNew).phase, SwapPhase::kRolledBack);
  ASSERT_TRUE(rolling_back.has_value());
  ASSERT_EQ(Installed(), kOld);
  // As if the agent had died after the restore, before its end was written,
  // and the older release had promoted a rotation since.
  journals_.on_save = nullptr;
  ASSERT_TRUE(journals_.Save(*rolling_back).ok());
  testing::WriteFile(options_.registry_path, RegistryAtTransitVersion(2));
  executor_.reset();
  executor().StartRecovery();
  SwapJournal recovered = WaitClosed("op-1");
  EXPECT_EQ(recovered.phase, SwapPhase::kRolledBack) << recovered.failure_message;
  EXPECT_NE(recovered.failure_reason, reason::kRollbackRefusedKeyRotated);
  ExpectOldServing();
}

// A rotation promoted on this node after the fleet's parity rounds chose
// the expected hash: the new release would start on the registry's new key
// and fail its verification after the stop. The capture, the last read
// before the stop, refuses it with the provider untouched; so does an
// operator's wrong --expected-key-id-hash.
TEST_F(ExecutorTest, ASwapIsRefusedBeforeItsStopWhenItsRegistryNamesAnotherKey) {
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.second"));
  SwapJournal j = ExpectRefusedAtPreflight(reason::kActiveKeyNotExpected);
  EXPECT_EQ(j.expected_key_id_hash, kHash);  // the running provider's
  EXPECT_EQ(j.registry_active_key_id_hash, KeyIdHash("obk2.second"));
  EXPECT_THAT(j.failure_message, HasSubstr("the swap expects " + std::string(kHash)));
  // The provider serves the hash it was expected to: the registry moved.
  EXPECT_THAT(j.failure_message, HasSubstr("the registry on disk is not what it serves"));
  ExpectOldServing();
  // An operator's stale --expected-key-id-hash, the registry and the
  // provider agreeing on another: refused too, saying so.
  RegistryNamesServedKey("obk2.first");
  const std::string stale = KeyIdHash("obk2.before");
  ASSERT_TRUE(executor().Swap({kNew, {stale, 0, "op-stale", std::nullopt}, ""}).ok());
  SwapJournal refused = WaitClosed("op-stale");
  EXPECT_EQ(refused.failure_reason, reason::kActiveKeyNotExpected);
  EXPECT_THAT(refused.failure_message, HasSubstr("or a wrong expected hash"));
  EXPECT_TRUE(Calls().empty()) << "the provider was touched";
  // Given the registry's key, the same swap goes ahead.
  RegistryNamesServedKey("obk2.second");
  const std::string promoted = KeyIdHash("obk2.second");
  ASSERT_TRUE(executor().Swap({kNew, {promoted, 0, "op-2", std::nullopt}, ""}).ok());
  SwapJournal up = WaitClosed("op-2");
  EXPECT_EQ(up.phase, SwapPhase::kStable) << up.failure_message;
  EXPECT_EQ(Installed(), kNew);
}

// A plan resumed onto a node whose registry names another key is refused
// at the capture each time, after the copy of the installed binary: each
// refusal's end prunes the copies of the ones before (found in review:
// they stayed until an operation ended otherwise).
TEST_F(ExecutorTest, ARefusalAtTheCaptureLeavesNoEarlierRefusalsCopy) {
  testing::WriteFile(options_.registry_path, Registry(0, kSchema, "obk2.second"));
  std::vector<SwapJournal> refused;
  for (const char* id : {"op-a", "op-b", "op-c"}) {
    refused.push_back(SwapTo(kNew, 0, id));
    ASSERT_EQ(refused.back().failure_reason, reason::kActiveKeyNotExpected);
    ASSERT_FALSE(refused.back().previous_binary.empty()) << "refused after its copy";
  }
  EXPECT_FALSE(std::filesystem::exists(refused[0].previous_binary));
  EXPECT_FALSE(std::filesystem::exists(refused[1].previous_binary));
  EXPECT_TRUE(journals_.Load("op-a").ok()) << "the record stays";
  EXPECT_TRUE(Calls().empty());
}

// Not for a failed swap's own restore: a target that wrote another active
// key (a key_id it derives otherwise) failed its verify for it, and the
// restore is what undoes it (SwapTest.KeyIdHashChangeRollsBack).
TEST_F(ExecutorTest, AFailedSwapIsRestoredWhateverKeyItsTargetWrote) {
  RegistryNamesServedKey("obk2.first");
  w_.exits_on_start.insert(kNew);
  const std::string registry = options_.registry_path;
  w_.on_start = [registry](World& w) {
    if (w.Installed() == kNew) testing::WriteFile(registry, Registry(0, kSchema, "obk2.second"));
  };
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack) << j.failure_message;
  EXPECT_EQ(j.failure_reason, reason::kUnitFailed);
  ExpectOldServing();
}

// A member's swap under a plan whose facts call the upgrade a wire-format
// change: once the target has been ready, it may have written what the
// older release cannot read, so a failed window keeps it (reference §8.1,
// "never roll back when the new release wrote data in a new wire format").
// Found in review: the node restored the older release on its own, the
// plan's refusal of a rollback notwithstanding.
TEST_F(ExecutorTest, ATargetThatWasReadyUnderAWireFormatPlanIsKeptNotRestored) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedWireFormat};
  });
  w_.serves_hash[kNew] = "another-key";
  const CommandParams member{"", 0, "op-1", std::nullopt, /*bound_to_plan=*/true};
  ASSERT_TRUE(executor().Swap({kNew, member, ""}).ok());
  SwapJournal j = WaitClosed("op-1");
  EXPECT_EQ(j.phase, SwapPhase::kRollbackFailed);
  EXPECT_TRUE(j.target_ready_seen);
  EXPECT_EQ(j.restore_refused_once_served, reason::kRollbackRefusedWireFormat);
  EXPECT_EQ(j.failure_reason, reason::kRollbackRefusedWireFormat);
  EXPECT_THAT(j.failure_message, HasSubstr("fix forward"));
  EXPECT_EQ(Installed(), kNew);
}

// A target that never became ready served nothing: restored as always.
TEST_F(ExecutorTest, ATargetNeverReadyIsRestoredEvenUnderAWireFormatPlan) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedWireFormat};
  });
  w_.exits_on_start.insert(kNew);
  const CommandParams member{"", 0, "op-1", std::nullopt, /*bound_to_plan=*/true};
  ASSERT_TRUE(executor().Swap({kNew, member, ""}).ok());
  SwapJournal j = WaitClosed("op-1");
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack) << j.failure_message;
  EXPECT_FALSE(j.target_ready_seen);
  ExpectOldServing();
}

// Where it forbids the restore, "ready" is on disk as soon as it is seen:
// a crash in the window must not leave a journal that reads "never ready",
// which the restarted agent would roll back from.
TEST_F(ExecutorTest, AReadyThatForbidsTheRestoreIsWrittenAtOnce) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedOneWay};
  });
  int starts = 0;
  w_.on_start = [this, starts](World& w) mutable {
    if (++starts == 1) frozen_at_ = w.steady_ms;
  };
  w_.on_sleep = [this](World& w) {
    if (frozen_at_) w.steady_ms = *frozen_at_;
  };
  ASSERT_TRUE(
      executor().Swap({kNew, {"", kWindowMs, "op-1", std::nullopt, /*bound_to_plan=*/true}, ""})
          .ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  absl::StatusOr<SwapJournal> on_disk = journals_.Load("op-1");
  while (std::chrono::steady_clock::now() < deadline &&
         !(on_disk.ok() && on_disk->target_ready_seen)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    on_disk = journals_.Load("op-1");
  }
  ASSERT_TRUE(on_disk.ok()) << on_disk.status();
  EXPECT_TRUE(on_disk->target_ready_seen) << "still in the window, not yet written";
  EXPECT_EQ(on_disk->phase, SwapPhase::kVerifying);
  ThawClock();
  EXPECT_EQ(WaitClosed("op-1").phase, SwapPhase::kStable);
}

// Found in review: the node refused to go back across the plan's
// wire-format change on its own, but a rollback of the same swap by hand
// (kmsfleetctl node rollback) reinstalled the older release.
TEST_F(ExecutorTest, ARollbackOfASwapItsPlanBoundIsRefusedBeforeAnythingRuns) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedWireFormat};
  });
  const CommandParams member{"", 0, "op-1", std::nullopt, /*bound_to_plan=*/true};
  ASSERT_TRUE(executor().Swap({kNew, member, ""}).ok());
  ASSERT_EQ(WaitClosed("op-1").phase, SwapPhase::kStable);
  absl::StatusOr<SwapJournal> back = executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}});
  EXPECT_EQ(ReasonOf(back.status()), reason::kRollbackRefusedWireFormat) << back.status();
  EXPECT_THAT(std::string(back.status().message()), HasSubstr("fix forward"));
  EXPECT_EQ(Installed(), kNew);
  EXPECT_FALSE(journals_.Load("op-2").ok()) << "nothing recorded";
}

// "Ready" that cannot be written at once is said in the log, and the swap
// goes on: the window is not failed for a write, and the agent still
// knows the target was ready should the window fail.
TEST_F(ExecutorTest, AReadyThatCannotBeWrittenAtOnceIsLoggedAndTheSwapGoesOn) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedWireFormat};
  });
  journals_.FailReadyWrites(true);
  ::testing::internal::CaptureStderr();
  const CommandParams member{"", 0, "op-1", std::nullopt, /*bound_to_plan=*/true};
  ASSERT_TRUE(executor().Swap({kNew, member, ""}).ok());
  SwapJournal j = WaitClosed("op-1");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_TRUE(j.target_ready_seen);
  EXPECT_THAT(log, HasSubstr("cannot record that the target was seen ready"));
  EXPECT_GE(journals_.failed_phase_writes(), 1);
}

// A swap of an operator (break-glass, bound to no plan) is restored as
// before: no plan's facts bind it.
TEST_F(ExecutorTest, AnOperatorsSwapIsNotBoundByThePlansFacts) {
  executor().SetPlanCheck([](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{.restore_refused_once_served = reason::kRollbackRefusedWireFormat};
  });
  w_.serves_hash[kNew] = "another-key";
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack) << j.failure_message;
  EXPECT_EQ(j.restore_refused_once_served, "");
  ExpectOldServing();
}

TEST_F(ExecutorTest, RemovedRecordsThePreviousVersionServedWithDoNotBlock) {
  testing::WriteFile(options_.registry_path, Registry(2));
  w_.serves_hash[kNew] = "another-key";
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack) << j.failure_message;
  EXPECT_EQ(j.failure_reason, reason::kKeyIdHashMismatch);
  EXPECT_EQ(j.registry_removed_records, 2);
  ExpectOldServing();
}

// Finding 3 of docs/reliability.md: an end the full disk would not take
// is written again until it lands, and until then the node stays busy.
TEST_F(ExecutorTest, AnEndThatCannotBeWrittenKeepsTheNodeBusyUntilItIs) {
  ::testing::internal::CaptureStderr();
  journals_.SetDiskFull(true);
  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
  ASSERT_TRUE(WaitForCloseAttempts(3)) << "the close was not retried";

  EXPECT_TRUE(executor().Busy());
  absl::StatusOr<SwapJournal> shown = executor().Get("op-1");
  ASSERT_TRUE(shown.ok()) << shown.status();
  EXPECT_TRUE(shown->open) << "watchers must not see a done operation yet";
  EXPECT_EQ(shown->phase, SwapPhase::kStable);
  EXPECT_TRUE(journals_.Load("op-1")->open);
  absl::StatusOr<SwapJournal> second =
      executor().Swap({kNew, {"", 0, "op-2", std::nullopt}, ""});
  EXPECT_EQ(ReasonOf(second.status()), reason::kOperationInProgress);
  HandoffAnswer answer = executor().HandoffOutcome(v1::Fence());
  EXPECT_EQ(answer.outcome, v1::HANDOFF_RUNNING);
  EXPECT_THAT(answer.detail, HasSubstr("No space left on device"));

  journals_.SetDiskFull(false);
  SwapJournal closed = WaitClosed("op-1");
  EXPECT_EQ(closed.phase, SwapPhase::kStable);
  absl::StatusOr<SwapJournal> on_disk = journals_.Load("op-1");
  ASSERT_TRUE(on_disk.ok());
  EXPECT_FALSE(on_disk->open);
  EXPECT_EQ(on_disk->phase, SwapPhase::kStable);
  EXPECT_FALSE(executor().Busy());
  EXPECT_EQ(executor().HandoffOutcome(v1::Fence()).outcome, v1::HANDOFF_STABLE);
  std::string log = ::testing::internal::GetCapturedStderr();
  size_t logged = 0;
  for (size_t at = log.find("cannot close journal"); at != std::string::npos;
       at = log.find("cannot close journal", at + 1)) {
    ++logged;
  }
  EXPECT_EQ(logged, 1u) << "one error, logged once, however often retried:\n" << log;
  EXPECT_THAT(log, HasSubstr("journal closed after retries"));
}

// An admission whose journal write failed after its rename (the
// directory's fsync) left that open journal on disk: the operation never
// started, yet the hand-off answered HANDOFF_JOURNAL_OPEN (not releasable:
// break-glass) until the agent restarted and closed it.
TEST_F(ExecutorTest, AnAdmissionWhoseJournalLandedButFailedLeavesNothingBehind) {
  journals_.LandButFail(true);
  absl::StatusOr<SwapJournal> refused =
      executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""});
  EXPECT_EQ(ReasonOf(refused.status()), reason::kArtifactIo) << refused.status();
  EXPECT_TRUE(absl::IsNotFound(journals_.Load("op-1").status()));
  EXPECT_EQ(executor().HandoffOutcome(v1::Fence()).outcome, v1::HANDOFF_NEVER_STARTED);
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_THAT(w_.calls, ::testing::Not(::testing::Contains("stop")));
  }
  // Sent again once the disk mends, under the same id, it runs.
  journals_.LandButFail(false);
  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
  EXPECT_EQ(WaitClosed("op-1").phase, SwapPhase::kStable);
}

// Found in review: a phase write that failed was taken for a failure of
// the step, in a phase that was never saved. Before the stop, the swap
// fails with the provider untouched (it stopped and restarted it).
TEST_F(ExecutorTest, APhaseThatCannotBeWrittenBeforeTheStopFailsTheSwapUntouched) {
  journals_.FailPhases({SwapPhase::kStopped});
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kPreflighted) << j.failure_message;
  EXPECT_EQ(j.failure_reason, reason::kArtifactIo);
  EXPECT_THAT(j.failure_message, HasSubstr("No space left on device"));
  std::lock_guard<std::mutex> lock(w_.mu);
  EXPECT_THAT(w_.calls, ::testing::Not(::testing::Contains("stop")));
  EXPECT_TRUE(w_.running);
  EXPECT_EQ(w_.Installed(), kOld);
}

// After the stop, a phase that cannot be written is written again until
// it lands, and the swap goes on from it (it went down the rollback path
// from an unsaved phase, and with every write failing ended
// RollbackFailed with the provider stopped).
TEST_F(ExecutorTest, APhaseThatCannotBeWrittenAfterTheStopIsRetriedThenTheSwapGoesOn) {
  ::testing::internal::CaptureStderr();
  journals_.FailPhases({SwapPhase::kStarted, SwapPhase::kRollingBack});
  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (journals_.failed_phase_writes() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(journals_.failed_phase_writes(), 3) << "the write was not retried";
  EXPECT_TRUE(executor().Busy());
  EXPECT_EQ(journals_.Load("op-1")->phase, SwapPhase::kInstalled);
  EXPECT_EQ(executor().HandoffOutcome(v1::Fence()).outcome, v1::HANDOFF_RUNNING);
  {
    std::lock_guard<std::mutex> lock(w_.mu);
    EXPECT_THAT(w_.calls, ::testing::Not(::testing::Contains("start")))
        << "nothing is started before its phase is on disk";
  }
  journals_.FailPhases({});
  SwapJournal j = WaitClosed("op-1");
  EXPECT_EQ(j.phase, SwapPhase::kStable) << j.failure_message;
  EXPECT_EQ(Installed(), kNew);
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("cannot record phase Started"));
  EXPECT_THAT(log, HasSubstr("phase recorded after retries"));
}

TEST_F(ExecutorTest, StoppingWhileAPhaseCannotBeWrittenLeavesItForTheNextStart) {
  journals_.FailPhases({SwapPhase::kStarted});
  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (journals_.failed_phase_writes() < 3 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GE(journals_.failed_phase_writes(), 3) << "the write was not retried";

  DestroyExecutorOrAbort("a failing phase write");
  absl::StatusOr<SwapJournal> left = journals_.Load("op-1");
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->open) << "the next start must recover it";
  EXPECT_EQ(left->phase, SwapPhase::kInstalled);

  journals_.FailPhases({});
  executor().StartRecovery();
  SwapJournal recovered = WaitClosed("op-1");
  EXPECT_EQ(recovered.phase, SwapPhase::kStable) << recovered.failure_message;
  EXPECT_EQ(Installed(), kNew);
}

TEST_F(ExecutorTest, StoppingWhileAnEndCannotBeWrittenLeavesItForTheNextStart) {
  journals_.SetDiskFull(true);
  ASSERT_TRUE(executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""}).ok());
  ASSERT_TRUE(WaitForCloseAttempts(3)) << "the close was not retried";

  DestroyExecutorOrAbort("a failing close");
  EXPECT_TRUE(journals_.Load("op-1")->open) << "the next start must recover it";

  journals_.SetDiskFull(false);
  executor().StartRecovery();
  SwapJournal recovered = WaitClosed("op-1");
  EXPECT_EQ(recovered.phase, SwapPhase::kStable);
  EXPECT_EQ(Installed(), kNew);
}

// Found in review: a stage of the version a running swap installs was
// taken, replacing the release under the swap. It is refused until the
// operation ends; another version is not held up by it.
TEST_F(ExecutorTest, StagingTheVersionASwapInstallsIsRefusedUntilItEnds) {
  SwapIntoAnEndlessWindow();
  const std::string staged = testing::ReadFile(options_.state_dir + "/artifacts/" + kNew +
                                      "/bao-kms-provider");
  StageRequest again;
  again.version = kNew;
  again.source = "/nonexistent/bao-kms-provider";
  absl::Status s = executor().Stage(again).status();
  EXPECT_EQ(ReasonOf(s), reason::kOperationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr("operation op-1 is swapping"));
  EXPECT_EQ(testing::ReadFile(options_.state_dir + "/artifacts/" + kNew + "/bao-kms-provider"), staged);
  StageRequest other;
  other.version = "0.3.0";
  other.source = "/nonexistent/bao-kms-provider";
  EXPECT_NE(ReasonOf(executor().Stage(other).status()), reason::kOperationInProgress)
      << "only the version being installed is held";
  ThawClock();
  ASSERT_EQ(WaitClosed("op-1").phase, SwapPhase::kStable);
  EXPECT_NE(ReasonOf(executor().Stage(again).status()), reason::kOperationInProgress)
      << "refused no longer once the swap ended";
}

// Found in review: the stage's check of running swaps came before its
// download, and a swap's admission did not look at stages. A stage taken
// while a swap to its version was admitted (between the reservation and
// the journal) went ahead; it is refused now.
TEST_F(ExecutorTest, StagingTheVersionASwapIsAdmittingIsRefused) {
  absl::Status during_admission;
  executor().SetStepHook([&](std::string_view point) {
    if (point != "admitting") return;
    StageRequest again;
    again.version = kNew;
    again.source = "/nonexistent/bao-kms-provider";
    during_admission = executor().Stage(again).status();
  });
  EXPECT_EQ(SwapTo(kNew).phase, SwapPhase::kStable);
  EXPECT_EQ(ReasonOf(during_admission), reason::kOperationInProgress) << during_admission;
  EXPECT_THAT(during_admission.message(),
              HasSubstr("operation op-1, a swap of cp-1 to 0.2.0, is being admitted"));
}

// ... and a swap admitted while a stage of its version ran installed a
// release being replaced. It is refused until the stage ends, with
// nothing journaled; a swap to another version is not held up.
TEST_F(ExecutorTest, ASwapIsRefusedWhileItsVersionIsBeingStaged) {
  StageRelease("0.3.0");
  absl::Status same_version, other_version;
  executor().SetStepHook([&](std::string_view point) {
    if (point != "staging") return;
    same_version = executor().Swap({kNew, {"", kWindowMs, "op-1", std::nullopt}, ""}).status();
    other_version =
        executor().Swap({"0.3.0", {"", kWindowMs, "op-2", std::nullopt}, ""}).status();
  });
  StageRequest again;
  again.version = kNew;
  again.source = "/nonexistent/bao-kms-provider";
  EXPECT_NE(ReasonOf(executor().Stage(again).status()), reason::kOperationInProgress);
  EXPECT_EQ(ReasonOf(same_version), reason::kOperationInProgress) << same_version;
  EXPECT_THAT(same_version.message(), HasSubstr("a stage of " + std::string(kNew)));
  EXPECT_TRUE(absl::IsNotFound(journals_.Load("op-1").status())) << "nothing journaled";
  EXPECT_TRUE(other_version.ok()) << other_version;
  EXPECT_EQ(WaitClosed("op-2").phase, SwapPhase::kStable);
  executor().SetStepHook(nullptr);
  EXPECT_EQ(SwapTo(kNew, 0, "op-3").phase, SwapPhase::kStable) << "admitted once the stage ended";
}

// Found in review: two stages of one version ran side by side and their
// renames interleaved, leaving one's binary beside the other's
// staged.sha256. A second stage of a version now waits for the first to
// end; a stage of another version does not.
TEST_F(ExecutorTest, OneStageOfAVersionWritesAtATime) {
  std::mutex mu;
  std::condition_variable moved;
  std::vector<std::string> events;  // "<point> <which stage>"
  std::vector<std::string> while_first_writes;
  auto seen = [&](const std::string& event) {
    return std::find(events.begin(), events.end(), event) != events.end();
  };
  auto stage = [&](const std::string& version, const std::string& source) {
    StageRequest r;
    r.version = version;
    r.source = source;
    return executor().Stage(r).status();
  };
  std::thread same, other;
  const std::thread::id first = std::this_thread::get_id();
  executor().SetStepHook([&](std::string_view point) {
    if (point != "stage-writing" && point != "stage-done") return;
    std::unique_lock lock(mu);
    const std::thread::id me = std::this_thread::get_id();
    const std::string who = me == first ? "first" : me == same.get_id() ? "same" : "other";
    events.push_back(std::string(point) + " " + who);
    moved.notify_all();
    if (who != "first" || point != "stage-writing") return;
    // The first holds its version's lock: the others start now (and wait
    // for `mu` in here, so they read `same` only once it is set).
    same = std::thread([&] { (void)stage(kNew, "/nonexistent/b"); });
    other = std::thread([&] { (void)stage("0.3.0", "/nonexistent/c"); });
    moved.wait_for(lock, std::chrono::seconds(10), [&] { return seen("stage-done other"); });
    // Time for the same version's stage to get in, were it let in.
    moved.wait_for(lock, std::chrono::seconds(1), [&] { return seen("stage-writing same"); });
    while_first_writes = events;
  });
  (void)stage(kNew, "/nonexistent/a");
  same.join();
  other.join();
  executor().SetStepHook(nullptr);
  EXPECT_EQ(while_first_writes, (std::vector<std::string>{"stage-writing first",
                                                          "stage-writing other",
                                                          "stage-done other"}));
  EXPECT_TRUE(seen("stage-done same")) << "it went ahead once the first ended";
}

// Found in review: a stage queued behind another of its version started
// its download once it got the lock, though the agent had begun to stop
// meanwhile, and the stop waited for it (systemd's TimeoutStopSec, then
// SIGKILL). It answers AGENT_STOPPING instead, having written nothing.
TEST_F(ExecutorTest, AStageQueuedBehindAnotherOfItsVersionEndsWhenTheAgentStops) {
  std::mutex mu;
  std::condition_variable moved;
  bool second_staging = false, second_writing = false;
  absl::Status second;
  std::thread queued;
  const std::thread::id first = std::this_thread::get_id();
  executor().SetStepHook([&](std::string_view point) {
    std::unique_lock lock(mu);
    if (std::this_thread::get_id() != first) {
      second_staging = second_staging || point == "staging";
      second_writing = second_writing || point == "stage-writing";
      moved.notify_all();
      return;
    }
    if (point != "stage-writing") return;
    queued = std::thread([&] {
      StageRequest r;
      r.version = kNew;
      r.source = "/nonexistent/b";
      absl::Status s = executor().Stage(r).status();
      std::lock_guard done(mu);
      second = s;
    });
    moved.wait_for(lock, std::chrono::seconds(10), [&] { return second_staging; });
    executor().RefuseNewCommands();
  });
  StageRequest r;
  r.version = kNew;
  r.source = "/nonexistent/a";
  (void)executor().Stage(r);
  queued.join();
  executor().SetStepHook(nullptr);
  EXPECT_TRUE(second_staging);
  EXPECT_FALSE(second_writing) << "it started to stage after the stop began";
  EXPECT_EQ(ReasonOf(second), reason::kAgentStopping) << second;
}

// Found in review: the agent's stop waited in ~Executor for a swap's
// stabilisation window (up to an hour) to end, past systemd's
// TimeoutStopSec, into a SIGKILL at whatever step came next.
TEST_F(ExecutorTest, StoppingDuringTheWindowLeavesTheSwapForTheNextStart) {
  SwapIntoAnEndlessWindow();
  StopExecutorOrAbort("a stabilisation window");
  EXPECT_TRUE(executor().LeftAnOperationOpen());
  executor_.reset();
  absl::StatusOr<SwapJournal> left = journals_.Load("op-1");
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->open) << "the next start must recover it";
  EXPECT_EQ(left->phase, SwapPhase::kVerifying);
  EXPECT_TRUE(left->target_ready_seen) << "a later rollback reads it";
  EXPECT_EQ(Installed(), kNew);

  ThawClock();
  executor().StartRecovery();
  SwapJournal recovered = WaitClosed("op-1");
  EXPECT_EQ(recovered.phase, SwapPhase::kStable) << recovered.failure_message;
  EXPECT_EQ(Installed(), kNew);
  std::vector<std::string> calls = Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "stop"), 1)
      << "the provider was stopped again: " << ::testing::PrintToString(calls);
}

// The stop cannot write down that the target was seen ready: it says so,
// and still leaves the operation open for the next start.
TEST_F(ExecutorTest, AStopThatCannotRecordTheReadyTargetSaysSoAndLeavesItOpen) {
  SwapIntoAnEndlessWindow();
  journals_.FailPhases({SwapPhase::kVerifying});
  ::testing::internal::CaptureStderr();
  StopExecutorOrAbort("a stabilisation window");
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("cannot record that the target was seen ready"));
  EXPECT_THAT(log, HasSubstr("the next start verifies it again"));
  EXPECT_TRUE(executor().LeftAnOperationOpen());
  absl::StatusOr<SwapJournal> left = journals_.Load("op-1");
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_TRUE(left->open);
  EXPECT_EQ(left->phase, SwapPhase::kVerifying);
  EXPECT_FALSE(left->target_ready_seen);
  ThawClock();
}

// Recovery of open journals stops between them once the agent stops: the
// rest are not installed and started during the stop. Stopped before the
// first here...
TEST_F(ExecutorTest, RecoveryCaughtByTheStopLeavesTheJournalsOpen) {
  for (const char* id : {"op-1", "op-2"}) SaveOpenSwap(id, SwapPhase::kInstalled);
  executor().Stop();
  executor().StartRecovery();
  StopExecutorOrAbort("a recovery");
  EXPECT_TRUE(executor().LeftAnOperationOpen());
  for (const char* id : {"op-1", "op-2"}) {
    EXPECT_TRUE(journals_.Load(id)->open) << id;
  }
  EXPECT_TRUE(Calls().empty()) << ::testing::PrintToString(Calls());
}

// ...and between two: the first recovered (a journal left Staged closes
// as it is), the agent's stop comes, and the second is left open.
TEST_F(ExecutorTest, AStopBetweenTwoRecoveredJournalsLeavesTheSecondOpen) {
  SaveOpenSwap("op-1", SwapPhase::kStaged);
  SaveOpenSwap("op-2", SwapPhase::kInstalled);
  std::thread stopper;
  std::atomic<bool> stopped{false};
  journals_.on_save = [&](const SwapJournal& j) {
    if (j.operation_id != "op-1" || j.open || stopped) return;
    // kmsfleetd's SIGTERM, while the worker is between the two.
    stopper = std::thread([this] { executor().Stop(); });
    while (!executor().Stopping()) std::this_thread::yield();
    stopped = true;
  };
  executor().StartRecovery();
  for (int i = 0; i < 10'000 && !stopped; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_TRUE(stopped) << "op-1 was never closed";
  stopper.join();
  journals_.on_save = nullptr;
  EXPECT_TRUE(executor().LeftAnOperationOpen());
  EXPECT_FALSE(journals_.Load("op-1")->open);
  EXPECT_TRUE(journals_.Load("op-2")->open);
  EXPECT_EQ(journals_.Load("op-2")->phase, SwapPhase::kInstalled);
  EXPECT_TRUE(Calls().empty()) << ::testing::PrintToString(Calls());
}

// Found in review: recovery skipped a journal it could not read, so an
// operation it recorded (the unit stopped, say) was left as it was and the
// node took the next swap.
TEST_F(ExecutorTest, AJournalUnreadableAtStartKeepsEveryNewCommandRefused) {
  const std::string why = "state/journal/op-0.json: unexpected end of JSON";
  journals_.SetUnreadable({why});
  executor().StartRecovery();
  absl::StatusOr<SwapJournal> swap = executor().Swap({kNew, {"", 0, "op-1", std::nullopt}, ""});
  ASSERT_FALSE(swap.ok());
  EXPECT_EQ(ReasonOf(swap.status()), reason::kJournalCorrupt);
  EXPECT_THAT(std::string(swap.status().message()), HasSubstr(why));
  EXPECT_THAT(std::string(swap.status().message()), HasSubstr("restart kmsfleetd"));
  absl::StatusOr<SwapJournal> rollback =
      executor().Rollback({"op-1", {"", 0, "op-2", std::nullopt}});
  EXPECT_EQ(ReasonOf(rollback.status()), reason::kJournalCorrupt);
  EXPECT_FALSE(journals_.Load("op-1").ok()) << "nothing may be recorded";
  EXPECT_EQ(Installed(), kOld);
  EXPECT_EQ(executor().HandoffOutcome(v1::Fence()).outcome, v1::HANDOFF_UNKNOWN);
}

TEST_F(ExecutorTest, RollbackFailingTooEndsRollbackFailed) {
  w_.exits_on_start = {kNew, kOld};
  SwapJournal j = SwapTo(kNew);
  EXPECT_EQ(j.phase, SwapPhase::kRollbackFailed);
  EXPECT_EQ(j.failure_reason, reason::kUnitFailed);
  EXPECT_THAT(j.failure_message, HasSubstr("rollback failed"));
  EXPECT_EQ(Installed(), kOld);
}

// Crash recovery: an open journal in each phase, and the installed digest
// the crash left, decide the outcome.
struct RecoveryCase {
  SwapPhase phase;
  bool target_installed;
  SwapPhase ends;
};

class ExecutorRecoveryTest : public ExecutorTest,
                             public ::testing::WithParamInterface<RecoveryCase> {};

TEST_P(ExecutorRecoveryTest, FinishesOrUndoesTheOpenOperation) {
  const RecoveryCase c = GetParam();
  SwapJournal j;
  j.operation_id = "op-1";
  j.phase = c.phase;
  j.target_version = kNew;
  j.target_sha256 = new_sha_;
  j.target_binary = options_.state_dir + "/artifacts/0.2.0/bao-kms-provider";
  j.previous_version = kOld;
  j.previous_sha256 = old_sha_;
  j.previous_binary = options_.state_dir + "/operations/op-1/previous-binary";
  j.expected_key_id_hash = kHash;
  j.stabilization_ms = kWindowMs;
  w_.sha_of_path[j.previous_binary] = old_sha_;
  if (c.phase == SwapPhase::kRollingBack) j.failure_reason = reason::kKeyIdHashMismatch;
  ASSERT_TRUE(journals_.Save(j).ok());
  if (IsAfterStop(c.phase) || c.phase == SwapPhase::kRollingBack) w_.running = false;
  if (c.target_installed) w_.installed_sha = new_sha_;

  executor().StartRecovery();
  SwapJournal done = WaitClosed("op-1");
  EXPECT_EQ(done.phase, c.ends) << PhaseName(c.phase) << ": " << done.failure_message;
  EXPECT_EQ(Installed(), c.ends == SwapPhase::kStable ? kNew : kOld);
  if (c.phase == SwapPhase::kRollingBack) {
    EXPECT_EQ(done.failure_reason, reason::kKeyIdHashMismatch);
  } else if (c.ends != SwapPhase::kStable) {
    EXPECT_EQ(done.failure_reason, reason::kAgentRestarted);
  }
}

// Found in review: a read error while hashing the installed binary at
// recovery read as "not installed" and rolled back a swap whose target was
// in place. A passing error is asked again; a lasting one is named.
TEST_F(ExecutorTest, RecoveryAsksAgainWhenTheInstalledBinaryCannotBeRead) {
  for (const bool lasting : {false, true}) {
    SCOPED_TRACE(lasting ? "a lasting error" : "a passing error");
    const std::string id = lasting ? "op-2" : "op-1";
    SwapJournal j;
    j.operation_id = id;
    j.phase = SwapPhase::kVerifying;
    j.target_version = kNew;
    j.target_sha256 = new_sha_;
    j.target_binary = options_.state_dir + "/artifacts/0.2.0/bao-kms-provider";
    j.previous_version = kOld;
    j.previous_sha256 = old_sha_;
    j.previous_binary = options_.state_dir + "/operations/" + id + "/previous-binary";
    j.expected_key_id_hash = kHash;
    j.stabilization_ms = kWindowMs;
    w_.sha_of_path[j.previous_binary] = old_sha_;
    ASSERT_TRUE(journals_.Save(j).ok());
    w_.installed_sha = new_sha_;
    w_.observe_failures = lasting ? 100 : Executor::kRecoveryObserveAttempts - 1;

    executor().StartRecovery();
    SwapJournal done = WaitClosed(id);
    if (lasting) {
      EXPECT_EQ(done.phase, SwapPhase::kRolledBack);
      EXPECT_THAT(done.failure_message, HasSubstr("could not be read"));
      EXPECT_THAT(done.failure_message, HasSubstr("Input/output error"));
      EXPECT_EQ(Installed(), kOld);
    } else {
      EXPECT_EQ(done.phase, SwapPhase::kStable) << done.failure_message;
      EXPECT_EQ(Installed(), kNew);
    }
    w_.observe_failures = 0;
    DestroyExecutorOrAbort("a recovery");
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryOpenPhase, ExecutorRecoveryTest,
    ::testing::Values(RecoveryCase{SwapPhase::kIdle, false, SwapPhase::kIdle},
                      RecoveryCase{SwapPhase::kStaged, false, SwapPhase::kStaged},
                      RecoveryCase{SwapPhase::kPreflighted, false, SwapPhase::kPreflighted},
                      RecoveryCase{SwapPhase::kStopped, false, SwapPhase::kRolledBack},
                      RecoveryCase{SwapPhase::kStopped, true, SwapPhase::kStable},
                      RecoveryCase{SwapPhase::kInstalled, false, SwapPhase::kRolledBack},
                      RecoveryCase{SwapPhase::kInstalled, true, SwapPhase::kStable},
                      RecoveryCase{SwapPhase::kStarted, true, SwapPhase::kStable},
                      RecoveryCase{SwapPhase::kVerifying, true, SwapPhase::kStable},
                      RecoveryCase{SwapPhase::kVerifying, false, SwapPhase::kRolledBack},
                      RecoveryCase{SwapPhase::kRollingBack, true, SwapPhase::kRolledBack},
                      RecoveryCase{SwapPhase::kRollingBack, false, SwapPhase::kRolledBack}));

// executor.run_as end to end: a real unprivileged user runs the provider's
// commands on a release staged the way kmsfleetd stages it (0700 state
// directories), with nothing loosened by the test.
class RunAsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: creates a user and runs setpriv";
    user_ = "kmsft" + std::to_string(getpid());
    std::string add = "useradd --system --no-create-home --shell /usr/sbin/nologin " + user_;
    ASSERT_EQ(std::system(add.c_str()), 0) << add;
    // The parent of the state directory is the host's (/var/lib: 0755).
    chmod(dir_.path().c_str(), 0711);
    std::filesystem::create_directories(dir_.File("etc"));
    chmod(dir_.File("etc").c_str(), 0755);
  }
  void TearDown() override {
    if (!user_.empty()) std::system(("userdel " + user_ + " 2>/dev/null").c_str());
  }
  std::string Script(const std::string& name, const std::string& version) {
    std::string path = dir_.File("etc/" + name);
    testing::WriteFile(path, "#!/bin/sh\nexec " FAKE_PROVIDER_PATH " --fake-version " +
                                 version + " \"$@\"\n");
    chmod(path.c_str(), 0755);
    return path;
  }

  testing::TempDir dir_;
  std::string user_;
};

TEST_F(RunAsTest, TheRunAsUserPreflightsAStagedRelease) {
  const std::string etc = dir_.File("etc");
  testing::WriteFile(etc + "/provider.yaml",
                     "configVersion: v1alpha1\nserver:\n  socketPath: " + etc +
                         "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
                         "127.0.0.1:0\ntransit:\n  keyIdScope: {providerName: p-a}\n");
  testing::WriteFile(etc + "/enc.yaml",
                     "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
                     "resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n"
                     "          apiVersion: v2\n          name: p-a\n          endpoint: "
                     "unix://" + etc + "/kms.sock\n");
  chmod((etc + "/provider.yaml").c_str(), 0644);
  chmod((etc + "/enc.yaml").c_str(), 0644);
  std::string release = Script("bao-kms-provider_0.2.0_linux_amd64", kNew);
  absl::StatusOr<std::string> sha = Sha256File(release);
  ASSERT_TRUE(sha.ok());
  testing::WriteFile(etc + "/checksums.txt",
                     *sha + "  bao-kms-provider_0.2.0_linux_amd64\n");

  ExecutorOptions o;
  o.node = "cp-1";
  o.state_dir = dir_.File("state");
  o.install_path = Script("installed", kOld);
  o.artifacts.state_dir = o.state_dir;
  o.artifacts.allow_unsigned = true;
  o.preflight = {etc + "/provider.yaml", etc + "/enc.yaml", std::chrono::seconds(20), user_, {}, nullptr};
  World w;
  FakeServices services(w);
  FakeProbe probe(w);
  FakeWall wall(w);
  Executor executor(o, probe, services, wall);
  absl::StatusOr<StagedArtifact> staged =
      executor.Stage({kNew, release, etc + "/checksums.txt", "", "", "", ""});
  ASSERT_TRUE(staged.ok()) << staged.status();
  struct stat st {};
  ASSERT_EQ(stat(o.state_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u) << "staged as kmsfleetd does";

  absl::StatusOr<PreflightOutcome> pre = executor.Preflight(kNew);
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_TRUE(pre->doctor.verdict.ok()) << pre->doctor.verdict;
  EXPECT_EQ(pre->doctor.binary_version, kNew);
  EXPECT_EQ(pre->installed_version, kOld);
  // Traversable, never listable, by others.
  ASSERT_EQ(stat(o.state_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0711u);
}

// A file store in `dir` holding one journal, op-1's.
std::unique_ptr<JournalStore> StoreWithOp1(testing::TempDir& dir) {
  std::unique_ptr<JournalStore> store = NewFileJournalStore(dir.path());
  SwapJournal j;
  j.operation_id = "op-1";
  EXPECT_TRUE(store->Save(j).ok());
  EXPECT_TRUE(store->Load("op-1").ok());
  return store;
}

// The file store: a journal that cannot be parsed is DATA_LOSS, named.
TEST(FileJournalStoreTest, CorruptJournalIsDataLoss) {
  testing::TempDir dir;
  std::unique_ptr<JournalStore> store = StoreWithOp1(dir);
  testing::WriteFile(dir.File("journal/op-1.json"), "{\"operationId\":");
  absl::StatusOr<SwapJournal> back = store->Load("op-1");
  EXPECT_EQ(back.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReasonOf(back.status()), reason::kJournalCorrupt);
  EXPECT_THAT(std::string(back.status().message()), HasSubstr("op-1.json"));
  EXPECT_EQ(ReasonOf(store->Load("op-2").status()), reason::kOperationNotFound);
}

TEST(FileJournalStoreTest, ARemovedJournalIsGoneAndRemovingNoneIsNoError) {
  testing::TempDir dir;
  std::unique_ptr<JournalStore> store = StoreWithOp1(dir);
  EXPECT_TRUE(store->Remove("op-1").ok());
  EXPECT_TRUE(absl::IsNotFound(store->Load("op-1").status()));
  EXPECT_TRUE(store->LoadAll().journals.empty());
  EXPECT_TRUE(store->Remove("op-1").ok());
}

// Found in review: past its bound the scan stopped without a word, so
// the hand-off answered from part of the history and could miss an open
// or RollbackFailed journal among the unread ones.
TEST(FileJournalStoreTest, AScanPastItsBoundSaysSoAndTheHandOffKeepsTheSlot) {
  testing::TempDir dir;
  std::unique_ptr<JournalStore> store = NewFileJournalStore(dir.path(), 3);
  for (int i = 1; i <= 4; ++i) {
    SwapJournal j;
    j.operation_id = "op-" + std::to_string(i);
    j.open = false;
    j.phase = i == 4 ? SwapPhase::kRollbackFailed : SwapPhase::kStable;
    j.fence_term = 2;
    j.fence_index = static_cast<uint64_t>(i);
    ASSERT_TRUE(store->Save(j).ok());
  }
  JournalStore::Scan scan = store->LoadAll();
  EXPECT_EQ(scan.journals.size(), 3u);
  ASSERT_EQ(scan.unreadable.size(), 1u);
  EXPECT_THAT(scan.unreadable[0], HasSubstr("more than 3 journals"));
  EXPECT_THAT(scan.unreadable[0], HasSubstr(dir.File("journal")));
  HandoffFacts facts;
  facts.journals = scan.journals;
  facts.unreadable = scan.unreadable;
  v1::Fence fence;
  fence.set_term(3);
  fence.set_index(9);
  EXPECT_EQ(DecideHandoff(facts, fence).outcome, v1::HANDOFF_UNKNOWN);

  std::unique_ptr<JournalStore> roomy = NewFileJournalStore(dir.path(), 4);
  EXPECT_TRUE(roomy->LoadAll().unreadable.empty());
}

}  // namespace
}  // namespace kmsfleet
