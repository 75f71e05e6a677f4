// The node executor (architecture.md §4): stages and preflights releases
// and runs one swap or rollback at a time, journaling each phase before it
// runs so that a restarted agent can finish or undo it. The swap machine
// (swap_machine.h) decides every step; the executor carries steps out
// through its seams: a ServiceManager, an Installer, the ProviderCli, a
// JournalStore, a ProviderProbe and two clocks, all replaceable in tests.
//
// Thread-safe: the RPC threads call any method; one worker thread runs the
// operation, and watchers wait on a condition variable.
#ifndef KMSFLEET_NODE_EXECUTOR_H_
#define KMSFLEET_NODE_EXECUTOR_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/core/capture_retention.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/core/manifest_edit.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/node/artifacts.h"
#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/command_memo.h"
#include "kmsfleet/node/cri_client.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/installer.h"
#include "kmsfleet/node/journal_store.h"
#include "kmsfleet/node/preflight.h"
#include "kmsfleet/node/provider_cli.h"
#include "kmsfleet/node/provider_probe.h"
#include "kmsfleet/node/service_manager.h"
#include "kmsfleet/v1/peer.pb.h"

namespace kmsfleet {

struct ExecutorOptions {
  std::string node;  // this node's name, for messages
  std::string state_dir = "/var/lib/kmsfleet";
  std::string unit = "bao-kms-provider.service";
  std::string install_path = "/usr/bin/bao-kms-provider";
  // The provider's state.path; its ".checkpoint" sits beside it.
  std::string registry_path = "/var/lib/openbao-kms/state/key-registry.json";
  ArtifactStoreOptions artifacts;
  PreflightOptions preflight;
  // The time files' change stamps are judged against when a preflight
  // keeps its checks (Executor::CheckAndKeep); CoarseRealTimeMillis when
  // empty. Tests set their own.
  std::function<int64_t()> files_now_unix_ms;
  std::chrono::milliseconds unit_timeout{90000};  // each Stop/Start job
  // How long /ready may take to first answer 200 after a start: the
  // provider's bootstrap grace (60 s) plus start-up.
  std::chrono::milliseconds ready_timeout{90000};
  std::chrono::milliseconds poll_interval{500};
  int64_t default_stabilization_ms = 30000;
  // How many rollbacks in a row the kept copies of replaced releases
  // allow (capture_retention.h).
  size_t rollback_steps = kDefaultRollbackSteps;
  // Set when the provider runs as a static pod (issue 10): the installer
  // replaces this manifest, a release is the kit binary (for doctor and
  // rotation-plan) plus a pulled image, and `install_path` is unused.
  struct StaticPod {
    std::string manifest_path;
    std::string container = kDefaultProviderContainer;
  };
  std::optional<StaticPod> static_pod;
};

// The executor's view of the node. Every reference must outlive it.
struct ExecutorSeams {
  ProviderProbe& probe;
  ServiceManager& services;
  Installer& installer;
  ProviderCli& cli;
  JournalStore& journals;
  const Clock& wall;               // journal stamps and operation ids
  const MonotonicClock& steady;    // windows, deadlines and sleeps
  // The container runtime; required in static-pod mode, unused otherwise.
  ContainerRuntime* runtime = nullptr;
};

// Called after each journaled phase with its name, with "after-rename"
// right after an install, with "manifest-staged" when a static pod's new
// manifest is written and only its last check and rename are left, with
// "capturing" as the capture before the stop begins, with
// "admitting" on a swap's or rollback's
// admission just before it starts (on the caller's thread, its id marked
// as being admitted), and with "staging", "stage-writing" and
// "stage-done" at a stage's start, once it holds its version's lock, and
// just before it returns (its version marked as being staged). Crash
// tests install one that kills or stalls the agent at a named point;
// production installs none.
using StepHook = std::function<void(std::string_view point)>;
// Told, as an operation leaves a phase, how long it spent there (metrics).
using PhaseObserver = std::function<void(std::string_view phase, double seconds)>;

// What every disruptive command carries besides its target.
struct CommandParams {
  std::string expected_key_id_hash;  // "" means the hash observed before
  int64_t stabilization_ms = 0;      // 0 means the configured default
  std::string operation_id;          // "" means a generated one
  // The coordinator's committed plan record (architecture.md §6); checked
  // by the executor's FenceCheck before anything is disrupted.
  std::optional<v1::Fence> fence;
  // The caller speaks for a coordinator (a member certificate): the command
  // must also be the committed plan's step for this node (PlanCheck).
  bool bound_to_plan = false;
  // bound_to_plan: the member whose certificate sent it, which must be the
  // leader this node follows (CheckSentByLeader).
  std::string sent_by = "";
  // Whether the caller has given up (its call's deadline passed, or it
  // cancelled); asked just before the operation starts. Unset: never.
  std::function<bool()> caller_gone = nullptr;
  // An operator's acknowledgement of a registry checkpoint that is not
  // current (Executor::Swap sets it from SwapParams::acknowledgements).
  bool checkpoint_acknowledged = false;
};

struct SwapParams {
  std::string version;
  CommandParams command;
  // "" = whatever is staged; else the staged release must have this
  // digest (StagedDigest; STAGED_ARTIFACT_CHANGED): what a plan preflighted.
  std::string expected_staged_digest;
  // An operator's acknowledgement codes (SwapRequest.acknowledgements):
  // only STATE_CHECKPOINT_NOT_CURRENT, and none for a command bound to a
  // plan, which takes the plan's (PlanBinding); else INVALID_ARGUMENT.
  std::vector<std::string> acknowledgements = {};
};

struct RollbackParams {
  std::string of_operation_id;  // the Stable swap to undo
  CommandParams command;
  // The version it must reinstall (the plan's version before); "" = any.
  std::string expected_version{};
};

// Decides whether a command under `fence` (nullopt: none was sent) may
// disrupt this node. Called with the executor marked busy, so that a
// hand-off query answered meanwhile says "running". Errors carry a reason
// (STALE_TERM, NOT_IN_FLIGHT, FENCE_REQUIRED, ...) and refuse the command.
using FenceCheck = std::function<absl::Status(const std::optional<v1::Fence>& fence)>;

// Waits, deciding nothing, until this node may know `fence`'s record (its
// commit can reach the node just after the command), at most a bounded
// while. Called before the executor is marked busy: a forged fence no
// election will ever commit then keeps nothing busy while it is waited for.
using FenceWait = std::function<void(const v1::Fence& fence)>;

// The check of an agent that runs no election: nothing to check a fence
// against, so a command with a fence is refused (NO_ELECTION) rather than
// silently ignored, and one without is admitted only on a node declared
// `standalone` (a single-node control plane); otherwise it is refused
// (STANDALONE_NOT_CONFIGURED), since nothing stops a second node swapping.
FenceCheck NoElectionFenceCheck(std::string node, bool standalone);

// Whether `s` is Executor::Get's answer for an operation id whose command
// is still being admitted (OPERATION_BEING_ADMITTED): ask again.
bool IsBeingAdmitted(const absl::Status& s);

// Decides whether a command from a caller bound to the plan is the
// committed plan's step for this node (plan_command_guard.h). Called after
// the FenceCheck admitted its fence, and says what else the plan binds it
// to (a swap's restore_refused_once_served, recorded in its journal). The
// default admits, binding nothing: without an election no caller is a
// member.
using PlanCheck = std::function<absl::StatusOr<PlanBinding>(const NodeCommand& command)>;

// Whether a member's Stage, or its Preflight of a staged release, is the
// committed plan's (CheckReleaseAgainstPlan), judged once the commit of
// `fence`, when the coordinator sent one, reached this node or a bounded
// wait for it ended. The default admits: without an election no caller
// is a member.
using ReleaseCheck = std::function<absl::Status(const std::optional<v1::Fence>& fence,
                                                const ReleaseCommand& command)>;

struct PreflightOutcome {
  PreflightResult doctor;
  absl::Status rotation_plan;  // OK when trusted and not pending
  RotationReport rotation;
  // `version` of the installed binary (systemd mode); "" when it failed,
  // which the swap's capture then reports.
  std::string installed_version;
};

class Executor {
 public:
  // The longest a preflight waits for the files its checks read to settle
  // (CheckAndKeep): a release staged just before, stamped in milliseconds
  // or a tick ahead of the coarse clock.
  static constexpr int64_t kMaxSettleWaitMs = 2 * CommandMemo::kSettledMs;

  // Runs on `seams`.
  Executor(ExecutorOptions options, ExecutorSeams seams);
  // kmsfleetd's executor: the binary installer at options.install_path
  // (the manifest installer in static-pod mode), the provider's commands
  // as subprocesses, journals under options.state_dir and the steady
  // clock, over the given probe, service manager, wall clock and (static
  // pod mode) runtime, which must outlive it.
  Executor(ExecutorOptions options, ProviderProbe& probe,
           ServiceManager& services, const Clock& clock,
           ContainerRuntime* runtime = nullptr);
  // Waits for a running operation's worker to finish; a close still being
  // retried is abandoned (its journal stays open on disk, and the next
  // start recovers it).
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Stages a release: the binary, and in static-pod mode the image too
  // (static_pod_release.h; its reference checks come before anything is
  // written; a stage refused before its kit is in place changes nothing,
  // and a static-pod pull that fails after it leaves the version
  // NOT_STAGED: ForgetStagedImage). OPERATION_IN_PROGRESS while a swap
  // to that version is admitted or runs; a swap to it is refused likewise
  // while the stage runs (MarkStaging, ClaimForSwap). The result's
  // staged_digest is this call's own (StagedDigest as it staged it), not
  // that of a stage of the same version run beside it.
  absl::StatusOr<StagedArtifact> Stage(const StageRequest& request);
  // What a swap to `version` would install, as one digest: the staged
  // binary's SHA-256; on a static-pod node, StaticPodStagedDigest of the
  // kit binary and the staged image. Errors: NOT_STAGED, ARTIFACT_IO.
  absl::StatusOr<std::string> StagedDigest(const std::string& version);
  // The plan's rollback readiness: a swap can keep what is installed now,
  // with its SHA-256 in the journal, so a rollback can reinstall it. True
  // when the installed binary (options.install_path) is a regular
  // executable file whose `version` is the version the provider runs; in
  // static-pod mode, when the live manifest names an image the runtime
  // holds (the kubelet restarts it without a registry).
  bool PreviousReleaseKept();
  absl::StatusOr<PreflightOutcome> Preflight(const std::string& version);
  // An upgrade's dry run, with nothing staged: rotation-plan of the
  // release installed now (the kit of the running version on a static-pod
  // node), read only. `rotation_plan` is NOT_EVALUATED where that cannot
  // stand for the real run's check: no kit of the running version staged,
  // or a release too old to report the live Transit check (the real run
  // then asks the new release). `doctor` is left empty.
  absl::StatusOr<PreflightOutcome> PreflightInstalled();

  // Replaces the fence check (default: NoElectionFenceCheck).
  // REQUIRES: called before any Swap or Rollback.
  void SetFenceCheck(FenceCheck check) { fence_check_ = std::move(check); }
  // Sets the wait before a fenced command is reserved (default: none).
  // REQUIRES: called before any Swap or Rollback.
  void SetFenceWait(FenceWait wait) { fence_wait_ = std::move(wait); }
  // Replaces the plan check (default: admit).
  void SetPlanCheck(PlanCheck check) { plan_check_ = std::move(check); }
  // Replaces the release check (default: admit).
  // REQUIRES: called before any Stage or Preflight is served.
  void SetReleaseCheck(ReleaseCheck check) { release_check_ = std::move(check); }
  // A member's Stage or Preflight of a release: ReleaseCheck.
  absl::Status CheckMemberRelease(const std::optional<v1::Fence>& fence,
                                  const ReleaseCommand& command) const {
    return release_check_(fence, command);
  }
  // REQUIRES: called before any operation or recovery starts.
  void SetStepHook(StepHook hook) { step_hook_ = std::move(hook); }
  // REQUIRES: called before any operation or recovery starts.
  void SetPhaseObserver(PhaseObserver observer) { phase_observer_ = std::move(observer); }

  // True while an operation (or crash recovery) runs or is being admitted:
  // the answer to a coordinator's hand-off query.
  bool Busy();

  // The answer to a coordinator's hand-off query under `fence`
  // (architecture.md §6): DecideHandoff over Busy() and every journal, on
  // disk and in memory, so an outcome from before a restart still counts.
  HandoffAnswer HandoffOutcome(const v1::Fence& fence);

  // Start an operation on the worker and return its journal at once.
  // An operation id that already exists returns that operation. Otherwise
  // the fence is checked first, so a deposed coordinator learns that
  // before anything else. Errors: OPERATION_IN_PROGRESS while another runs;
  // InvalidArgument with INVALID_OPERATION_ID for a malformed id or
  // INVALID_ARGUMENT for stabilization_ms beyond an hour; the fence check's
  // refusal; NOT_STAGED; OPERATION_NOT_FOUND for a rollback of an unknown
  // operation, NOT_ROLLBACKABLE for one that did not end Stable, whose
  // target is not installed, or whose copy was pruned (capture_retention.h).
  absl::StatusOr<SwapJournal> Swap(const SwapParams& params);
  absl::StatusOr<SwapJournal> Rollback(const RollbackParams& params);

  // Runs `work`, a disruption that is not a swap (an API server restart,
  // apiserver_restart.h), under a swap's admission: refused
  // OPERATION_IN_PROGRESS while an operation runs or is admitted, then by
  // the fence check (in a cluster: the fence must name this node in
  // flight). Busy() is true while `work` runs, so a hand-off query answers
  // running. Runs on the caller's thread; returns the admission's refusal,
  // or OK once `work` returned.
  // CALLER_GONE, and `work` is not run, when `caller_gone` (if set) says
  // the caller gave up once the command was admitted.
  absl::Status RunAdmitted(const std::optional<v1::Fence>& fence,
                           const std::function<void()>& work,
                           const std::optional<NodeCommand>& bound_to_plan = std::nullopt,
                           const std::function<bool()>& caller_gone = nullptr);

  // The journal of `operation_id`. While a command under that id is being
  // admitted and has no journal yet: Unavailable OPERATION_BEING_ADMITTED
  // (BeingAdmitted), not NotFound, which would tell a coordinator that
  // follows it (sent follow-only) that it never reached the node, and the
  // plan would give the slot back untouched while it starts.
  absl::StatusOr<SwapJournal> Get(const std::string& operation_id);
  // Returns once operation `id` has more than `seen` history entries or is
  // closed, or after `timeout`, with its latest journal. An id being
  // admitted is waited for first (within `timeout`): its first answer is
  // the journal it was admitted with, NotFound if it was refused, or
  // OPERATION_BEING_ADMITTED if `timeout` passed first.
  absl::StatusOr<SwapJournal> WaitForUpdate(const std::string& operation_id,
                                            size_t seen,
                                            std::chrono::milliseconds timeout);

  // Finishes or rolls back the operations that open journals describe, on
  // the worker (crash recovery at start-up). A journal that cannot be read
  // may describe an unfinished operation: from then on every new command
  // is refused JOURNAL_CORRUPT, naming it, until an operator deals with it
  // and restarts the agent.
  void StartRecovery();
  // Recovery reads the installed binary up to this many times, this far
  // apart, before a read error counts (the file is then not known to be
  // the target, and the operation rolls back naming the error).
  static constexpr int kRecoveryObserveAttempts = 5;
  static constexpr std::chrono::milliseconds kRecoveryObserveDelay{200};

  // From now on every new swap, rollback or admitted work (RunAdmitted) is
  // refused AGENT_STOPPING (Unavailable), and so are Stage and Preflight.
  // An operation already running but still before the provider's stop
  // ends at the step before it (AGENT_STOPPING, closed, untouched); one
  // past it goes on until Stop. Called on SIGTERM,
  // before the listeners drain: a command admitted then could stop the
  // provider just before systemd kills the agent.
  void RefuseNewCommands();
  // AGENT_STOPPING (Unavailable) once RefuseNewCommands was called, else
  // OK. Stage and Preflight ask it first: they can run for minutes (a
  // download, doctor), and the agent's stop waits for every call it serves.
  absl::Status RefusalWhileStopping();
  // Stops the worker and waits for it: a wait for a stable provider (or,
  // in static-pod mode, for the new container: StaticPodServiceOptions::
  // stopping) ends at its next poll, leaving its journal open for the
  // next start; an operation before the provider's stop ends there as
  // after RefuseNewCommands; any other step runs to its end. ~Executor
  // calls it too. Not to be called from two threads at once, nor from the
  // worker.
  void Stop();
  // Whether Stop was called (the worker checks it between steps).
  bool Stopping();
  // After Stop: whether the worker left an operation open (the next start
  // must recover it, so kmsfleetd exits non-zero and is started again).
  bool LeftAnOperationOpen();
  // Between these two, every new swap, rollback or admitted work is
  // refused AGENT_STARTING (Unavailable). kmsfleetd's cluster listener
  // serves before the start-up steps that can still fail; a command
  // admitted then would run in an agent whose start fails.
  void RefuseNewCommandsUntilStarted();
  void Started();

 private:
  // The defaults the four-argument constructor owns.
  struct OwnedSeams;
  Executor(ExecutorOptions options, std::unique_ptr<OwnedSeams> owned,
           ProviderProbe& probe, ServiceManager& services, const Clock& clock,
           ContainerRuntime* runtime);

  // executor.cc: journals and the worker.
  absl::Status Persist(SwapJournal& j);
  absl::Status Record(SwapJournal& j, SwapPhase phase);
  using PlanOperation = std::function<absl::StatusOr<SwapJournal>(const std::string& id)>;
  absl::StatusOr<SwapJournal> Start(const CommandParams& command, NodeCommand what,
                                    const PlanOperation& plan);
  // Start's admission of the command under `id`, marked admitting_.
  absl::StatusOr<SwapJournal> Admit(const CommandParams& command, NodeCommand what,
                                    const std::string& id, const PlanOperation& plan);
  absl::Status Reserve(const std::optional<v1::Fence>& fence);
  absl::Status RefusalForUnreadableJournals() const;
  // Why a new command is refused now (stopping, starting, unreadable
  // journals, busy), or OK. REQUIRES: mu_ held.
  absl::Status RefusalNow() const;
  // CALLER_GONE for `operation_id` ("" when it has none), logged.
  absl::Status CallerGone(const std::string& operation_id) const;
  // `j`, the operation an id already names, if it is the command `what`
  // sent with `c`; OPERATION_ID_REUSED otherwise, and for a command that
  // acknowledges a checkpoint `j` was refused for want of acknowledging.
  absl::StatusOr<SwapJournal> SameCommand(SwapJournal j, const NodeCommand& what,
                                          const CommandParams& c) const;
  absl::Status SameOperatorSettings(const SwapJournal& j, const NodeCommand& what,
                                    const CommandParams& c) const;
  void Unreserve();
  // A stage and a swap of one version exclude each other: staging it
  // again replaces, in place, the release the swap installs after the
  // provider's stop, which would then fail on the digest and restore (a
  // restart for nothing). Each side checks the other and marks itself
  // under one lock, so neither starts in the other's window.
  // OPERATION_IN_PROGRESS while a swap installs `version` (open, or
  // reserved and being admitted), else OK. REQUIRES: mu_ held.
  absl::Status RefusalWhileInstalling(const std::string& version) const;
  // Marks `version` as being staged (until UnmarkStaging), or refuses as
  // RefusalWhileInstalling does. Returns the lock that lets one stage of
  // `version` write at a time.
  absl::StatusOr<std::shared_ptr<std::mutex>> MarkStaging(const std::string& version);
  void UnmarkStaging(const std::string& version);
  // The reserved swap's (operation `id`) claim on `version`, held until
  // Unreserve; or OPERATION_IN_PROGRESS while a stage of that version runs.
  absl::Status ClaimForSwap(const std::string& version, const std::string& id);
  absl::StatusOr<SwapJournal> PlanSwap(const SwapParams& p, const std::string& id);
  // Stage's work under its version's lock: a systemd node's binary, or a
  // static-pod node's kit and image (under stage_mu_ too).
  absl::StatusOr<StagedArtifact> StageBinary(const StageRequest& request);
  absl::StatusOr<StagedArtifact> StageStaticPod(const StageRequest& request);
  absl::StatusOr<SwapJournal> PlanRollback(const RollbackParams& p);
  absl::Status CheckStagedDigest(const SwapParams& p, const std::string& staged_digest,
                                 const std::string& what) const;
  absl::StatusOr<SwapJournal> Launch(SwapJournal j);
  uint64_t NextSequence();
  void RemoveRefusedAdmission(const SwapJournal& j, const absl::Status& refusal);
  // The journal of `operation_id`, in memory or on disk.
  absl::StatusOr<SwapJournal> Load(const std::string& operation_id);
  // Load, answering BeingAdmitted for an id being admitted with no journal
  // yet: what callers outside the admission see.
  absl::StatusOr<SwapJournal> LoadForCaller(const std::string& operation_id);
  void Close(SwapJournal& j);
  absl::Status RetryClose(SwapJournal& j, absl::Status failed);
  absl::Status RetryRecord(SwapJournal& next, absl::Status failed);
  absl::Status PersistUntilWritten(SwapJournal& j, absl::Status failed,
                                   const std::string& retrying,
                                   const std::function<void(const absl::Status&)>& each_failure);
  bool SleepUnlessStopping(std::chrono::milliseconds total);
  bool WaitForHealthListener(std::chrono::milliseconds total);
  void Hook(std::string_view point) const;
  absl::Status ShareWithRunAs(const std::string& dir) const;
  std::string NewOperationId() const;

  // swap_runner.cc: carrying out the machine's steps.
  void Run(SwapJournal j, SwapStep step);
  void Recover(SwapJournal j);
  absl::StatusOr<std::string> ObserveInstalledForRecovery();
  absl::Status Carry(SwapJournal& j, SwapAction action);
  absl::Status CheckTarget(const SwapJournal& j);
  absl::Status PreflightTarget(SwapJournal& j);
  absl::Status CheckTargetReleasable(const SwapJournal& j, int64_t& checked_at);
  absl::Status CheckImageHeld(const std::string& image);
  // Static pods: the live manifest's image, which a failed swap restores,
  // is pinned by digest and held by the runtime.
  absl::Status CheckRunningImageRestorable();
  // Static pods: the live manifest's pull policy lets a failed swap
  // restore the provider without a registry (swaps only).
  absl::Status CheckPullPolicyForSwap();
  absl::Status CaptureEvidence(SwapJournal& j);
  // A swap to an older release: the key_id hash when its target last ran
  // here (from the journals); "" otherwise.
  std::string KeyIdHashForADowngrade(const SwapJournal& j);
  absl::Status JudgeCapturedKey(const SwapJournal& j,
                                const absl::StatusOr<RegistryFacts>& facts);
  // A systemd swap asks the service manager for the unit's state when its
  // worker starts, beside the journal writes and checks that come first;
  // PreflightTarget takes the answer when it is under kChecksFreshForMs
  // old. (Found by the CI rehearsal: an early copy of the installed binary
  // too, kept when its digest matched the one read during the checks,
  // missed a binary replaced after the checks; the capture is taken at
  // its step, just before the stop.)
  void BeginEarlyReads(const SwapJournal& j);
  void DropEarlyReads();
  // AGENT_STOPPING (Aborted) once the agent was told to stop, else OK.
  absl::Status EndIfStopping();
  absl::Status RestorePrevious(const SwapJournal& j);
  // CheckManifestInstallable or CheckManifestRestorable (swap_machine.h).
  using ManifestCheck = absl::Status (*)(const SwapJournal&, std::string_view,
                                         const absl::StatusOr<std::string>&);
  absl::Status CheckStaticPodManifest(const SwapJournal& j, ManifestCheck check);
  Installer::LiveCheck LateManifestCheck(const SwapJournal& j, ManifestCheck check);
  absl::Status Verify(SwapJournal& j, const std::string& version);
  absl::Status StopVerifying(SwapJournal& j, const std::string& version, bool ready_unrecorded);
  bool RecordReadyIfItBindsTheRestore(const SwapJournal& j);
  void LeaveOpen();
  bool RefusingNewCommands();
  absl::Status AgentStopping() const;
  absl::Status CheckRegistryForRollback(const SwapJournal& j) const;
  void RecordEvidenceAfter(SwapJournal& j);

  // capture_pruner.cc: deleting copies of replaced releases no rollback
  // can use (capture_retention.h).
  void PruneCapturesAtEnd(const SwapJournal& ending);
  void PruneCapturesFromDisk();
  void PruneCaptures(std::vector<SwapJournal> journals,
                     const std::optional<std::string>& installed_sha256);

  // executor_release.cc: what a release is in each provider mode.
  absl::StatusOr<SwapJournal> PlanStaticPodSwap(const SwapParams& p, const std::string& id);
  struct ReleaseBinaries {
    std::string doctor;         // runs doctor
    std::string doctor_version; // the version `doctor` is (the target's, but see BinariesFor)
    std::string installed;      // for the identity comparison; "" = none
    std::string rotation_plan;  // reads the live state
    // Static pod with executor doctor_command: doctor runs this image
    // instead of `doctor`.
    std::string doctor_image;
    bool operator==(const ReleaseBinaries&) const = default;
  };
  absl::StatusOr<ReleaseBinaries> BinariesFor(const std::string& version,
                                              const std::string& staged_or_captured,
                                              const std::string& image);
  struct ReleaseChecks {
    absl::StatusOr<PreflightResult> doctor;
    absl::StatusOr<RotationReport> rotation_plan;
    // When the rotation-plan that answered started (steady clock): the
    // pair is as old as that report, doctor having started no later.
    int64_t checked_at_ms = 0;
  };
  // A rotation-plan report that a passing doctor outlasted by more than
  // this is asked for again, alone (DoctorAndRotationPlan).
  static constexpr int64_t kRotationPlanAskAgainAfterMs = kChecksFreshForMs / 4;
  ReleaseChecks DoctorAndRotationPlan(const ReleaseBinaries& bin);
  // A passing pair from the plan's preflight, kept for the swap that
  // follows within kChecksFreshForMs (RecentChecks).
  struct KeptChecks {
    ReleaseBinaries bin;
    std::string files;  // CheckedFilesKey(bin), before and after
    ReleaseChecks checks;  // as fresh as checks.checked_at_ms
  };
  FilesIdentity CheckedFilesOnceSettled(const ReleaseBinaries& bin);
  ReleaseChecks CheckAndKeep(const ReleaseBinaries& bin);
  std::optional<KeptChecks> RecentChecks(const ReleaseBinaries& bin);
  std::vector<std::string> CheckedFiles(const ReleaseBinaries& bin) const;
  std::string CheckedFilesKey(const ReleaseBinaries& bin) const;
  std::optional<StagedArtifact> RunningKit(const std::string& version);
  absl::StatusOr<std::string> InstalledRotationPlanBinary();
  bool InstalledIsTheRunningRelease();
  std::string OtherRotationPlanBinary(const ReleaseBinaries& bin);
  absl::StatusOr<RotationReport> TrustedRotationPlan(const ReleaseBinaries& bin);
  absl::StatusOr<std::string> ImageOfRelease(const std::string& manifest);
  absl::StatusOr<std::string> RunningVersion(const SwapJournal& j);
  absl::Status CheckReleaseFromCapture(const SwapJournal& j);
  absl::Status CheckRollbackCapture(const SwapJournal& j);
  absl::Status CheckRoomForCapture(const std::string& evidence_dir);
  // The installed binary's `version`, run beside the swap's preflight
  // checks, with the digest the file had just before: the capture reuses
  // it when its copy has that digest (the version is a function of the
  // bytes), so no provider command runs alone between preflight and stop.
  struct InstalledVersion {
    std::string sha256;
    std::string version;
  };
  std::optional<InstalledVersion> VersionOfInstalled();

  // Set by PreflightTarget, taken by the capture that follows it; only the
  // worker thread touches it.
  std::optional<InstalledVersion> installed_version_;
  // BeginEarlyReads; only the worker thread touches them.
  std::future<absl::StatusOr<UnitState>> early_unit_state_;
  int64_t early_unit_state_at_ms_ = 0;  // steady clock
  std::string early_for_;  // the operation they were begun for
  std::mutex kept_checks_mu_;
  std::optional<KeptChecks> kept_checks_;  // guarded by kept_checks_mu_

  ExecutorOptions options_;
  std::unique_ptr<OwnedSeams> owned_;  // null when the seams were given
  ExecutorSeams seams_;
  FenceCheck fence_check_;
  FenceWait fence_wait_;
  PlanCheck plan_check_ = [](const NodeCommand&) -> absl::StatusOr<PlanBinding> {
    return PlanBinding{};
  };
  ReleaseCheck release_check_ = [](const std::optional<v1::Fence>&, const ReleaseCommand&) {
    return absl::OkStatus();
  };
  StepHook step_hook_;
  PhaseObserver phase_observer_;

  std::mutex mu_;
  // One static-pod stage at a time: a second one run beside a slower first
  // (a coordinator asking again after a failed commit or a new term) had
  // its image record dropped by the first's ForgetStagedImage after it
  // answered Staged, and the next preflight halted NOT_STAGED.
  std::mutex stage_mu_;
  std::condition_variable changed_;
  std::map<std::string, SwapJournal> ops_;  // guarded by mu_
  bool busy_ = false;                       // guarded by mu_
  // Operation ids whose command Start is admitting, and how many times
  // (the same command may be sent again while the first is admitted).
  std::map<std::string, int> admitting_;  // guarded by mu_
  // Versions a Stage is writing, and how many Stages of each (MarkStaging).
  std::map<std::string, int> staging_;  // guarded by mu_
  // One stage of a version writes at a time (found in review: two of one
  // version interleaved their renames, leaving one's binary beside the
  // other's staged.sha256). Per version, as a download can take minutes;
  // dropped with the version's last mark, when no stage holds or waits.
  std::map<std::string, std::shared_ptr<std::mutex>> stage_locks_;  // guarded by mu_
  // The version the reserved swap installs and its operation id, from its
  // admission's ClaimForSwap until Unreserve.
  struct SwapClaim {
    std::string version;
    std::string operation_id;
  };
  std::optional<SwapClaim> claimed_for_swap_;  // guarded by mu_
  // An ended operation whose closed journal is still being written.
  std::optional<PendingClose> pending_close_;  // guarded by mu_
  bool stopping_ = false;                      // guarded by mu_; set by Stop
  bool left_open_ = false;                     // guarded by mu_; see LeftAnOperationOpen
  bool refusing_new_ = false;                  // guarded by mu_; RefuseNewCommands
  bool starting_ = false;                      // guarded by mu_; Started
  // Journals StartRecovery could not read: path and why.
  std::vector<std::string> unreadable_at_start_;  // guarded by mu_
  // The highest SwapJournal::sequence given or found on disk; unset until
  // StartRecovery's scan or the first Launch.
  std::optional<uint64_t> last_sequence_;  // guarded by mu_
  // Set while the recovery worker runs the operations found open at start.
  std::atomic<bool> recovering_{false};
  std::thread worker_;
  // Asks the installed binary's kept answers at start (LearnKeptAnswers).
  std::thread learner_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_EXECUTOR_H_
