#include "kmsfleet/core/swap_machine.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <tuple>
#include <utility>

#include "boost/json.hpp"
#include "json_util.h"
#include "kmsfleet/core/node_observation.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

constexpr std::array<std::pair<SwapPhase, std::string_view>, 11> kPhaseNames{{
    {SwapPhase::kIdle, "Idle"},
    {SwapPhase::kStaged, "Staged"},
    {SwapPhase::kPreflighted, "Preflighted"},
    {SwapPhase::kStopped, "Stopped"},
    {SwapPhase::kInstalled, "Installed"},
    {SwapPhase::kStarted, "Started"},
    {SwapPhase::kVerifying, "Verifying"},
    {SwapPhase::kStable, "Stable"},
    {SwapPhase::kRollingBack, "RollingBack"},
    {SwapPhase::kRolledBack, "RolledBack"},
    {SwapPhase::kRollbackFailed, "RollbackFailed"},
}};

// Journals are small; a bigger file is not one of ours.
constexpr size_t kMaxJournalBytes = 256 << 10;

// A journal we wrote and cannot read back lost data: DATA_LOSS, so that no
// caller mistakes it for a bad request.
absl::Status Corrupt(std::string_view what, std::string_view problem) {
  return MakeError(absl::StatusCode::kDataLoss, reason::kJournalCorrupt,
                   std::string(what) + ": " + std::string(problem),
                   {{"file", std::string(what)}});
}

bool HasCondition(const v1::NodeState& state, std::string_view reason) {
  for (const auto& c : state.conditions()) {
    if (c.reason() == reason) return true;
  }
  return false;
}

VerifyStep Fail(std::string_view reason, std::string message) {
  return {VerifyVerdict::kFailed,
          MakeError(absl::StatusCode::kFailedPrecondition, reason, message)};
}

bool Rose(const std::optional<double>& before, bool has_now, double now) {
  return before.has_value() && has_now && now > *before;
}

}  // namespace

std::string_view PhaseName(SwapPhase phase) {
  for (const auto& [p, name] : kPhaseNames) {
    if (p == phase) return name;
  }
  return "Unknown";
}

std::string_view ActivityName(UnitActivity activity) {
  switch (activity) {
    case UnitActivity::kRunning: return "running";
    case UnitActivity::kStarting: return "starting";
    case UnitActivity::kStopping: return "stopping";
    case UnitActivity::kStopped: return "stopped";
    case UnitActivity::kFailed: return "failed";
    case UnitActivity::kUnknown: break;
  }
  return "unknown";
}

absl::StatusOr<SwapPhase> ParsePhase(std::string_view name) {
  for (const auto& [p, n] : kPhaseNames) {
    if (n == name) return p;
  }
  return Corrupt("phase", "unknown phase \"" + std::string(name) + "\"");
}

bool IsTerminal(SwapPhase phase) {
  return phase == SwapPhase::kStable || phase == SwapPhase::kRolledBack ||
         phase == SwapPhase::kRollbackFailed;
}

bool IsAfterStop(SwapPhase phase) {
  return phase >= SwapPhase::kStopped && phase <= SwapPhase::kVerifying;
}

bool IsAllowedTransition(SwapPhase from, SwapPhase to) {
  if (to == SwapPhase::kRollingBack) return IsAfterStop(from);
  if (from == SwapPhase::kRollingBack) {
    return to == SwapPhase::kRolledBack || to == SwapPhase::kRollbackFailed;
  }
  if (from >= SwapPhase::kStable) return false;
  return static_cast<int>(to) == static_cast<int>(from) + 1;
}

absl::Status Advance(SwapJournal& journal, SwapPhase to, int64_t now_unix_ms) {
  if (!IsAllowedTransition(journal.phase, to)) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kJournalCorrupt,
                     "operation " + journal.operation_id + " cannot move from " +
                         std::string(PhaseName(journal.phase)) + " to " +
                         std::string(PhaseName(to)));
  }
  journal.phase = to;
  journal.updated_unix_ms = now_unix_ms;
  journal.history.push_back(std::string(PhaseName(to)) + "@" +
                            std::to_string(now_unix_ms));
  return absl::OkStatus();
}

std::string SerializeJournal(const SwapJournal& j) {
  boost::json::array history;
  for (const auto& h : j.history) history.emplace_back(h);
  boost::json::object o{
      {"operationId", j.operation_id},
      {"kind", j.kind},
      {"phase", PhaseName(j.phase)},
      {"open", j.open},
      {"targetVersion", j.target_version},
      {"previousVersion", j.previous_version},
      {"targetSha256", j.target_sha256},
      {"previousSha256", j.previous_sha256},
      {"targetBinary", j.target_binary},
      {"previousBinary", j.previous_binary},
      {"expectedKeyIdHash", j.expected_key_id_hash},
      {"ofOperationId", j.of_operation_id},
      {"replacesSha256", j.replaces_sha256},
      {"stagedDigest", j.staged_digest},
      {"checkpointAcknowledged", j.checkpoint_acknowledged},
      {"stabilizationMs", j.stabilization_ms},
      {"fenceTerm", j.fence_term},
      {"fenceIndex", j.fence_index},
      {"sequence", j.sequence},
      {"evidenceDir", j.evidence_dir},
      {"registrySha256", j.registry_sha256},
      {"checkpointSha256", j.checkpoint_sha256},
      {"registrySchema", j.registry_schema},
      {"registryRemovedRecords", j.registry_removed_records},
      {"registryActiveKeyIdHash", j.registry_active_key_id_hash},
      {"keyIdHashBeforeUndone", j.key_id_hash_before_undone},
      {"registryActiveTransitVersion", j.registry_active_transit_version},
      {"registrySha256After", j.registry_sha256_after},
      {"targetReadySeen", j.target_ready_seen},
      {"restoreRefusedOnceServed", j.restore_refused_once_served},
      {"checkpointSha256After", j.checkpoint_sha256_after},
      {"failureReason", j.failure_reason},
      {"failureMessage", j.failure_message},
      {"history", std::move(history)},
      {"startedUnixMs", j.started_unix_ms},
      {"updatedUnixMs", j.updated_unix_ms}};
  return boost::json::serialize(o) + "\n";
}

namespace {

absl::StatusOr<SwapJournal> ParseJournalFields(std::string_view text,
                                               std::string_view what) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object o,
      internal::ParseJsonObject(text, what, kMaxJournalBytes,
                                reason::kJournalCorrupt));
  internal::JsonFields f(o, std::string(what), reason::kJournalCorrupt);
  SwapJournal j;
  std::string phase;
  for (auto [key, out] : std::initializer_list<std::pair<const char*, std::string*>>{
           {"operationId", &j.operation_id}, {"kind", &j.kind}, {"phase", &phase},
           {"targetVersion", &j.target_version},
           {"previousVersion", &j.previous_version},
           {"targetSha256", &j.target_sha256},
           {"previousSha256", &j.previous_sha256},
           {"targetBinary", &j.target_binary},
           {"previousBinary", &j.previous_binary},
           {"expectedKeyIdHash", &j.expected_key_id_hash},
           {"ofOperationId", &j.of_operation_id},
           {"replacesSha256", &j.replaces_sha256},
           {"stagedDigest", &j.staged_digest},
           {"evidenceDir", &j.evidence_dir},
           {"registrySha256", &j.registry_sha256},
           {"checkpointSha256", &j.checkpoint_sha256},
           {"registrySchema", &j.registry_schema},
           {"registryActiveKeyIdHash", &j.registry_active_key_id_hash},
           {"keyIdHashBeforeUndone", &j.key_id_hash_before_undone},
           {"registrySha256After", &j.registry_sha256_after},
           {"checkpointSha256After", &j.checkpoint_sha256_after},
           {"failureReason", &j.failure_reason},
           {"failureMessage", &j.failure_message},
           {"restoreRefusedOnceServed", &j.restore_refused_once_served}}) {
    KMSFLEET_RETURN_IF_ERROR(f.String(key, out));
  }
  if (j.operation_id.empty()) return Corrupt(what, "operationId is missing");
  // A reason code this agent does not know (written by a newer kmsfleetd
  // before a downgrade) is read as it is and still refuses the restore;
  // only text that is no reason code makes the journal corrupt.
  if (j.restore_refused_once_served.size() > 64 ||
      !std::all_of(j.restore_refused_once_served.begin(), j.restore_refused_once_served.end(),
                   [](char c) { return (c >= 'A' && c <= 'Z') || c == '_'; })) {
    return Corrupt(what, "restoreRefusedOnceServed is not a reason code");
  }
  KMSFLEET_ASSIGN_OR_RETURN(j.phase, ParsePhase(phase));
  KMSFLEET_RETURN_IF_ERROR(f.Bool("open", &j.open));
  if (f.Find("checkpointAcknowledged") != nullptr) {
    KMSFLEET_RETURN_IF_ERROR(f.Bool("checkpointAcknowledged", &j.checkpoint_acknowledged));
  }
  if (f.Find("targetReadySeen") != nullptr) {
    KMSFLEET_RETURN_IF_ERROR(f.Bool("targetReadySeen", &j.target_ready_seen));
  }
  std::optional<int64_t> stab, started, updated, removed, transit;
  std::optional<uint64_t> fence_term, fence_index, sequence;
  KMSFLEET_RETURN_IF_ERROR(f.Int64("stabilizationMs", &stab));
  KMSFLEET_RETURN_IF_ERROR(f.Int64("startedUnixMs", &started));
  KMSFLEET_RETURN_IF_ERROR(f.Int64("updatedUnixMs", &updated));
  KMSFLEET_RETURN_IF_ERROR(f.Int64("registryRemovedRecords", &removed));
  KMSFLEET_RETURN_IF_ERROR(f.Int64("registryActiveTransitVersion", &transit));
  KMSFLEET_RETURN_IF_ERROR(f.Uint64("fenceTerm", &fence_term));
  KMSFLEET_RETURN_IF_ERROR(f.Uint64("fenceIndex", &fence_index));
  KMSFLEET_RETURN_IF_ERROR(f.Uint64("sequence", &sequence));
  j.stabilization_ms = stab.value_or(30000);
  j.started_unix_ms = started.value_or(0);
  j.updated_unix_ms = updated.value_or(0);
  j.registry_removed_records = static_cast<int>(removed.value_or(0));
  j.registry_active_transit_version = transit.value_or(0);
  j.fence_term = fence_term.value_or(0);
  j.fence_index = fence_index.value_or(0);
  j.sequence = sequence.value_or(0);
  KMSFLEET_RETURN_IF_ERROR(f.StringArray("history", &j.history));
  return j;
}

}  // namespace

absl::StatusOr<SwapJournal> ParseJournal(std::string_view text,
                                         std::string_view what) {
  absl::StatusOr<SwapJournal> j = ParseJournalFields(text, what);
  if (!j.ok() && j.status().code() != absl::StatusCode::kDataLoss) {
    return MakeError(absl::StatusCode::kDataLoss, reason::kJournalCorrupt,
                     std::string(j.status().message()), {{"file", std::string(what)}});
  }
  return j;
}

bool RecoveryReadsInstalledDigest(const SwapJournal& j) {
  return !IsTerminal(j.phase) && j.phase != SwapPhase::kRollingBack && IsAfterStop(j.phase);
}

RecoveryPlan PlanRecovery(const SwapJournal& j,
                          std::string_view installed_sha256,
                          std::string_view unreadable) {
  if (IsTerminal(j.phase)) {
    return {RecoveryAction::kCloseAsIs, "the operation had already ended"};
  }
  if (j.phase == SwapPhase::kRollingBack) {
    return {RecoveryAction::kRollBack, "the agent stopped while rolling back"};
  }
  if (!IsAfterStop(j.phase)) {
    return {RecoveryAction::kClose,
            "the agent stopped before the unit was stopped; nothing changed"};
  }
  // After the stop: the rename is atomic, so the installed file is either
  // the target or the previous binary. Only a verified target goes forward.
  if (!j.target_sha256.empty() && installed_sha256 == j.target_sha256) {
    return {RecoveryAction::kResumeVerify,
            "the target binary is installed; starting and verifying it"};
  }
  if (!unreadable.empty()) {
    return {RecoveryAction::kRollBack,
            "the installed binary could not be read (" + std::string(unreadable) +
                "), so it is not known to be the target; restoring the previous one"};
  }
  return {RecoveryAction::kRollBack,
          "the target binary is not installed; restoring the previous one"};
}

absl::StatusOr<RegistryFacts> ParseRegistryFacts(std::string_view json,
                                                 std::string_view what) {
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object o,
      internal::ParseJsonObject(json, what, kMaxRegistryFileBytes,
                                reason::kMalformedRegistry));
  internal::JsonFields f(o, std::string(what), reason::kMalformedRegistry);
  RegistryFacts facts;
  KMSFLEET_RETURN_IF_ERROR(f.String("schemaVersion", &facts.schema_version));
  if (facts.schema_version.empty()) return f.Missing("schemaVersion");
  KMSFLEET_RETURN_IF_ERROR(f.String("activeKeyId", &facts.active_key_id));
  const boost::json::value* snaps = f.Find("snapshots");
  if (snaps == nullptr) return facts;
  if (!snaps->is_array()) return f.WrongType("snapshots", *snaps, "array");
  for (const auto& s : snaps->as_array()) {
    if (!s.is_object()) return f.WrongType("snapshots[]", s, "object");
    const boost::json::value* state = s.as_object().if_contains("state");
    if (state != nullptr && state->is_string() && state->as_string() == "removed") {
      ++facts.removed_records;
    }
    const boost::json::value* version = s.as_object().if_contains("transitVersion");
    if (state != nullptr && state->is_string() && state->as_string() == "active" &&
        version != nullptr && version->is_int64()) {
      facts.active_transit_version = version->as_int64();
    }
  }
  return facts;
}

bool KeptAServedTarget(std::string_view reason) {
  return reason == reason::kRollbackRefusedOneWay || reason == reason::kRollbackRefusedWireFormat;
}

bool KeptTheTargetOnPurpose(std::string_view reason) {
  return KeptAServedTarget(reason) || reason == reason::kRollbackRefusedKeyRotated;
}

absl::Status CheckRestoreOnceServed(const SwapJournal& j) {
  // The same version again (a node's swap sent again after break-glass)
  // crosses no release: its capture may come back (found in review).
  if (j.kind != "swap" || !j.target_ready_seen || j.restore_refused_once_served.empty() ||
      j.previous_version == j.target_version) {
    return absl::OkStatus();
  }
  const std::string& why = j.restore_refused_once_served;
  std::string what = "irreversible (" + why + ")";
  if (why == reason::kRollbackRefusedOneWay) what = "one-way";
  if (why == reason::kRollbackRefusedWireFormat) what = "a wire-format change";
  return MakeError(
      absl::StatusCode::kFailedPrecondition, why,
      "refusing to reinstall " + j.previous_version + ": " + j.target_version +
          " has been ready here, and the plan calls the upgrade " + what + ", so " +
          j.previous_version +
          " may not read what it wrote (reference §8.1); " + j.target_version +
          " stays installed: fix forward with a patch release",
      {{"previous_version", j.previous_version}, {"target_version", j.target_version}});
}

// Found in review: when the swap a walk-back undid did not start from the
// version before (the node mended forward by hand in break-glass and
// swapped again to the version it ran), the rollback reinstalled the newer
// release, ended Stable and the node was counted rolled back.
absl::Status CheckRollbackTarget(const SwapJournal& of, const std::string& expected,
                                 const std::string& node) {
  if (expected.empty() || of.previous_version == expected) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kRollbackTargetMismatch,
                   "operation " + of.operation_id + " on " + node + " replaced " +
                       (of.previous_version.empty() ? "an unknown version" : of.previous_version) +
                       ", not " + expected + ": rolling it back would not reinstall " +
                       expected + "; nothing was done",
                   {{"node", node}, {"operation_id", of.operation_id},
                    {"previous_version", of.previous_version}, {"expected_version", expected}});
}

absl::Status CheckRollbackAllowed(const std::optional<RegistryFacts>& before,
                                  const RegistryFacts& now) {
  const int removed_before = before ? before->removed_records : 0;
  if (now.removed_records > removed_before) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kRollbackRefusedRemoved,
        "refusing to reinstall the older binary: the key registry holds " +
            std::to_string(now.removed_records) + " removed record(s), " +
            std::to_string(removed_before) +
            " before the swap; older binaries reject records removed since "
            "(reference §7.4)",
        {{"removed_records", std::to_string(now.removed_records)},
         {"removed_records_before", std::to_string(removed_before)}});
  }
  if (before && now.schema_version != before->schema_version) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kRollbackRefusedSchema,
        "refusing to reinstall the older binary: the key registry schema "
        "changed from " + before->schema_version + " to " + now.schema_version,
        {{"schema_before", before->schema_version},
         {"schema_now", now.schema_version}});
  }
  return absl::OkStatus();
}

bool GoesToAnOlderRelease(std::string_view from, std::string_view to) {
  absl::StatusOr<SemVer> running = SemVer::Parse(from);
  absl::StatusOr<SemVer> installing = SemVer::Parse(to);
  return !running.ok() || !installing.ok() || installing->Compare(*running) < 0;
}

std::string KeyIdHashBeforeUndone(const SwapJournal& undone) {
  if (!GoesToAnOlderRelease(undone.target_version, undone.previous_version)) return "";
  return undone.registry_active_key_id_hash.empty() ? undone.expected_key_id_hash
                                                    : undone.registry_active_key_id_hash;
}

std::tuple<uint64_t, uint64_t, uint64_t, int64_t, int64_t, std::string_view> AdmissionOrder(
    const SwapJournal& j) {
  return {j.sequence,        j.fence_term,      j.fence_index,
          j.started_unix_ms, j.updated_unix_ms, j.operation_id};
}

bool SwapGoesBack(const SwapJournal& j) {
  return j.kind == "swap" && j.previous_version != j.target_version &&
         GoesToAnOlderRelease(j.previous_version, j.target_version);
}

std::string KeyIdHashWhenLastReplaced(const std::vector<SwapJournal>& journals,
                                      std::string_view version) {
  const SwapJournal* last = nullptr;
  for (const SwapJournal& j : journals) {
    // Closed Stable, RolledBack or RollbackFailed: past its stop, so it
    // stopped `version` running (one refused before it stopped nothing).
    if (j.open || !IsTerminal(j.phase) || j.previous_version != version) continue;
    if (last == nullptr || AdmissionOrder(j) > AdmissionOrder(*last)) last = &j;
  }
  if (last == nullptr) return "";
  return last->registry_active_key_id_hash.empty() ? last->expected_key_id_hash
                                                   : last->registry_active_key_id_hash;
}

absl::Status CheckNoRotationSinceCapture(const SwapJournal& j, std::string_view hash_now) {
  // Restores are not judged. A failed swap's: its target never reached
  // Stable, and a key_id its target derived otherwise (and wrote to the
  // registry) is what its verify caught, KEY_ID_HASH_MISMATCH, which the
  // restore exists to undo. A failed rollback's: it puts back the newer
  // release, the one that promoted the key.
  // A registry that names no active key now is judged by the older
  // release itself, as one gone (it starts only on state it can read).
  // A swap to an older release (by hand: a plan refuses a downgrade) is a
  // rollback by another name.
  const std::string& before = j.key_id_hash_before_undone;
  if ((j.kind != "rollback" && !SwapGoesBack(j)) || j.phase == SwapPhase::kRollingBack || before.empty() || hash_now.empty() ||
      hash_now == before) {
    return absl::OkStatus();
  }
  const std::string now(hash_now);
  // The operation replaces what it captured running: its previous release
  // is the newer one.
  const std::string& newer = j.previous_version;
  const std::string& older = j.target_version;
  const std::string since =
      j.kind == "rollback"
          ? before + " before " + newer + " was installed; a rotation promoted under it"
          : before + " when " + older + " last ran on this node; a rotation promoted since";
  return MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kRollbackRefusedKeyRotated,
      "refusing to reinstall " + older + ": the key registry's active key_id hash is " + now +
          ", " + since + " is one " + older +
          " never promoted on this node, and data encrypted under it would not decrypt "
          "(reference §8.1): "
          "fix forward with a patch release",
      {{"key_id_hash_before", before}, {"key_id_hash_now", now}});
}

absl::Status CheckActiveKeyAsExpected(const SwapJournal& j, std::string_view served_now) {
  const std::string& active = j.registry_active_key_id_hash;
  const std::string& expected = j.expected_key_id_hash;
  if (j.kind != "swap" || active.empty() || expected.empty() || active == expected) {
    return absl::OkStatus();
  }
  const std::string why =
      served_now == expected
          ? "The provider still serves " + expected +
                ": the registry on disk is not what it serves (restored or edited by hand, "
                "or a promotion it could not write), and a restart would serve " + active +
                ". Nothing was changed: run `bao-kms-provider verify-key` on this node and "
                "mend its state before any swap or restart"
          : "A rotation this node promoted since the fleet's parity was checked, a node "
            "behind the others, or a wrong expected hash: nothing was changed; once every "
            "node reports one key_id hash (kmsfleetctl status), send the swap again";
  return MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kActiveKeyNotExpected,
      "refusing to stop the provider for " + j.target_version +
          ": the key registry's active key_id hash is " + active + ", the swap expects " +
          expected + "; " + j.target_version +
          " would start serving the registry's key and fail its verification. " + why,
      {{"key_id_hash_active", active},
       {"key_id_hash_expected", expected},
       {"key_id_hash_served", std::string(served_now)}});
}

absl::Status CheckNoPromotionSinceCapture(const SwapJournal& j, int64_t transit_now,
                                          bool restored_already) {
  // A restore already in place (the agent restarted after it) was judged
  // before it ran; the older release may have promoted since, itself.
  const int64_t before = j.registry_active_transit_version;
  if (j.kind != "swap" || j.phase != SwapPhase::kRollingBack || before <= 0 ||
      transit_now <= before || restored_already ||
      !GoesToAnOlderRelease(j.target_version, j.previous_version)) {
    return absl::OkStatus();
  }
  return MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kRollbackRefusedKeyRotated,
      "refusing to reinstall " + j.previous_version + ": the key registry's active Transit " +
          "version is " + std::to_string(transit_now) + ", " + std::to_string(before) +
          " before " + j.target_version + " was installed; " + j.target_version +
          " promoted a rotation " + j.previous_version +
          " never promoted, and data encrypted under it would not decrypt (reference "
          "§8.1): " + j.target_version + " stays installed, fix forward with a patch release",
      {{"transit_version_before", std::to_string(before)},
       {"transit_version_now", std::to_string(transit_now)}});
}

std::optional<RegistryFacts> CapturedRegistryFacts(const SwapJournal& j) {
  if (j.registry_schema.empty()) return std::nullopt;
  return RegistryFacts{j.registry_schema, j.registry_removed_records};
}

// Something not observed yet (a listener still binding, a series not yet
// exported) is "not ready": the window restarts and the deadline decides.
// A value that is observed and wrong fails at once.
VerifyStep EvaluateVerify(const v1::NodeState& s, const VerifyExpectations& e,
                          const CounterBaseline& base) {
  auto not_yet = [](std::string_view reason, std::string message) {
    return VerifyStep{VerifyVerdict::kNotReady,
                      MakeError(absl::StatusCode::kUnavailable, reason, message)};
  };
  if (!s.ready()) {
    std::string why = "provider /ready is not 200";
    for (const auto& r : s.ready_reasons()) why += " " + r;
    return not_yet(reason::kNotReady, why);
  }
  if (HasCondition(s, reason::kKeyIdHashAmbiguous)) {
    return Fail(reason::kKeyIdHashAmbiguous,
                "more than one openbao_kms_status_key_id_hash series is 1");
  }
  if (!e.target_version.empty() && s.provider_version().empty()) {
    return not_yet(reason::kBuildInfoMissing, "the provider version is not known yet");
  }
  if (!e.target_version.empty() && s.provider_version() != e.target_version) {
    return Fail(reason::kVersionMismatch,
                "provider reports version \"" + s.provider_version() +
                    "\", expected " + e.target_version);
  }
  if (s.key_id_hash_metric().empty()) {
    const std::string why = WhyNoMetrics(s);
    return not_yet(reason::kKeyIdHashMissing,
                   why.empty() ? "no openbao_kms_status_key_id_hash series yet"
                               : "no openbao_kms_status_key_id_hash series: /metrics could "
                                 "not be read: " + why);
  }
  if (s.key_id_hash_metric() != e.key_id_hash) {
    return Fail(reason::kKeyIdHashMismatch,
                "key_id hash metric is \"" + s.key_id_hash_metric() +
                    "\", expected " + e.key_id_hash);
  }
  if (s.kms_healthz() != "ok" || s.key_id_hash_socket().empty()) {
    return not_yet(reason::kKmsUnhealthy,
                   "KMS Status healthz \"" + s.kms_healthz() + "\" without a key_id yet");
  }
  if (s.key_id_hash_socket() != e.key_id_hash) {
    return Fail(reason::kKeyIdHashMismatch,
                "KMS Status key_id hash is \"" + s.key_id_hash_socket() +
                    "\", expected " + e.key_id_hash);
  }
  if (Rose(base.decrypt_errors, s.has_decrypt_key_id_errors_total(),
           s.decrypt_key_id_errors_total()) ||
      Rose(base.aad_errors, s.has_aad_validation_errors_total(),
           s.aad_validation_errors_total())) {
    return Fail(reason::kCountersRising,
                "decrypt key_id or AAD validation errors rose during verification");
  }
  return {VerifyVerdict::kHealthy, absl::OkStatus()};
}

absl::Status CheckUnitRunning(const UnitState& unit, std::string_view unit_name) {
  if (unit.activity == UnitActivity::kRunning) return absl::OkStatus();
  const std::string name(unit_name);
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kUnitFailed,
                   name + " is " + std::string(ActivityName(unit.activity)) + " (" +
                       unit.detail + "), not running; swap a running provider",
                   {{"unit", name}});
}

absl::Status CheckRotationSettled(const RotationReport& plan) {
  const std::string why = RotationUnderWayWhy(plan);
  if (why.empty()) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kRotationInProgress,
                   "rotation-plan reports " + why + "; defer the upgrade (reference §8.1)",
                   {{"rotation_state", plan.rotation_state}});
}

absl::Status CheckRotationPlanAllowsUpgrade(const RotationReport& plan,
                                            bool checkpoint_acknowledged) {
  KMSFLEET_RETURN_IF_ERROR(CheckRotationSettled(plan));
  if (checkpoint_acknowledged) return absl::OkStatus();
  if (const std::string why = CheckpointNotCurrentWhy(plan); !why.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStateCheckpointNotCurrent,
                     "rotation-plan reports " + why + ", not current: " +
                         std::string(kCheckpointRemedy),
                     {{"state_checkpoint_status", plan.state_checkpoint_status}});
  }
  return absl::OkStatus();
}

void UpdateBaseline(CounterBaseline& base, const v1::NodeState& s,
                    VerifyVerdict verdict) {
  if (verdict != VerifyVerdict::kHealthy) return;
  if (!base.decrypt_errors && s.has_decrypt_key_id_errors_total()) {
    base.decrypt_errors = s.decrypt_key_id_errors_total();
  }
  if (!base.aad_errors && s.has_aad_validation_errors_total()) {
    base.aad_errors = s.aad_validation_errors_total();
  }
}

VerifyStep EvaluateUnit(const UnitState& unit, std::string_view first_invocation,
                        std::string_view unit_name, std::string_view version) {
  const std::string name(unit_name);
  if (unit.activity == UnitActivity::kFailed) {
    std::string why = name + " is failed (" + unit.detail + ") while verifying version " +
                      std::string(version);
    if (unit.exit_status) why += "; exit status " + std::to_string(*unit.exit_status);
    if (!unit.last_output.empty()) why += "; last output: " + unit.last_output;
    return {VerifyVerdict::kFailed,
            MakeError(absl::StatusCode::kAborted, reason::kUnitFailed, why,
                      {{"unit", name},
                       {"exit_status", unit.exit_status
                                           ? std::to_string(*unit.exit_status)
                                           : ""}})};
  }
  if (!first_invocation.empty() && !unit.invocation_id.empty() &&
      unit.invocation_id != first_invocation) {
    return {VerifyVerdict::kFailed,
            MakeError(absl::StatusCode::kAborted, reason::kUnitRestarted,
                      name + " restarted while verifying version " +
                          std::string(version) + " (invocation " +
                          std::string(first_invocation) + " became " +
                          unit.invocation_id + ")",
                      {{"unit", name},
                       {"invocation_before", std::string(first_invocation)},
                       {"invocation_now", unit.invocation_id}})};
  }
  return {VerifyVerdict::kHealthy, absl::OkStatus()};
}

void StabilityWindow::Observe(VerifyVerdict verdict, int64_t now_ms) {
  if (verdict != VerifyVerdict::kHealthy) {
    healthy_since_.reset();
    ++unhealthy_polls_;
    return;
  }
  unhealthy_polls_ = 0;
  if (!healthy_since_) healthy_since_ = now_ms;
}

bool StabilityWindow::Stable(int64_t now_ms) const {
  return healthy_since_ && now_ms - *healthy_since_ >= window_ms_;
}

bool StabilityWindow::QuickPolls() const {
  // A started provider is usually ready within a poll or two, and the
  // window counts only from the poll that sees it: ask every quarter of
  // a poll for two polls' time, then every poll. A quick start is seen
  // within a quarter of a poll; a slow one costs eight small probes.
  constexpr int kQuickPolls = 8;
  return !healthy_since_ && unhealthy_polls_ > 0 && unhealthy_polls_ <= kQuickPolls;
}

int64_t StabilityWindow::NextPollInMs(int64_t now_ms, int64_t poll_ms) const {
  if (!healthy_since_) {
    if (!QuickPolls()) return poll_ms;
    return std::max<int64_t>(1, poll_ms / 4);
  }
  return std::clamp<int64_t>(*healthy_since_ + window_ms_ - now_ms, 0, poll_ms);
}

VerifyStep VerifyTracker::Observe(const std::optional<UnitState>& unit,
                                  const v1::NodeState& state, int64_t now_ms) {
  listener_down_ = HasCondition(state, reason::kHealthUnreachable);
  if (unit) {
    // The first invocation seen is the run under verification; any other
    // later is a restart between two polls, which /ready alone can miss.
    VerifyStep u = EvaluateUnit(*unit, first_invocation_, unit_name_,
                                expect_.target_version);
    if (u.verdict == VerifyVerdict::kFailed) return u;
    if (first_invocation_.empty()) first_invocation_ = unit->invocation_id;
  }
  VerifyStep step = EvaluateVerify(state, expect_, baseline_);
  if (step.verdict == VerifyVerdict::kFailed) return step;
  UpdateBaseline(baseline_, state, step.verdict);
  last_problem_ = step.problem;
  window_.Observe(step.verdict, now_ms);
  return step;
}

absl::Status CheckStabilizationMs(int64_t ms) {
  if (ms < 0 || ms > kMaxStabilizationMs) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                     "stabilization_ms " + std::to_string(ms) +
                         " is out of range: 0 (the configured default) to " +
                         std::to_string(kMaxStabilizationMs) + " (one hour)",
                     {{"stabilization_ms", std::to_string(ms)}});
  }
  return absl::OkStatus();
}

absl::Status CheckExpectedKeyIdHash(std::string_view hash) {
  // The provider's hash is base64url of a SHA-256 (43 characters); a
  // bound with room to spare, and the characters of either base64.
  constexpr size_t kMaxBytes = 128;
  const bool fits =
      hash.size() <= kMaxBytes &&
      std::all_of(hash.begin(), hash.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
               c == '+' || c == '/' || c == '=';
      });
  if (fits) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                   "expected_key_id_hash is not a key_id hash (" + std::to_string(hash.size()) +
                       " bytes; at most " + std::to_string(kMaxBytes) +
                       " base64 characters): '" + std::string(hash.substr(0, 64)) +
                       (hash.size() > 64 ? "...'" : "'"),
                   {{"bytes", std::to_string(hash.size())}});
}

int64_t CloseRetryDelayMs(int failures) {
  constexpr int64_t kFirstMs = 100, kMostMs = 5000;
  int64_t delay = kFirstMs;
  for (int i = 1; i < failures && delay < kMostMs; ++i) delay *= 2;
  return std::min(delay, kMostMs);
}

std::string NewOperationId(int64_t now_unix_ms, uint32_t random) {
  return "op-" + std::to_string(now_unix_ms) + "-" + std::to_string(random % 100000);
}

// ---- The machine's next step ----

namespace {

constexpr std::array<std::pair<SwapAction, std::string_view>, 11> kActionNames{{
    {SwapAction::kCheckTarget, "CheckTarget"},
    {SwapAction::kPreflight, "Preflight"},
    {SwapAction::kCaptureEvidence, "CaptureEvidence"},
    {SwapAction::kStopUnit, "StopUnit"},
    {SwapAction::kInstallTarget, "InstallTarget"},
    {SwapAction::kStartUnit, "StartUnit"},
    {SwapAction::kVerifyTarget, "VerifyTarget"},
    {SwapAction::kCheckRollbackAllowed, "CheckRollbackAllowed"},
    {SwapAction::kRestorePrevious, "RestorePrevious"},
    {SwapAction::kVerifyPrevious, "VerifyPrevious"},
    {SwapAction::kClose, "Close"},
}};

SwapStep Act(SwapAction action) { return {absl::OkStatus(), std::nullopt, action}; }
SwapStep RecordThen(SwapPhase phase, SwapAction action) {
  return {absl::OkStatus(), phase, action};
}
// Journals `phase` unless the journal is already there or beyond (crash
// recovery resumes mid-way).
SwapStep RecordUnlessPast(const SwapJournal& j, SwapPhase phase, SwapAction action) {
  return j.phase < phase ? RecordThen(phase, action) : Act(action);
}

SwapStep NextForward(const SwapJournal& j, SwapAction done) {
  switch (done) {
    case SwapAction::kCheckTarget:
      return RecordThen(SwapPhase::kPreflighted, SwapAction::kPreflight);
    case SwapAction::kPreflight:
      return Act(SwapAction::kCaptureEvidence);
    case SwapAction::kCaptureEvidence:
      return RecordThen(SwapPhase::kStopped, SwapAction::kStopUnit);
    case SwapAction::kStopUnit:
      return RecordThen(SwapPhase::kInstalled, SwapAction::kInstallTarget);
    case SwapAction::kInstallTarget:
      return RecordUnlessPast(j, SwapPhase::kStarted, SwapAction::kStartUnit);
    case SwapAction::kStartUnit:
      return RecordUnlessPast(j, SwapPhase::kVerifying, SwapAction::kVerifyTarget);
    case SwapAction::kVerifyTarget:
      return RecordThen(SwapPhase::kStable, SwapAction::kClose);
    default:
      break;
  }
  return {MakeError(absl::StatusCode::kInternal, reason::kJournalCorrupt,
                    std::string(ActionName(done)) + " does not belong to phase " +
                        std::string(PhaseName(j.phase))),
          std::nullopt, SwapAction::kClose};
}

SwapStep NextRollback(SwapAction done) {
  switch (done) {
    case SwapAction::kCheckRollbackAllowed:
      return Act(SwapAction::kStopUnit);
    case SwapAction::kStopUnit:
      return Act(SwapAction::kRestorePrevious);
    case SwapAction::kRestorePrevious:
      return Act(SwapAction::kStartUnit);
    case SwapAction::kStartUnit:
      return Act(SwapAction::kVerifyPrevious);
    case SwapAction::kVerifyPrevious:
      return RecordThen(SwapPhase::kRolledBack, SwapAction::kClose);
    default:
      break;
  }
  return {MakeError(absl::StatusCode::kInternal, reason::kJournalCorrupt,
                    std::string(ActionName(done)) + " does not belong to a rollback"),
          SwapPhase::kRollbackFailed, SwapAction::kClose};
}

// Every failure after the stop rolls back to the captured release.
SwapStep StartRollback(const absl::Status& failure) {
  return {failure, SwapPhase::kRollingBack, SwapAction::kCheckRollbackAllowed};
}

}  // namespace

std::string_view ActionName(SwapAction action) {
  for (const auto& [a, name] : kActionNames) {
    if (a == action) return name;
  }
  return "Unknown";
}

SwapStep FirstSwapStep() {
  return RecordThen(SwapPhase::kStaged, SwapAction::kCheckTarget);
}

SwapStep NextSwapStep(const SwapJournal& j, const SwapEvent& e) {
  if (IsTerminal(j.phase) || e.done == SwapAction::kClose) return Act(SwapAction::kClose);
  if (j.phase == SwapPhase::kRollingBack) {
    if (!e.result.ok()) return {e.result, SwapPhase::kRollbackFailed, SwapAction::kClose};
    return NextRollback(e.done);
  }
  if (!e.result.ok()) {
    if (IsAfterStop(j.phase)) return StartRollback(e.result);
    return {e.result, std::nullopt, SwapAction::kClose};  // nothing changed
  }
  return NextForward(j, e.done);
}

SwapStep RecoverySwapStep(const SwapJournal& j, std::string_view installed_sha256,
                          std::string_view unreadable) {
  RecoveryPlan plan = PlanRecovery(j, installed_sha256, unreadable);
  absl::Status restarted =
      MakeError(absl::StatusCode::kAborted, reason::kAgentRestarted,
                "kmsfleetd restarted during " + std::string(PhaseName(j.phase)) +
                    ": " + plan.why);
  switch (plan.action) {
    case RecoveryAction::kCloseAsIs:
      return Act(SwapAction::kClose);
    case RecoveryAction::kClose:
      return {restarted, std::nullopt, SwapAction::kClose};
    case RecoveryAction::kResumeVerify:
      // Install again even when the target is in place: a kill between its
      // rename and the directory's fsync leaves a rename a power cut can
      // undo, and Install makes it durable (it does nothing else then).
      return RecordUnlessPast(j, SwapPhase::kInstalled, SwapAction::kInstallTarget);
    case RecoveryAction::kRollBack:
      if (j.phase == SwapPhase::kRollingBack) {
        // Already rolling back for a recorded reason: run it again, keeping it.
        return {j.failure_reason.empty() ? restarted : absl::OkStatus(), std::nullopt,
                SwapAction::kCheckRollbackAllowed};
      }
      return StartRollback(restarted);
  }
  return Act(SwapAction::kClose);
}

void RecordFailure(SwapJournal& j, const absl::Status& failure) {
  if (failure.ok()) return;
  std::string why = ReasonOf(failure);
  if (why.empty()) why = std::string(absl::StatusCodeToString(failure.code()));
  if (j.failure_reason.empty()) {
    j.failure_reason = why;
    j.failure_message = std::string(failure.message());
    return;
  }
  if (j.phase != SwapPhase::kRollingBack) return;  // keep the first failure
  if (why == reason::kRollbackRefusedRemoved || why == reason::kRollbackRefusedSchema ||
      why == reason::kRollbackRefusedKeyRotated || why == reason::kRollbackRefusedManifestEdited || KeptAServedTarget(why) ||
      why == j.restore_refused_once_served) {
    // The refusal is what the operator must act on; the first failure stays
    // in the message.
    j.failure_message += " (first failure: " + j.failure_reason + ")";
    j.failure_reason = why;
  }
  j.failure_message += "; rollback failed: " + std::string(failure.message());
}

namespace {

// "its SHA-256 is X, " or "it is gone, ": the live manifest as an error
// names it (`live_sha256` is a hash or NotFound).
std::string LiveManifestFound(const absl::StatusOr<std::string>& live_sha256) {
  return live_sha256.ok() ? "its SHA-256 is " + *live_sha256 + ", " : "it is gone, ";
}

bool IsUnreadable(const absl::StatusOr<std::string>& live_sha256) {
  return !live_sha256.ok() && !absl::IsNotFound(live_sha256.status());
}

// A file put there that the installer itself refuses to replace (a
// symlink, one far larger than any manifest): not a passing read error.
bool IsNotOurs(const absl::StatusOr<std::string>& live_sha256) {
  const std::string why = live_sha256.ok() ? "" : ReasonOf(live_sha256.status());
  return why == reason::kNotRegularFile || why == reason::kInputTooLarge;
}

}  // namespace

absl::Status CheckManifestRestorable(const SwapJournal& j, std::string_view manifest,
                                     const absl::StatusOr<std::string>& live_sha256) {
  // Found in review: the late check before the rename (Install's
  // check_live) took one put in place meanwhile for unreadable.
  if (IsNotOurs(live_sha256)) return live_sha256.status();
  if (IsUnreadable(live_sha256)) return absl::OkStatus();
  if (live_sha256.ok() &&
      (*live_sha256 == j.target_sha256 || *live_sha256 == j.previous_sha256)) {
    return absl::OkStatus();
  }
  const std::string file(manifest);
  return MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kRollbackRefusedManifestEdited,
      "refusing to restore " + j.previous_binary + " over " + file + ": " +
          LiveManifestFound(live_sha256) + "neither the manifest this operation installed (" +
          j.target_sha256 + ") nor the one it replaced (" + j.previous_sha256 +
          "), so it was edited or removed since. That change is kept: decide which manifest "
          "should run and put it in place (the one from before the operation is " +
          j.previous_binary + ")",
      {{"file", file},
       {"actual", live_sha256.ok() ? *live_sha256 : "absent"},
       {"target", j.target_sha256},
       {"previous", j.previous_sha256}});
}

absl::Status CheckManifestInstallable(const SwapJournal& j, std::string_view manifest,
                                      const absl::StatusOr<std::string>& live_sha256) {
  if (IsUnreadable(live_sha256)) return live_sha256.status();
  if (live_sha256.ok() &&
      (*live_sha256 == j.previous_sha256 || *live_sha256 == j.target_sha256)) {
    return absl::OkStatus();
  }
  const std::string file(manifest);
  return MakeError(
      absl::StatusCode::kFailedPrecondition, reason::kManifestChanged,
      "refusing to install " + j.target_binary + " over " + file + ": " +
          LiveManifestFound(live_sha256) + "not the manifest captured before the install (" +
          j.previous_sha256 + "), so it was edited or removed since. That change is kept",
      {{"file", file},
       {"actual", live_sha256.ok() ? *live_sha256 : "absent"},
       {"previous", j.previous_sha256}});
}

absl::Status CheckEvidenceUnchanged(const SwapJournal& j,
                                    std::string_view registry_path) {
  if (j.kind != "swap" || j.phase != SwapPhase::kRolledBack || j.target_ready_seen ||
      j.registry_sha256.empty()) {
    return absl::OkStatus();
  }
  const std::string registry(registry_path);
  for (const auto& [file, before, after] :
       {std::tuple{registry, j.registry_sha256, j.registry_sha256_after},
        std::tuple{registry + ".checkpoint", j.checkpoint_sha256, j.checkpoint_sha256_after}}) {
    if (before == after) continue;
    return MakeError(absl::StatusCode::kDataLoss, reason::kEvidenceChanged,
                     file + " changed although version " + j.target_version +
                         " never became ready (SHA-256 " +
                         (before.empty() ? "absent" : before) + " before, " +
                         (after.empty() ? "absent" : after) +
                         " after); compare it with the copy in " + j.evidence_dir,
                     {{"file", file}, {"before", before}, {"after", after}});
  }
  return absl::OkStatus();
}

}  // namespace kmsfleet
