// The phases of one swap or rollback (architecture.md §4), run on the
// executor's worker thread. Each phase is journaled before it runs; every
// failure after the stop rolls back to the binary captured as evidence.
#include <thread>

#include "kmsfleet/executor.h"
#include "kmsfleet/fs_util.h"
#include "kmsfleet/log.h"
#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"
#include "kmsfleet/status_macros.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxRegistryBytes = 16 << 20;
constexpr int kEvidenceAttempts = 3;

std::string ReasonOrUnknown(const absl::Status& s) {
  std::string r = ReasonOf(s);
  return r.empty() ? std::string(absl::StatusCodeToString(s.code())) : r;
}

}  // namespace

void Executor::Fail(SwapJournal& j, const absl::Status& s) {
  if (!j.failure_reason.empty()) return;  // keep the first failure
  j.failure_reason = ReasonOrUnknown(s);
  j.failure_message = std::string(s.message());
}

void Executor::RunOperation(SwapJournal j) {
  absl::Status s = Forward(j);
  if (s.ok()) {
    Close(j);
    return;
  }
  Log(LogLevel::kWarn, std::string(s.message()),
      {{"operation", j.operation_id}, {"phase", std::string(PhaseName(j.phase))}});
  if (IsAfterStop(j.phase)) {
    RollBack(j, s);
  } else {
    Fail(j, s);  // nothing on the node changed
  }
  Close(j);
}

absl::Status Executor::Forward(SwapJournal& j) {
  KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kStaged));
  KMSFLEET_RETURN_IF_ERROR(PrepareTarget(j));
  KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kPreflighted));
  KMSFLEET_RETURN_IF_ERROR(PreflightTarget(j));
  KMSFLEET_RETURN_IF_ERROR(CaptureEvidence(j));
  KMSFLEET_RETURN_IF_ERROR(Persist(j));
  KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kStopped));
  KMSFLEET_RETURN_IF_ERROR(services_.Stop(options_.unit, options_.unit_timeout));
  KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kInstalled));
  KMSFLEET_RETURN_IF_ERROR(CopyFileAtomic(j.target_binary, options_.install_path,
                                          0755, j.target_sha256, SIZE_MAX)
                               .status());
  MaybeCrash("after-rename");
  return FinishForward(j);
}

// Started, Verifying, Stable: shared with crash recovery of an installed
// target.
absl::Status Executor::FinishForward(SwapJournal& j) {
  if (j.phase < SwapPhase::kStarted) KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kStarted));
  KMSFLEET_RETURN_IF_ERROR(services_.Start(options_.unit, options_.unit_timeout));
  if (j.phase < SwapPhase::kVerifying) {
    KMSFLEET_RETURN_IF_ERROR(Step(j, SwapPhase::kVerifying));
  }
  KMSFLEET_RETURN_IF_ERROR(
      Verify(j.target_version, j.expected_key_id_hash, j.stabilization_ms));
  return Step(j, SwapPhase::kStable);
}

// Re-checks the binary to install against its recorded digest.
absl::Status Executor::PrepareTarget(SwapJournal& j) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string digest, Sha256File(j.target_binary));
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
  // talk to must fail here, where nothing has changed yet.
  KMSFLEET_ASSIGN_OR_RETURN(UnitState unit, services_.State(options_.unit));
  if (unit.active_state != "active") {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kUnitFailed,
                     options_.unit + " is " + unit.active_state + " (" +
                         unit.sub_state + "), not active; swap a running provider",
                     {{"unit", options_.unit}});
  }
  KMSFLEET_ASSIGN_OR_RETURN(
      PreflightResult pre,
      RunPreflight(j.target_binary, j.target_version, options_.preflight,
                   options_.install_path));
  KMSFLEET_RETURN_IF_ERROR(pre.verdict);
  KMSFLEET_ASSIGN_OR_RETURN(RotationReport plan,
                            RunRotationPlan(options_.install_path, options_.preflight));
  if (plan.rotation_state != "active") {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kRotationInProgress,
                     "rotation-plan reports rotationState " + plan.rotation_state +
                         "; defer the upgrade (reference §8.1)");
  }
  if (j.kind == "rollback") KMSFLEET_RETURN_IF_ERROR(CheckRegistryForRollback(j));
  if (j.expected_key_id_hash.empty()) {
    v1::NodeState now = probe_.Observe();
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

// The installed binary (copied, for rollback) and the registry pair,
// read together: the pair is re-read until both hashes are stable.
absl::Status Executor::CaptureEvidence(SwapJournal& j) {
  j.evidence_dir = options_.state_dir + "/operations/" + j.operation_id;
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options_.state_dir + "/operations", 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(j.evidence_dir, 0700));
  j.previous_binary = j.evidence_dir + "/previous-binary";
  KMSFLEET_ASSIGN_OR_RETURN(
      j.previous_sha256,
      CopyFileAtomic(options_.install_path, j.previous_binary, 0700, "", SIZE_MAX));
  KMSFLEET_ASSIGN_OR_RETURN(j.previous_version,
                            RunVersion(j.previous_binary, options_.preflight));
  const std::string checkpoint = options_.registry_path + ".checkpoint";
  for (int attempt = 0; attempt < kEvidenceAttempts; ++attempt) {
    absl::StatusOr<std::string> reg = ReadBoundedFile(options_.registry_path, kMaxRegistryBytes);
    absl::StatusOr<std::string> cp = ReadBoundedFile(checkpoint, kMaxRegistryBytes);
    absl::StatusOr<std::string> again = ReadBoundedFile(options_.registry_path, kMaxRegistryBytes);
    if (!reg.ok() && absl::IsNotFound(reg.status())) return absl::OkStatus();  // no state yet
    KMSFLEET_RETURN_IF_ERROR(reg.status());
    if (!again.ok() || *again != *reg) continue;  // written meanwhile
    j.registry_sha256 = Sha256Hex(*reg);
    KMSFLEET_RETURN_IF_ERROR(
        WriteFileAtomic(j.evidence_dir + "/key-registry.json", *reg, 0600));
    if (cp.ok()) {
      j.checkpoint_sha256 = Sha256Hex(*cp);
      KMSFLEET_RETURN_IF_ERROR(
          WriteFileAtomic(j.evidence_dir + "/key-registry.json.checkpoint", *cp, 0600));
    }
    absl::StatusOr<RegistryFacts> facts = ParseRegistryFacts(*reg, options_.registry_path);
    if (facts.ok() && j.kind == "swap") j.registry_schema = facts->schema_version;
    return absl::OkStatus();
  }
  return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                   options_.registry_path + " kept changing while it was copied");
}

absl::Status Executor::CheckRegistryForRollback(const SwapJournal& j) const {
  absl::StatusOr<std::string> reg = ReadBoundedFile(options_.registry_path, kMaxRegistryBytes);
  if (!reg.ok() && absl::IsNotFound(reg.status())) return absl::OkStatus();
  KMSFLEET_RETURN_IF_ERROR(reg.status());
  KMSFLEET_ASSIGN_OR_RETURN(RegistryFacts facts,
                            ParseRegistryFacts(*reg, options_.registry_path));
  return CheckRollbackAllowed(j.registry_schema, facts);
}

void Executor::RollBack(SwapJournal& j, const absl::Status& first) {
  Fail(j, first);
  if (j.phase != SwapPhase::kRollingBack) {
    if (absl::Status s = Step(j, SwapPhase::kRollingBack); !s.ok()) {
      Log(LogLevel::kError, std::string(s.message()), {{"operation", j.operation_id}});
    }
  }
  absl::Status s = RestorePrevious(j);
  if (s.ok()) {
    s = Step(j, SwapPhase::kRolledBack);
  } else {
    // Break-glass: the unit is left as it is for the operator.
    if (ReasonOf(s) == reason::kRollbackRefusedRemoved ||
        ReasonOf(s) == reason::kRollbackRefusedSchema) {
      j.failure_message += " (first failure: " + j.failure_reason + ")";
      j.failure_reason = ReasonOf(s);
    }
    j.failure_message += "; rollback failed: " + std::string(s.message());
    s = Step(j, SwapPhase::kRollbackFailed);
  }
  if (!s.ok()) Log(LogLevel::kError, std::string(s.message()), {{"operation", j.operation_id}});
}

absl::Status Executor::RestorePrevious(SwapJournal& j) {
  if (j.previous_binary.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInstallFailed,
                     "no previous binary was captured");
  }
  KMSFLEET_RETURN_IF_ERROR(CheckRegistryForRollback(j));
  KMSFLEET_RETURN_IF_ERROR(services_.Stop(options_.unit, options_.unit_timeout));
  // Observe before acting: reinstall only if the previous binary is not in
  // place already (a rollback interrupted after its rename).
  absl::StatusOr<std::string> installed = Sha256File(options_.install_path);
  if (!installed.ok() || *installed != j.previous_sha256) {
    KMSFLEET_RETURN_IF_ERROR(CopyFileAtomic(j.previous_binary, options_.install_path,
                                            0755, j.previous_sha256, SIZE_MAX)
                                 .status());
  }
  KMSFLEET_RETURN_IF_ERROR(services_.Start(options_.unit, options_.unit_timeout));
  return Verify(j.previous_version, j.expected_key_id_hash, j.stabilization_ms);
}

absl::Status Executor::Verify(const std::string& version, const std::string& hash,
                              int64_t window_ms) {
  const int64_t start = clock_.NowUnixMillis();
  const int64_t deadline = start + options_.ready_timeout.count() + window_ms;
  StabilityWindow window(window_ms);
  CounterBaseline baseline;
  absl::Status last = MakeError(absl::StatusCode::kUnavailable, reason::kNotReady,
                                "the provider never answered");
  for (;;) {
    int64_t now = clock_.NowUnixMillis();
    if (now > deadline) break;
    absl::StatusOr<UnitState> unit = services_.State(options_.unit);
    if (unit.ok() && unit->active_state == "failed") {
      return MakeError(absl::StatusCode::kAborted, reason::kUnitFailed,
                       options_.unit + " is failed (" + unit->sub_state +
                           ") while verifying version " + version,
                       {{"unit", options_.unit}});
    }
    v1::NodeState state = probe_.Observe();
    VerifyStep step = EvaluateVerify(state, {version, hash}, baseline);
    if (step.verdict == VerifyVerdict::kFailed) return step.problem;
    if (step.verdict == VerifyVerdict::kHealthy && !baseline.decrypt_errors) {
      if (state.has_decrypt_key_id_errors_total()) {
        baseline.decrypt_errors = state.decrypt_key_id_errors_total();
      }
      if (state.has_aad_validation_errors_total()) {
        baseline.aad_errors = state.aad_validation_errors_total();
      }
    }
    if (!step.problem.ok()) last = step.problem;
    window.Observe(step.verdict, now);
    if (window.Stable(now)) return absl::OkStatus();
    std::this_thread::sleep_for(options_.poll_interval);
  }
  // The reason of what was still missing at the deadline (NOT_READY,
  // KEY_ID_HASH_MISSING, ...).
  std::string why = ReasonOf(last).empty() ? reason::kNotReady : ReasonOf(last);
  return MakeError(absl::StatusCode::kDeadlineExceeded, why,
                   "version " + version + " was not stable for " +
                       std::to_string(window_ms) + " ms within the ready timeout: " +
                       std::string(last.message()));
}

void Executor::Recover(SwapJournal j) {
  absl::StatusOr<std::string> installed = Sha256File(options_.install_path);
  RecoveryPlan plan = PlanRecovery(j, installed.ok() ? *installed : "");
  Log(LogLevel::kInfo, "recovering operation: " + plan.why,
      {{"operation", j.operation_id}, {"phase", std::string(PhaseName(j.phase))}});
  absl::Status restarted = MakeError(absl::StatusCode::kAborted,
                                     reason::kAgentRestarted,
                                     "kmsfleetd restarted during " +
                                         std::string(PhaseName(j.phase)) + ": " +
                                         plan.why);
  switch (plan.action) {
    case RecoveryAction::kCloseAsIs:
      break;
    case RecoveryAction::kClose:
      Fail(j, restarted);
      break;
    case RecoveryAction::kResumeVerify: {
      if (j.phase < SwapPhase::kInstalled) {
        if (absl::Status s = Step(j, SwapPhase::kInstalled); !s.ok()) break;
      }
      absl::Status s = FinishForward(j);
      if (!s.ok()) RollBack(j, s);
      break;
    }
    case RecoveryAction::kRollBack:
      RollBack(j, restarted);
      break;
  }
  Close(j);
}

}  // namespace kmsfleet
