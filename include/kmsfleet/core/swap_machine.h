// The node swap as a pure state machine (architecture.md §4): phase names,
// the journal record, crash-recovery decisions, the rollback-refusal rule
// (reference §6, §7.4) and the verification verdict over a NodeState.
// No I/O and no clock: the executor (src/node/executor.cc) observes the
// world and passes times in.
// Thread-safe: free functions over values; StabilityWindow is a value.
#ifndef KMSFLEET_CORE_SWAP_MACHINE_H_
#define KMSFLEET_CORE_SWAP_MACHINE_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/unit_state.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

// NOTE: the names are persisted in journals; never rename one.
enum class SwapPhase {
  kIdle,
  kStaged,
  kPreflighted,
  kStopped,
  kInstalled,
  kStarted,
  kVerifying,
  kStable,
  kRollingBack,
  kRolledBack,
  kRollbackFailed,
};

// "Idle", "Staged", ..., "RollbackFailed".
std::string_view PhaseName(SwapPhase phase);
absl::StatusOr<SwapPhase> ParsePhase(std::string_view name);
// Stable, RolledBack and RollbackFailed end an operation.
bool IsTerminal(SwapPhase phase);
// True once the unit may have been stopped, i.e. a failure must roll back.
bool IsAfterStop(SwapPhase phase);
// True if the machine may move from `from` to `to`: one step forward on
// the happy path, RollingBack from any phase after the stop, and
// RolledBack/RollbackFailed from RollingBack.
bool IsAllowedTransition(SwapPhase from, SwapPhase to);

// One operation as the journal records it, written before each phase runs.
struct SwapJournal {
  std::string operation_id;
  std::string kind = "swap";  // "swap" | "rollback"
  SwapPhase phase = SwapPhase::kIdle;
  bool open = true;
  std::string target_version, previous_version;
  std::string target_sha256, previous_sha256;
  // What to install forward, and the copy of the binary that was installed
  // before (evidence), used to roll back.
  std::string target_binary, previous_binary;
  std::string expected_key_id_hash;
  // A rollback: the swap it undoes; "" for a swap, and for a rollback
  // journaled before the field.
  std::string of_operation_id;
  // A rollback: the release the swap it undoes installed, found installed
  // when the rollback was admitted. Its capture must still find it: a
  // change made since (by hand, during the rollback's checks) is refused,
  // not restored over. "" for a swap, and for a rollback journaled before
  // the field.
  std::string replaces_sha256;
  // A swap: the staged release's digest it was admitted against (what
  // `node stage` prints as staged_digest, and a plan's expected digest),
  // so that the same id sent again expecting another can be told apart.
  // "" for a rollback, and for a swap journaled before the field.
  std::string staged_digest;
  // A swap whose plan acknowledged STATE_CHECKPOINT_NOT_CURRENT.
  bool checkpoint_acknowledged = false;
  int64_t stabilization_ms = 30000;
  // The fence (plan record term and index) the operation was admitted
  // under; 0/0 when the agent runs no election.
  uint64_t fence_term = 0, fence_index = 0;
  // The order in which the node admitted its operations: one more than
  // any other journal it held then. Unlike the fence (0/0 for an
  // operator's command) and the wall clock (which can step back), it
  // orders every operation on the node. 0 in a journal written before the
  // field.
  uint64_t sequence = 0;
  // Evidence taken before the stop (reference §6); the copies sit in
  // evidence_dir and are never restored automatically.
  std::string evidence_dir;
  std::string registry_sha256, checkpoint_sha256, registry_schema;
  // `removed` records in the registry at the capture (for a rollback
  // operation: at the capture of the swap it undoes).
  int registry_removed_records = 0;
  // The key_id hash of the registry's activeKeyId at this operation's
  // capture; "" when the registry named none or the journal predates the
  // field.
  std::string registry_active_key_id_hash;
  // A rollback to an older release: the key_id hash active before the
  // operation it undoes installed the newer one (KeyIdHashBeforeUndone),
  // which must still be active; a swap to an older release (one by hand):
  // the hash when its target last ran on the node
  // (KeyIdHashWhenLastReplaced), set at its capture; "" when not judged.
  std::string key_id_hash_before_undone;
  // The registry's active Transit version at this operation's capture; 0
  // when none was named or the journal predates the field.
  int64_t registry_active_transit_version = 0;
  // The pair's hashes when the operation ended ("" when there was none).
  std::string registry_sha256_after, checkpoint_sha256_after;
  // The target answered /ready at least once while it was verified. A
  // swap rolled back without it was a rejected start, which must have
  // left the registry pair byte-identical.
  bool target_ready_seen = false;
  // A swap of a plan whose target must not be undone once it has been
  // ready (PlanBinding::restore_refused_once_served): the reason code, or
  // "" when the previous release may be restored. Recorded at admission.
  std::string restore_refused_once_served;
  std::string failure_reason, failure_message;  // the first failure
  std::vector<std::string> history;             // "Phase@unix_ms"
  int64_t started_unix_ms = 0, updated_unix_ms = 0;
};

// The id of an operation started without one, "op-<unix_ms>-<n>" with n
// below 100000 from `random`: the agent's and kmsfleetctl's (which names
// it should its start go unanswered) alike.
std::string NewOperationId(int64_t now_unix_ms, uint32_t random);

// Moves `journal` to `to` at `now_unix_ms`, appending to its history.
// Errors: FailedPrecondition when the transition is not allowed.
absl::Status Advance(SwapJournal& journal, SwapPhase to, int64_t now_unix_ms);

std::string SerializeJournal(const SwapJournal& journal);
// Errors: InvalidArgument, JOURNAL_CORRUPT naming `what` and the field.
absl::StatusOr<SwapJournal> ParseJournal(std::string_view text,
                                         std::string_view what);

// What to do with an open journal found at start-up.
enum class RecoveryAction {
  kClose,         // nothing was changed on the node; close it as aborted
  kResumeVerify,  // the target is installed: start the unit and verify
  kRollBack,      // reinstall the previous binary, start, verify
  kCloseAsIs,     // the journal already holds a terminal phase
};
struct RecoveryPlan {
  RecoveryAction action;
  std::string why;
};
// Whether PlanRecovery's decision depends on the installed digest: only
// for an operation stopped after the unit's stop, not rolling back.
bool RecoveryReadsInstalledDigest(const SwapJournal& journal);
// Decides from the journal and the observed digest of the installed binary
// ("" when it is absent). `unreadable`: why the installed file could not
// be hashed, "" when it could; it is then not known to be the target.
RecoveryPlan PlanRecovery(const SwapJournal& journal,
                          std::string_view installed_sha256,
                          std::string_view unreadable = "");

// Registries hold a few snapshots per Transit version; a larger
// key-registry.json (or checkpoint) is refused, never buffered.
inline constexpr size_t kMaxRegistryFileBytes = 16 << 20;

// What the rollback rule needs from key-registry.json.
struct RegistryFacts {
  std::string schema_version;
  int removed_records = 0;
  // The registry's `activeKeyId` (reference §6), "" when it has none. The
  // node hashes it (KeyIdHash) to compare with what it captured. Defaulted
  // so that facts built from a schema and a count need not name it.
  std::string active_key_id = {};
  // The `transitVersion` of the snapshot in state `active`, 0 when none
  // names one.
  int64_t active_transit_version = 0;
};
// Errors: InvalidArgument, MALFORMED_REGISTRY naming `what`.
absl::StatusOr<RegistryFacts> ParseRegistryFacts(std::string_view json,
                                                 std::string_view what);
// Whether a swap that failed after the stop may reinstall the release it
// replaced, before its registry is looked at (CheckRollbackAllowed): not
// once its target has been ready under a plan that refuses that
// (restore_refused_once_served), whose reason the refusal carries. The
// operation then ends RollbackFailed, the target left in place, and the
// plan enters break-glass: fix forward (reference §8.1). A swap to the
// version it replaced crosses nothing and may be restored. The same check
// refuses a node's rollback of such a swap once Stable.
absl::Status CheckRestoreOnceServed(const SwapJournal& j);

// Whether an operation's reason says CheckRestoreOnceServed kept its
// target (ROLLBACK_REFUSED_ONE_WAY, ROLLBACK_REFUSED_WIRE_FORMAT).
bool KeptAServedTarget(std::string_view reason);
// Whether an operation that ended RollbackFailed kept its target on
// purpose: KeptAServedTarget, or CheckNoPromotionSinceCapture's
// ROLLBACK_REFUSED_KEY_ROTATED (the target promoted a key the older
// release never did). Going back is then what must not be done.
bool KeptTheTargetOnPurpose(std::string_view reason);

// A plan's rollback of `of` (a swap on `node`) must reinstall `expected`,
// the plan's version before; "" = not checked. FailedPrecondition
// ROLLBACK_TARGET_MISMATCH (metadata node, operation_id,
// previous_version, expected_version) when `of` replaced another version.
absl::Status CheckRollbackTarget(const SwapJournal& of, const std::string& expected,
                                 const std::string& node);

// Refuses an older binary over a registry it may not read, comparing with
// the registry captured before the swap (`before`; nullopt when there was
// none): FailedPrecondition with ROLLBACK_REFUSED_REMOVED_RECORDS when
// `removed` records appeared or grew since, ROLLBACK_REFUSED_SCHEMA_CHANGED
// when the schema changed. Records the older binary already served with do
// not block its return (reference §7.4).
absl::Status CheckRollbackAllowed(const std::optional<RegistryFacts>& before,
                                  const RegistryFacts& now);
// Whether installing version `to` over `from` goes to an older release by
// SemVer precedence; true when either does not parse.
bool GoesToAnOlderRelease(std::string_view from, std::string_view to);
// What a rollback of `undone` must find still active: the key_id hash at
// `undone`'s capture (for a journal written before that field, or with no
// registry then, the hash its target was verified serving), when the
// rollback installs an older release than `undone` did (a version that
// does not parse counts as older); "" when it installs the same or a
// newer one, which reads what the older promoted.
std::string KeyIdHashBeforeUndone(const SwapJournal& undone);
// Whether `j` is a swap to an older release than the one it captured
// running (a swap by hand: a plan refuses a downgrade), judged as a
// rollback is. Never the same version again, whatever its string.
bool SwapGoesBack(const SwapJournal& j);
// The key_id hash the registry named when `version` last ran on the node:
// the capture of the latest closed operation, in the node's admission
// order (AdmissionOrder), that stopped it (its previous_version is
// `version` and it passed its stop). Its registry_active_key_id_hash,
// or for a journal written before that field its expected_key_id_hash.
// "" when the journals know no such operation.
std::string KeyIdHashWhenLastReplaced(const std::vector<SwapJournal>& journals,
                                      std::string_view version);
// Refuses a rollback operation to an older release once a rotation was
// promoted since the operation it undoes installed the newer one
// (reference §8.1: "a rotation completed under the new release that the
// older release never promoted"): FailedPrecondition with
// ROLLBACK_REFUSED_KEY_ROTATED when the registry's active key_id hash now
// (`hash_now`; "" when it names none, not judged) differs from
// SwapJournal::key_id_hash_before_undone. Between the two only the newer
// release ran on the node. A swap to an older release is judged the same
// way, against the hash when that release last ran on the node. OK when
// there is nothing to judge, and for any operation's own restore
// (RollingBack: see the definition).
absl::Status CheckNoRotationSinceCapture(const SwapJournal& j, std::string_view hash_now);
// Refuses a swap before its stop when the key registry's active key_id
// hash, read at the capture (SwapJournal::registry_active_key_id_hash),
// is not the hash the swap expects (expected_key_id_hash: the fleet's
// parity hash, the operator's --expected-key-id-hash, or the running
// provider's): FailedPrecondition with ACTIVE_KEY_NOT_EXPECTED. The new
// release starts on that registry, serves its active key and would fail
// its verification after the provider had been stopped. `served_now`,
// the running provider's metric hash ("" when not asked), only words
// the refusal: when it is the expected one, the registry on disk is what
// moved, not the fleet. OK for a rollback (CheckNoRotationSinceCapture
// judges those) and when either hash is unknown.
absl::Status CheckActiveKeyAsExpected(const SwapJournal& j, std::string_view served_now = "");
// The order in which a node admitted its operations: sequence, then (for
// journals written before it) fence, start and last write, then id.
std::tuple<uint64_t, uint64_t, uint64_t, int64_t, int64_t, std::string_view> AdmissionOrder(
    const SwapJournal& j);
// Refuses a failed swap's restore of an older release once its target
// promoted a Transit version (the registry's active snapshot moved past
// the one captured: `transit_now` above
// SwapJournal::registry_active_transit_version), as a target that served
// for long may have (an agent down in its window): FailedPrecondition
// with ROLLBACK_REFUSED_KEY_ROTATED. A key_id derived otherwise for the
// same Transit version is what the verify catches, and is restored. OK
// for anything else: a restore to the same or a newer version, one
// already in place (`restored_already`: the agent restarted after it),
// and when nothing was captured.
absl::Status CheckNoPromotionSinceCapture(const SwapJournal& j, int64_t transit_now,
                                          bool restored_already);
// The facts the journal captured (nullopt when no registry was captured).
std::optional<RegistryFacts> CapturedRegistryFacts(const SwapJournal& journal);

// ---- The machine's next step ----
// The executor (src/node/executor.cc) carries out one action at a time and
// feeds its outcome back; the machine says what to journal and what to do
// next, like a raft Ready: persist `record` first, then act.
enum class SwapAction {
  kCheckTarget,            // re-hash the binary to install
  kPreflight,              // unit running, doctor, rotation-plan, expected hash
  kCaptureEvidence,        // the installed release and the registry pair
  kStopUnit,
  kInstallTarget,          // atomically, skipped when already in place
  kStartUnit,
  kVerifyTarget,           // the stabilisation window on the target version
  kCheckRollbackAllowed,   // the registry now against the capture
  kRestorePrevious,        // reinstall the capture, unless it is in place
  kVerifyPrevious,         // the window on the previous version
  kClose,                  // the operation is over: close the journal
};
std::string_view ActionName(SwapAction action);

struct SwapStep {
  // Set: the failure to record (the first failure is kept; see
  // RecordFailure) before `record` is journaled.
  absl::Status failure;
  // Set: advance the journal to this phase and persist it before acting.
  std::optional<SwapPhase> record;
  SwapAction action = SwapAction::kClose;
};

// The outcome of the action the previous step asked for.
struct SwapEvent {
  SwapAction done;
  absl::Status result;
};

// The first step of a new operation.
SwapStep FirstSwapStep();
// The step after `event` for `journal` (already updated by the previous
// step). A failure before the stop closes the operation where it is; after
// it, rolls back; while rolling back, ends it RollbackFailed.
SwapStep NextSwapStep(const SwapJournal& journal, const SwapEvent& event);
// The first step of crash recovery for an open journal, from PlanRecovery.
SwapStep RecoverySwapStep(const SwapJournal& journal,
                          std::string_view installed_sha256,
                          std::string_view unreadable = "");

// Records `failure` in the journal: the first failure is kept as the
// reason; a failure while rolling back is appended to the message, and a
// rollback refusal becomes the reason (the first one stays in the message).
void RecordFailure(SwapJournal& journal, const absl::Status& failure);

// Whether a static-pod restore may write the captured manifest
// (journal.previous_binary) back over the live one at `manifest`, whose
// SHA-256 is `live_sha256` (NotFound: absent; another error: unreadable).
// OK when the live manifest is what the operation installed
// (target_sha256) or what it replaced (previous_sha256, already back). Any
// other manifest was written by someone else since, most likely an
// operator at the keyboard; an absent one was removed by someone (kmsfleet
// only ever renames over it; moving the manifest away is how a static pod
// is stopped). An upgrade tool never undoes a change it did not make:
// FailedPrecondition, ROLLBACK_REFUSED_MANIFEST_EDITED naming the file and
// the hashes; the rollback then ends RollbackFailed with the change in
// place. A manifest that cannot be read is restored over (OK): a rollback
// must not leave a failed release running for want of a hash; but one
// that is no regular file or is far too large (NOT_REGULAR_FILE,
// INPUT_TOO_LARGE, as the installer reads it) is refused with that error,
// as the installer itself would. Static-pod
// mode only: a systemd node's binary is also replaced by its package
// manager, and telling such an upgrade from an edit is out of this check's
// scope.
absl::Status CheckManifestRestorable(const SwapJournal& journal, std::string_view manifest,
                                     const absl::StatusOr<std::string>& live_sha256);

// Whether a static-pod swap may install its release (journal.target_binary)
// over the live manifest at `manifest`, SHA-256 `live_sha256` (NotFound:
// absent; another error: unreadable). OK when it is the manifest captured
// moments before (previous_sha256) or the release itself (an install
// resumed). Any other, or none, was edited or removed between the capture
// and the install: the install would undo that for good, as a rollback
// restores the capture. FailedPrecondition, MANIFEST_CHANGED naming the
// file and the hashes. An unreadable one refuses with its read error: the
// install changes nothing then.
absl::Status CheckManifestInstallable(const SwapJournal& journal, std::string_view manifest,
                                      const absl::StatusOr<std::string>& live_sha256);

// After a rejected start (a swap RolledBack whose target never answered
// /ready), the registry pair must be byte-identical to the capture:
// DataLoss, EVIDENCE_CHANGED naming the file that differs. OK otherwise,
// and whenever nothing was captured or the start was not rejected.
absl::Status CheckEvidenceUnchanged(const SwapJournal& journal,
                                    std::string_view registry_path);

// ---- Preflight verdicts ----
// A swap replaces a running provider: FailedPrecondition, UNIT_FAILED
// naming the unit and its state otherwise.
absl::Status CheckUnitRunning(const UnitState& unit, std::string_view unit_name);
// What the installed release's rotation-plan must show before its provider
// is stopped: no rotation under way (reference §8.1; FailedPrecondition,
// ROTATION_IN_PROGRESS). A swap or a rollback.
absl::Status CheckRotationSettled(const RotationReport& plan);
// For an upgrade, also a registry checkpoint that is current when the
// report names one (reference §10; FailedPrecondition,
// STATE_CHECKPOINT_NOT_CURRENT), unless the plan acknowledged it. A
// rollback is not held to it: the runbook's gate is the upgrade's, and
// the older release starts on such a checkpoint as the newer does.
absl::Status CheckRotationPlanAllowsUpgrade(const RotationReport& plan,
                                            bool checkpoint_acknowledged);

// ---- Verification ----
struct VerifyExpectations {
  std::string target_version;
  std::string key_id_hash;
};
// Error counters at the start of the window; rising above them fails.
struct CounterBaseline {
  std::optional<double> decrypt_errors, aad_errors;
};
enum class VerifyVerdict { kNotReady, kHealthy, kFailed };
struct VerifyStep {
  VerifyVerdict verdict = VerifyVerdict::kNotReady;
  absl::Status problem;  // why not healthy, with a stable reason
};
VerifyStep EvaluateVerify(const v1::NodeState& state,
                          const VerifyExpectations& expect,
                          const CounterBaseline& baseline);
// Takes each counter's first healthy value as its baseline, independently:
// an absent counter leaves the other's baseline where it was.
void UpdateBaseline(CounterBaseline& baseline, const v1::NodeState& state,
                    VerifyVerdict verdict);
// The unit's part of a verdict: a failed unit fails (UNIT_FAILED, with its
// exit status and last output), and so does a unit whose invocation
// changed since `first_invocation` (UNIT_RESTARTED: it restarted between
// two polls). `unit_name` and `version` are for the message.
VerifyStep EvaluateUnit(const UnitState& unit, std::string_view first_invocation,
                        std::string_view unit_name, std::string_view version);

// Tracks /ready staying healthy for a continuous window: any non-healthy
// step restarts it. Times are steady (monotonic) milliseconds.
class StabilityWindow {
 public:
  explicit StabilityWindow(int64_t window_ms) : window_ms_(window_ms) {}
  void Observe(VerifyVerdict verdict, int64_t now_ms);
  bool Stable(int64_t now_ms) const;
  // How long to wait before the next poll: `poll_ms`, or less when the
  // window completes sooner, so that stability is seen at the window's end
  // rather than up to a poll interval after it. After a poll that was not
  // healthy: a quarter of `poll_ms`, for up to eight such polls.
  int64_t NextPollInMs(int64_t now_ms, int64_t poll_ms) const;
  // Whether the next wait is one of those quarter polls.
  bool QuickPolls() const;

 private:
  int64_t window_ms_;
  std::optional<int64_t> healthy_since_;
  int unhealthy_polls_ = 0;  // since the last healthy one
};

// One verification: each poll's unit state and node state at a steady
// time in, a verdict out. A value of its own: the executor polls, sleeps
// and stops at the deadline.
class VerifyTracker {
 public:
  VerifyTracker(VerifyExpectations expect, int64_t window_ms, std::string unit_name)
      : expect_(std::move(expect)), window_(window_ms), unit_name_(std::move(unit_name)) {}
  // kFailed ends the verification with `problem`; otherwise Stable() says
  // whether the window is complete. `unit` is nullopt when the manager
  // could not be asked (the poll then judges the provider alone).
  VerifyStep Observe(const std::optional<UnitState>& unit,
                     const v1::NodeState& state, int64_t now_ms);
  bool Stable(int64_t now_ms) const { return window_.Stable(now_ms); }
  int64_t NextPollInMs(int64_t now_ms, int64_t poll_ms) const {
    return window_.NextPollInMs(now_ms, poll_ms);
  }
  // Why the last poll was not healthy (OK when it was).
  const absl::Status& last_problem() const { return last_problem_; }
  // Whether the executor watches for the provider's health listener until
  // the next poll rather than sleeping (Executor::WaitForHealthListener):
  // the last poll found none (HEALTH_UNREACHABLE), and it is one of the
  // quick polls after a start. A provider still down after them (its
  // bootstrap can take a minute) is not looked for every millisecond.
  bool WatchesForListener() const { return listener_down_ && window_.QuickPolls(); }

 private:
  VerifyExpectations expect_;
  StabilityWindow window_;
  std::string unit_name_;
  CounterBaseline baseline_;
  std::string first_invocation_;
  absl::Status last_problem_;
  bool listener_down_ = false;
};

// How long a passing doctor and rotation-plan stay good for a swap's
// stop. They read OpenBao, Transit and the registry, which nothing
// watches in between: a rotation begun meanwhile must not pass on an
// older rotation-plan for longer than this. The service manager's answer,
// asked beside them, must come within it of their end, and a pair kept
// from the plan's preflight is reused only within it.
inline constexpr int64_t kChecksFreshForMs = 1000;
// Whether checks that ended at `ended_at_ms` are still fresh at `now_ms`
// (both on the steady clock).
inline bool ChecksStillFresh(int64_t ended_at_ms, int64_t now_ms) {
  return now_ms >= ended_at_ms && now_ms - ended_at_ms <= kChecksFreshForMs;
}

// The most a request may ask to wait for stability: one hour.
inline constexpr int64_t kMaxStabilizationMs = 3600 * 1000;
// OK for 0 (the configured default) up to kMaxStabilizationMs; otherwise
// InvalidArgument, INVALID_ARGUMENT naming the value.
absl::Status CheckStabilizationMs(int64_t stabilization_ms);
// A command's expected key_id hash: "" (the one observed before the stop)
// or at most 128 base64 characters, so that what reaches the journal stays
// within what a restarted agent reads back. INVALID_ARGUMENT otherwise.
absl::Status CheckExpectedKeyIdHash(std::string_view hash);

// How long the executor waits before writing a closed journal again after
// `failures` (>= 1) failed writes: 100 ms, doubling, at most 5 s. Space
// freed on a full disk is then seen within seconds, without a busy loop.
int64_t CloseRetryDelayMs(int failures);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_SWAP_MACHINE_H_
