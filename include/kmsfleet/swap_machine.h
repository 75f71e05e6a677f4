// The node swap as a pure state machine (architecture.md §4): phase names,
// the journal record, crash-recovery decisions, the rollback-refusal rule
// (reference §6, §7.4) and the verification verdict over a NodeState.
// No I/O and no clock: the executor (src/node/executor.cc) observes the
// world and passes times in.
// Thread-safe: free functions over values; StabilityWindow is a value.
#ifndef KMSFLEET_SWAP_MACHINE_H_
#define KMSFLEET_SWAP_MACHINE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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
  int64_t stabilization_ms = 30000;
  // The fence (plan record term and index) the operation was admitted
  // under; 0/0 when the agent runs no election.
  uint64_t fence_term = 0, fence_index = 0;
  // Evidence taken before the stop (reference §6); the copies sit in
  // evidence_dir and are never restored automatically.
  std::string evidence_dir;
  std::string registry_sha256, checkpoint_sha256, registry_schema;
  std::string failure_reason, failure_message;  // the first failure
  std::vector<std::string> history;             // "Phase@unix_ms"
  int64_t started_unix_ms = 0, updated_unix_ms = 0;
};

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
// Decides from the journal and the observed digest of the installed binary.
RecoveryPlan PlanRecovery(const SwapJournal& journal,
                          std::string_view installed_sha256);

// What the rollback rule needs from key-registry.json.
struct RegistryFacts {
  std::string schema_version;
  int removed_records = 0;
};
// Errors: InvalidArgument, MALFORMED_REGISTRY naming `what`.
absl::StatusOr<RegistryFacts> ParseRegistryFacts(std::string_view json,
                                                 std::string_view what);
// Refuses an older binary over a registry it may not read: FailedPrecondition
// with ROLLBACK_REFUSED_REMOVED_RECORDS or ROLLBACK_REFUSED_SCHEMA_CHANGED.
// `schema_before` empty (no registry then) disables the schema rule.
absl::Status CheckRollbackAllowed(std::string_view schema_before,
                                  const RegistryFacts& now);

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

// Tracks /ready staying healthy for a continuous window: any non-healthy
// step restarts it.
class StabilityWindow {
 public:
  explicit StabilityWindow(int64_t window_ms) : window_ms_(window_ms) {}
  void Observe(VerifyVerdict verdict, int64_t now_unix_ms);
  bool Stable(int64_t now_unix_ms) const;

 private:
  int64_t window_ms_;
  std::optional<int64_t> healthy_since_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_SWAP_MACHINE_H_
