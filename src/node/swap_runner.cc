// Carrying out the swap machine's steps (architecture.md §4) on the
// executor's worker thread: the machine (src/core/swap_machine.cc) says
// what to journal and what to do next; each action here observes or
// changes the node through a seam and reports how it went.
#include <sys/stat.h>

#include <future>
#include <optional>

#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/key_id_hash.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

constexpr int kEvidenceAttempts = 3;
// A machine that neither closes nor fails within this many steps is a bug;
// the operation is closed rather than looping.
constexpr int kMaxSteps = 64;
// The registry pair as read together: re-read until the registry is the
// same before and after the checkpoint.
struct RegistryPair {
  std::optional<std::string> registry, checkpoint;  // nullopt: absent
};

absl::StatusOr<RegistryPair> ReadRegistryPair(const std::string& path) {
  for (int attempt = 0; attempt < kEvidenceAttempts; ++attempt) {
    absl::StatusOr<std::string> reg = ReadBoundedFile(path, kMaxRegistryFileBytes);
    absl::StatusOr<std::string> cp = ReadBoundedFile(path + ".checkpoint", kMaxRegistryFileBytes);
    absl::StatusOr<std::string> again = ReadBoundedFile(path, kMaxRegistryFileBytes);
    if (!reg.ok() && absl::IsNotFound(reg.status())) return RegistryPair{};  // no state yet
    KMSFLEET_RETURN_IF_ERROR(reg.status());
    if (!again.ok() || *again != *reg) continue;  // written meanwhile
    RegistryPair pair;
    pair.registry = *reg;
    if (cp.ok()) pair.checkpoint = *cp;
    return pair;
  }
  return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                   path + " kept changing while it was read");
}

// The hash the provider exports for the registry's active key (reference
// §3.2); "" when the registry names none.
std::string ActiveKeyIdHash(const RegistryFacts& facts) {
  return facts.active_key_id.empty() ? "" : KeyIdHash(facts.active_key_id);
}

// A wait cut short by the agent's stop (Verify): the journal stays open at
// its phase, as after a crash there, and the next start recovers it.
bool LeftForTheNextStart(const absl::Status& result) {
  return absl::IsCancelled(result) && ReasonOf(result) == reason::kAgentStopping;
}

}  // namespace

void Executor::Run(SwapJournal j, SwapStep step) {
  // However the operation ends, early reads it did not take go with it.
  struct DropEarly {
    Executor* executor;
    ~DropEarly() { executor->DropEarlyReads(); }
  } drop_early{this};
  for (int i = 0; i < kMaxSteps; ++i) {
    RecordFailure(j, step.failure);
    absl::Status result = absl::OkStatus();
    if (step.record) result = Record(j, *step.record);
    // Stopping while a phase could not be written: the journal stays open
    // at its last phase on disk, for the next start to recover.
    if (absl::IsCancelled(result)) return LeaveOpen();
    if (step.action == SwapAction::kClose) break;
    if (result.ok()) result = Carry(j, step.action);
    if (LeftForTheNextStart(result)) {
      Log(LogLevel::kWarn, std::string(result.message()),
          {{"node", options_.node}, {"operation", j.operation_id},
           {"phase", std::string(PhaseName(j.phase))}, {"reason", ReasonOf(result)}});
      return LeaveOpen();
    }
    if (!result.ok()) {
      Log(LogLevel::kWarn, std::string(result.message()),
          {{"node", options_.node},
           {"operation", j.operation_id},
           {"phase", std::string(PhaseName(j.phase))},
           {"action", std::string(ActionName(step.action))},
           {"reason", ReasonOf(result)}});
    }
    step = NextSwapStep(j, {step.action, result});
  }
  RecordEvidenceAfter(j);
  PruneCapturesAtEnd(j);
  Close(j);
}

// A read error is asked again a few times before it counts: taken for
// "not the target", it rolls back a swap that may have been about to end
// Stable. An absent file is an answer, not an error.
absl::StatusOr<std::string> Executor::ObserveInstalledForRecovery() {
  absl::StatusOr<std::string> installed = seams_.installer.Observe();
  for (int attempt = 1; attempt < kRecoveryObserveAttempts; ++attempt) {
    if (installed.ok() || absl::IsNotFound(installed.status())) break;
    Log(LogLevel::kWarn, "cannot read the installed binary, asking again",
        {{"node", options_.node}, {"error", std::string(installed.status().message())}});
    seams_.steady.SleepFor(kRecoveryObserveDelay);
    installed = seams_.installer.Observe();
  }
  return installed;
}

void Executor::Recover(SwapJournal j) {
  absl::StatusOr<std::string> installed =
      RecoveryReadsInstalledDigest(j) ? ObserveInstalledForRecovery() : std::string();
  std::string unreadable;
  if (!installed.ok() && !absl::IsNotFound(installed.status())) {
    unreadable = std::string(installed.status().message());
  }
  SwapStep first = RecoverySwapStep(j, installed.ok() ? *installed : "", unreadable);
  Log(LogLevel::kInfo, "recovering operation",
      {{"node", options_.node},
       {"operation", j.operation_id},
       {"phase", std::string(PhaseName(j.phase))},
       {"action", std::string(ActionName(first.action))}});
  Run(std::move(j), std::move(first));
}

absl::Status Executor::Carry(SwapJournal& j, SwapAction action) {
  switch (action) {
    case SwapAction::kCheckTarget:
      return CheckTarget(j);
    case SwapAction::kPreflight:
      return PreflightTarget(j);
    case SwapAction::kCaptureEvidence:
      return CaptureEvidence(j);
    case SwapAction::kStopUnit:
      return seams_.services.Stop(options_.unit, options_.unit_timeout);
    case SwapAction::kInstallTarget: {
      KMSFLEET_RETURN_IF_ERROR(CheckStaticPodManifest(j, CheckManifestInstallable));
      absl::Status s = seams_.installer.Install(j.target_binary, j.target_sha256,
                                                LateManifestCheck(j, CheckManifestInstallable));
      if (s.ok()) Hook("after-rename");
      return s;
    }
    case SwapAction::kStartUnit:
      return seams_.services.Start(options_.unit, options_.unit_timeout);
    case SwapAction::kVerifyTarget:
      return Verify(j, j.target_version);
    case SwapAction::kCheckRollbackAllowed:
      return CheckRegistryForRollback(j);
    case SwapAction::kRestorePrevious:
      return RestorePrevious(j);
    case SwapAction::kVerifyPrevious:
      return Verify(j, j.previous_version);
    case SwapAction::kClose:
      break;
  }
  return absl::OkStatus();
}

// Re-checks the release to install against its recorded digest.
absl::Status Executor::CheckTarget(const SwapJournal& j) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string digest, seams_.installer.Digest(j.target_binary));
  if (digest != j.target_sha256) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kChecksumMismatch,
                     "SHA-256 of " + j.target_binary + " is " + digest +
                         ", expected " + j.target_sha256,
                     {{"file", j.target_binary},
                      {"expected", j.target_sha256},
                      {"actual", digest}});
  }
  return absl::OkStatus();
}

absl::Status Executor::PreflightTarget(SwapJournal& j) {
  // Reach the service manager before anything is stopped: a bus we cannot
  // talk to must fail here, where nothing has changed yet. Asked beside
  // the checks below, which only read; its answer is judged first.
  std::future<absl::StatusOr<UnitState>> unit_state;
  if (early_unit_state_.valid() && early_for_ == j.operation_id) {
    // Asked when the worker started; asked again if that was long ago.
    if (ChecksStillFresh(early_unit_state_at_ms_, seams_.steady.NowSteadyMillis())) {
      unit_state = std::move(early_unit_state_);
    } else {
      early_unit_state_.wait();
    }
  }
  if (!unit_state.valid()) {
    unit_state = std::async(std::launch::async,
                            [this] { return seams_.services.State(options_.unit); });
  }
  int64_t checked_at = 0;
  absl::Status checks = CheckTargetReleasable(j, checked_at);
  KMSFLEET_ASSIGN_OR_RETURN(UnitState unit, unit_state.get());
  KMSFLEET_RETURN_IF_ERROR(CheckUnitRunning(unit, options_.unit));
  // Each bus call may take up to its timeout, and a rotation begun
  // meanwhile must not pass on an older rotation-plan (found in review).
  // Checks that failed refuse the swap however old they are.
  if (checks.ok() && !ChecksStillFresh(checked_at, seams_.steady.NowSteadyMillis())) {
    Log(LogLevel::kInfo,
        "the checks were more than a second old when the service manager answered; "
        "checking the release again",
        {{"node", options_.node}, {"operation", j.operation_id}});
    checks = CheckTargetReleasable(j, checked_at);  // the kept pair is used up
  }
  KMSFLEET_RETURN_IF_ERROR(checks);
  if (j.kind == "rollback") KMSFLEET_RETURN_IF_ERROR(CheckRegistryForRollback(j));
  if (j.expected_key_id_hash.empty()) {
    v1::NodeState now = seams_.probe.Observe();
    if (now.key_id_hash_metric().empty() || !now.ready()) {
      return MakeError(absl::StatusCode::kFailedPrecondition,
                       reason::kKeyIdHashMissing,
                       "no expected key_id hash given and the running provider "
                       "shows none (ready=" + std::string(now.ready() ? "true" : "false") +
                           ")");
    }
    j.expected_key_id_hash = now.key_id_hash_metric();
  }
  return absl::OkStatus();
}

// The target release's own checks before the stop: installable, its image
// held (static pods), and doctor and rotation-plan passing: run now, or the
// passing pair a preflight just kept while it is still fresh
// (RecentChecks). `checked_at` gets how old they are (the start of the
// rotation-plan that answered: ReleaseChecks::checked_at_ms),
// which the caller judges against the service manager's answer.
absl::Status Executor::CheckTargetReleasable(const SwapJournal& j, int64_t& checked_at) {
  KMSFLEET_RETURN_IF_ERROR(seams_.installer.CheckCanInstall());
  KMSFLEET_ASSIGN_OR_RETURN(std::string image, ImageOfRelease(j.target_binary));
  KMSFLEET_RETURN_IF_ERROR(CheckImageHeld(image));
  KMSFLEET_RETURN_IF_ERROR(CheckRunningImageRestorable());
  if (j.kind == "swap") KMSFLEET_RETURN_IF_ERROR(CheckPullPolicyForSwap());
  KMSFLEET_ASSIGN_OR_RETURN(ReleaseBinaries bin,
                            BinariesFor(j.target_version, j.target_binary, image));
  installed_version_.reset();
  std::future<std::optional<InstalledVersion>> installed;
  if (!options_.static_pod) {
    installed = std::async(std::launch::async, [this] { return VersionOfInstalled(); });
  }
  std::optional<KeptChecks> kept = RecentChecks(bin);
  ReleaseChecks checks = kept ? std::move(kept->checks) : DoctorAndRotationPlan(bin);
  checked_at = checks.checked_at_ms;
  if (installed.valid()) installed_version_ = installed.get();
  KMSFLEET_RETURN_IF_ERROR(checks.doctor.status());
  KMSFLEET_RETURN_IF_ERROR(checks.doctor->verdict);
  KMSFLEET_RETURN_IF_ERROR(checks.rotation_plan.status());
  if (j.kind != "swap") return CheckRotationSettled(*checks.rotation_plan);
  KMSFLEET_RETURN_IF_ERROR(
      CheckRotationPlanAllowsUpgrade(*checks.rotation_plan, j.checkpoint_acknowledged));
  // Said where it takes effect: nothing else tells that a waiver was used.
  if (std::string why = CheckpointNotCurrentWhy(*checks.rotation_plan); !why.empty()) {
    Log(LogLevel::kWarn, "registry checkpoint not current; the swap goes on as acknowledged",
        {{"node", options_.node}, {"operation", j.operation_id}, {"checkpoint", why}});
  }
  return absl::OkStatus();
}

// Room in `evidence_dir` for the copy of the installed binary (a static
// pod's manifest is small) beyond the reserve (CheckFreeSpace).
absl::Status Executor::CheckRoomForCapture(const std::string& evidence_dir) {
  uint64_t size = 0;
  struct stat st {};
  if (!options_.static_pod && ::stat(options_.install_path.c_str(), &st) == 0) {
    size = static_cast<uint64_t>(st.st_size);
  }
  return CheckFreeSpace(evidence_dir, size, options_.artifacts.free_space_reserve_bytes);
}

// The installed release (copied, for rollback) and the registry pair,
// read together, just before the stop.
absl::Status Executor::CaptureEvidence(SwapJournal& j) {
  // The last step before the provider's stop. An agent told to stop
  // (SIGTERM) ends the operation here, before and after the capture, the
  // provider untouched, rather than stopping it during the drain that
  // precedes the agent's exit; the plan sends the swap again under a new
  // id once the agent is back.
  KMSFLEET_RETURN_IF_ERROR(EndIfStopping());
  Hook("capturing");
  j.evidence_dir = options_.state_dir + "/operations/" + j.operation_id;
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options_.state_dir + "/operations", 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(j.evidence_dir, 0700));
  KMSFLEET_RETURN_IF_ERROR(ShareWithRunAs(j.evidence_dir));
  // A swap's copy of the installed binary keeps the state directory's
  // free-space reserve; a rollback, the way back, is not refused for it.
  if (j.kind == "swap") KMSFLEET_RETURN_IF_ERROR(CheckRoomForCapture(j.evidence_dir));
  KMSFLEET_ASSIGN_OR_RETURN(CapturedRelease previous,
                            seams_.installer.Capture(j.evidence_dir));
  j.previous_binary = previous.path;
  j.previous_sha256 = previous.sha256;
  if (j.kind == "swap") KMSFLEET_RETURN_IF_ERROR(CheckReleaseFromCapture(j));
  if (j.kind == "rollback") KMSFLEET_RETURN_IF_ERROR(CheckRollbackCapture(j));
  KMSFLEET_ASSIGN_OR_RETURN(j.previous_version, RunningVersion(j));
  // Before the registry's read, which it is judged against: a promotion
  // during a long scan is then still seen (found in review).
  if (j.kind == "swap") j.key_id_hash_before_undone = KeyIdHashForADowngrade(j);
  KMSFLEET_ASSIGN_OR_RETURN(RegistryPair pair, ReadRegistryPair(options_.registry_path));
  if (!pair.registry) return EndIfStopping();
  j.registry_sha256 = Sha256Hex(*pair.registry);
  KMSFLEET_RETURN_IF_ERROR(
      WriteFileAtomic(j.evidence_dir + "/key-registry.json", *pair.registry, 0600));
  if (pair.checkpoint) {
    j.checkpoint_sha256 = Sha256Hex(*pair.checkpoint);
    KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(
        j.evidence_dir + "/key-registry.json.checkpoint", *pair.checkpoint, 0600));
  }
  // A rollback keeps the facts of the swap it undoes: the older binary
  // served with those.
  absl::StatusOr<RegistryFacts> facts =
      ParseRegistryFacts(*pair.registry, options_.registry_path);
  if (facts.ok()) {
    j.registry_active_key_id_hash = ActiveKeyIdHash(*facts);
    j.registry_active_transit_version = facts->active_transit_version;
  }
  if (facts.ok() && j.kind == "swap") {
    j.registry_schema = facts->schema_version;
    j.registry_removed_records = facts->removed_records;
  }
  KMSFLEET_RETURN_IF_ERROR(JudgeCapturedKey(j, facts));
  return EndIfStopping();  // a signal during the capture
}

// The capture's registry read is the last before the stop: the provider
// it replaces serves until then, and a promotion since the checks is
// judged here.
absl::Status Executor::JudgeCapturedKey(const SwapJournal& j,
                                        const absl::StatusOr<RegistryFacts>& facts) {
  // A rollback, or a swap to an older release: a registry it cannot parse
  // proves nothing, and is refused.
  if (!j.key_id_hash_before_undone.empty()) {
    KMSFLEET_RETURN_IF_ERROR(facts.status());
    KMSFLEET_RETURN_IF_ERROR(CheckNoRotationSinceCapture(j, ActiveKeyIdHash(*facts)));
  }
  // A rollback's registry rule too (the older binary rejects removed
  // records and another schema), judged at admission and before its
  // doctor: found in review, a `retire-versions --apply` while the doctor
  // ran passed. This read is the last before the stop.
  if (j.kind == "rollback" && facts.ok()) {
    KMSFLEET_RETURN_IF_ERROR(CheckRollbackAllowed(CapturedRegistryFacts(j), *facts));
  }
  // Then a swap's expected key (after the rotation judgement, whose "fix
  // forward" an expected hash of the older release's would otherwise hide
  // behind "send it again"; found in review). On a refusal only, the
  // provider is asked what it serves: whether the registry or the fleet
  // moved.
  if (!facts.ok() || CheckActiveKeyAsExpected(j).ok()) return absl::OkStatus();
  return CheckActiveKeyAsExpected(j, seams_.probe.Observe().key_id_hash_metric());
}

// A swap to an older release, by hand (a plan refuses a downgrade), is
// judged as a rollback is: against the key active when its target last
// ran here, which the capture of the operation that replaced it then
// kept. Only then are the journals read. "" for anything else, and when
// none of them replaced that release (installed outside kmsfleetd, or
// its journal moved away): not judged, and said.
std::string Executor::KeyIdHashForADowngrade(const SwapJournal& j) {
  if (!SwapGoesBack(j)) return "";
  JournalStore::Scan scan = seams_.journals.LoadAll();
  std::string hash = KeyIdHashWhenLastReplaced(scan.journals, j.target_version);
  const std::string unread =
      scan.unreadable.empty()
          ? ""
          : " (" + std::to_string(scan.unreadable.size()) + " journal(s) could not be read)";
  if (hash.empty()) {
    Log(LogLevel::kInfo,
        "no readable operation on this node replaced " + j.target_version +
            "; whether a rotation was promoted since it last ran is not judged" + unread,
        {{"node", options_.node}, {"operation", j.operation_id}});
  } else if (!unread.empty()) {
    Log(LogLevel::kWarn,
        "judging the swap to " + j.target_version +
            " by the last readable operation that replaced it" + unread,
        {{"node", options_.node}, {"operation", j.operation_id}});
  }
  return hash;
}

void Executor::BeginEarlyReads(const SwapJournal& j) {
  if (j.kind != "swap" || options_.static_pod) return;
  early_for_ = j.operation_id;
  early_unit_state_at_ms_ = seams_.steady.NowSteadyMillis();
  early_unit_state_ = std::async(std::launch::async,
                                 [this] { return seams_.services.State(options_.unit); });
}

void Executor::DropEarlyReads() {
  if (early_unit_state_.valid()) early_unit_state_.wait();
  early_unit_state_ = {};
  early_for_.clear();
}

absl::Status Executor::EndIfStopping() {
  if (!RefusingNewCommands() && !Stopping()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kAborted, reason::kAgentStopping,
                   "kmsfleetd on " + options_.node +
                       " is stopping: the operation ended before the provider's stop, "
                       "which was not touched",
                   {{"node", options_.node}});
}

absl::Status Executor::CheckRegistryForRollback(const SwapJournal& j) const {
  KMSFLEET_RETURN_IF_ERROR(CheckRestoreOnceServed(j));
  absl::StatusOr<std::string> reg = ReadBoundedFile(options_.registry_path, kMaxRegistryFileBytes);
  if (!reg.ok() && absl::IsNotFound(reg.status())) return absl::OkStatus();
  KMSFLEET_RETURN_IF_ERROR(reg.status());
  KMSFLEET_ASSIGN_OR_RETURN(RegistryFacts facts,
                            ParseRegistryFacts(*reg, options_.registry_path));
  KMSFLEET_RETURN_IF_ERROR(CheckRollbackAllowed(CapturedRegistryFacts(j), facts));
  // A swap's restore already in place (the agent restarted after it) is
  // not judged again; only that restore needs the read.
  bool restored_already = false;
  if (j.kind == "swap" && j.phase == SwapPhase::kRollingBack) {
    absl::StatusOr<std::string> installed = seams_.installer.Observe();
    restored_already = installed.ok() && *installed == j.previous_sha256;
  }
  KMSFLEET_RETURN_IF_ERROR(
      CheckNoPromotionSinceCapture(j, facts.active_transit_version, restored_already));
  // The node's own judgement, whoever sent the rollback: a coordinator
  // compares hashes with its plan's baseline, a replayed command or an
  // operator's `node rollback` would not. (A registry gone now passed
  // above: the older release then bootstraps, which it does only for an
  // unrotated key, failing closed otherwise: reference §6.)
  return CheckNoRotationSinceCapture(j, ActiveKeyIdHash(facts));
}

absl::Status Executor::RestorePrevious(const SwapJournal& j) {
  if (j.previous_binary.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInstallFailed,
                     "no previous release was captured");
  }
  // A static-pod manifest edited by hand since the capture (after the
  // install, or while the agent was down: crash recovery rolls back
  // through here too) is kept and the operation ends RollbackFailed: an
  // operator's change is never undone behind their back. Not on a systemd
  // node (CheckManifestRestorable says why).
  KMSFLEET_RETURN_IF_ERROR(CheckStaticPodManifest(j, CheckManifestRestorable));
  // The installer reinstalls only if the capture is not in place already
  // (a rollback interrupted after its rename).
  return seams_.installer.Install(j.previous_binary, j.previous_sha256,
                                  LateManifestCheck(j, CheckManifestRestorable));
}

// On a static-pod node, `check` (core) judges the live manifest before the
// installer writes over it: its hash, absent, or unreadable after a few
// tries.
absl::Status Executor::CheckStaticPodManifest(const SwapJournal& j, ManifestCheck check) {
  if (!options_.static_pod) return absl::OkStatus();
  return check(j, options_.static_pod->manifest_path, ObserveInstalledForRecovery());
}

// The same check again from inside the installer, right before its rename
// (found in review: an edit made while the new manifest was written and
// fsynced was written over). None on a systemd node.
Installer::LiveCheck Executor::LateManifestCheck(const SwapJournal& j, ManifestCheck check) {
  if (!options_.static_pod) return nullptr;
  return [this, &j, check] {
    Hook("manifest-staged");
    return CheckStaticPodManifest(j, check);
  };
}

absl::Status Executor::Verify(SwapJournal& j, const std::string& version) {
  const int64_t window_ms = j.stabilization_ms;
  const int64_t start = seams_.steady.NowSteadyMillis();
  const int64_t deadline = start + options_.ready_timeout.count() + window_ms;
  VerifyTracker tracker({version, j.expected_key_id_hash}, window_ms, options_.unit);
  bool ready_unrecorded = false;  // target_ready_seen set here, not yet on disk
  for (;;) {
    const int64_t now = seams_.steady.NowSteadyMillis();
    if (now > deadline) break;
    // The manager and the provider, asked together: the poll that ends the
    // window costs the slower of the two, not their sum.
    auto unit_state = std::async(std::launch::async,
                                 [this] { return seams_.services.State(options_.unit); });
    v1::NodeState state = seams_.probe.ObserveForVerify();
    absl::StatusOr<UnitState> unit = unit_state.get();
    std::optional<UnitState> seen;
    if (unit.ok()) seen = *unit;
    if (state.ready() && j.phase == SwapPhase::kVerifying && !j.target_ready_seen) {
      j.target_ready_seen = true;
      ready_unrecorded = !RecordReadyIfItBindsTheRestore(j);
    }
    VerifyStep step = tracker.Observe(seen, state, now);
    if (step.verdict == VerifyVerdict::kFailed) return step.problem;
    if (tracker.Stable(now)) return absl::OkStatus();
    const std::chrono::milliseconds next(
        tracker.NextPollInMs(seams_.steady.NowSteadyMillis(), options_.poll_interval.count()));
    const bool waited = tracker.WatchesForListener() ? WaitForHealthListener(next)
                                                : SleepUnlessStopping(next);
    if (!waited) return StopVerifying(j, version, ready_unrecorded);
  }
  // The reason of what was still missing at the deadline (NOT_READY,
  // KEY_ID_HASH_MISSING, ...).
  absl::Status last = tracker.last_problem();
  std::string why = ReasonOf(last).empty() ? reason::kNotReady : ReasonOf(last);
  std::string what = last.ok() ? "the provider never answered" : std::string(last.message());
  return MakeError(absl::StatusCode::kDeadlineExceeded, why,
                   "version " + version + " was not stable for " +
                       std::to_string(window_ms) + " ms within the ready timeout: " + what);
}

// Until the next poll, or until the provider's health listener, refusing
// connections, starts to accept them, whichever is first: a restarted
// provider is then polled as soon as it binds, not up to a quarter poll
// later, and its window, which counts from the poll that sees it ready,
// starts that much sooner. A refused connection on the node costs
// microseconds; a full poll, a few milliseconds of CPU that the starting
// provider needs (bench/README.md). A listener that accepts from the first
// look (the unreachable read was another, or timed out) waits the poll
// out: only a refusal seen here tells that it just bound. False when the
// agent is stopping.
bool Executor::WaitForHealthListener(std::chrono::milliseconds total) {
  constexpr std::chrono::milliseconds kLook(1);
  const int64_t until = seams_.steady.NowSteadyMillis() + total.count();
  bool refused = false;
  for (int64_t now = seams_.steady.NowSteadyMillis(); now < until;
       now = seams_.steady.NowSteadyMillis()) {
    if (Stopping()) return false;
    const std::optional<bool> accepts = seams_.probe.HealthListenerAccepts();
    if (!accepts || (*accepts && !refused)) {
      return SleepUnlessStopping(std::chrono::milliseconds(until - now));
    }
    if (*accepts) return true;
    refused = true;
    seams_.steady.SleepFor(std::min<std::chrono::milliseconds>(
        kLook, std::chrono::milliseconds(until - now)));
  }
  return !Stopping();
}

// Where the target having been ready forbids the restore
// (CheckRestoreOnceServed), that is written at once: a crash in the
// window must not leave a journal the restarted agent reads as "never
// ready" and restores from. Elsewhere it rides on the next write (the
// normal path pays no extra fsync). True when on disk.
bool Executor::RecordReadyIfItBindsTheRestore(const SwapJournal& j) {
  if (j.restore_refused_once_served.empty()) return false;
  if (absl::Status s = seams_.journals.Save(j); !s.ok()) {
    Log(LogLevel::kWarn, "cannot record that the target was seen ready: " +
                             std::string(s.message()),
        {{"node", options_.node}, {"operation", j.operation_id}});
    return false;
  }
  return true;
}

// The window can last an hour: a stop that waited it out would pass
// systemd's TimeoutStopSec and end in SIGKILL at an arbitrary point. Left
// here, the operation is what a crash in the window leaves, and the next
// start verifies again (node-swap.md §5). That the target was seen ready
// is kept: a later rollback reads it to judge the registry's evidence.
absl::Status Executor::StopVerifying(SwapJournal& j, const std::string& version,
                                     bool ready_unrecorded) {
  if (ready_unrecorded) {
    if (absl::Status s = seams_.journals.Save(j); !s.ok()) {
      Log(LogLevel::kWarn, "cannot record that the target was seen ready: " +
                               std::string(s.message()),
          {{"node", options_.node}, {"operation", j.operation_id}});
    }
  }
  return MakeError(absl::StatusCode::kCancelled, reason::kAgentStopping,
                   "kmsfleetd is stopping while " + j.operation_id + " waits for " +
                       version + " to be stable; the next start verifies it again",
                   {{"operation", j.operation_id}});
}

// The registry pair after the operation, hashed into the journal. A
// rejected start (rolled back before the target was ever verified) must
// have left the pair byte-identical: a difference is named.
void Executor::RecordEvidenceAfter(SwapJournal& j) {
  if (j.evidence_dir.empty()) return;  // nothing was captured or changed
  absl::StatusOr<RegistryPair> pair = ReadRegistryPair(options_.registry_path);
  if (!pair.ok()) {
    Log(LogLevel::kWarn, std::string(pair.status().message()),
        {{"node", options_.node}, {"operation", j.operation_id},
         {"reason", ReasonOf(pair.status())}});
    return;
  }
  j.registry_sha256_after = pair->registry ? Sha256Hex(*pair->registry) : "";
  j.checkpoint_sha256_after = pair->checkpoint ? Sha256Hex(*pair->checkpoint) : "";
  if (absl::Status s = CheckEvidenceUnchanged(j, options_.registry_path); !s.ok()) {
    Log(LogLevel::kError, std::string(s.message()),
        {{"node", options_.node}, {"operation", j.operation_id}, {"reason", ReasonOf(s)}});
    j.failure_message += "; [" + ReasonOf(s) + "] " + std::string(s.message());
  }
}

}  // namespace kmsfleet
