// The swap state machine, journal encoding, recovery decisions, rollback
// refusal and the verification verdict.
#include "kmsfleet/core/swap_machine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::string kHash = "p3EAs1e_A8OHqbyfv1s-mC5fFFpIRgQs8TMsnvIzE8c";

TEST(SwapMachineTest, PhaseNamesRoundTrip) {
  for (int i = 0; i <= static_cast<int>(SwapPhase::kRollbackFailed); ++i) {
    SwapPhase p = static_cast<SwapPhase>(i);
    absl::StatusOr<SwapPhase> back = ParsePhase(PhaseName(p));
    ASSERT_TRUE(back.ok()) << PhaseName(p);
    EXPECT_EQ(*back, p);
  }
  EXPECT_EQ(PhaseName(SwapPhase::kRollbackFailed), "RollbackFailed");
  EXPECT_FALSE(ParsePhase("Draining").ok());
}

TEST(SwapMachineTest, AnOperationStartedWithoutAnIdGetsOneFromTheClockAndRandomness) {
  EXPECT_EQ(NewOperationId(1796401071449, 123), "op-1796401071449-123");
  EXPECT_EQ(NewOperationId(5, 4'000'012'345u), "op-5-12345");  // n below 100000
}

TEST(SwapMachineTest, HappyPathAdvancesOneStepAtATime) {
  SwapJournal j;
  j.operation_id = "op-1";
  for (SwapPhase p : {SwapPhase::kStaged, SwapPhase::kPreflighted,
                      SwapPhase::kStopped, SwapPhase::kInstalled,
                      SwapPhase::kStarted, SwapPhase::kVerifying,
                      SwapPhase::kStable}) {
    ASSERT_TRUE(Advance(j, p, 100).ok()) << PhaseName(p);
  }
  EXPECT_EQ(j.history.size(), 7u);
  EXPECT_EQ(j.history.back(), "Stable@100");
  EXPECT_FALSE(Advance(j, SwapPhase::kRollingBack, 101).ok());
}

TEST(SwapMachineTest, RollbackOnlyAfterTheStop) {
  EXPECT_FALSE(IsAllowedTransition(SwapPhase::kPreflighted, SwapPhase::kRollingBack));
  EXPECT_TRUE(IsAllowedTransition(SwapPhase::kStopped, SwapPhase::kRollingBack));
  EXPECT_TRUE(IsAllowedTransition(SwapPhase::kVerifying, SwapPhase::kRollingBack));
  EXPECT_TRUE(IsAllowedTransition(SwapPhase::kRollingBack, SwapPhase::kRollbackFailed));
  EXPECT_FALSE(IsAllowedTransition(SwapPhase::kRollingBack, SwapPhase::kStable));
  EXPECT_FALSE(IsAllowedTransition(SwapPhase::kStaged, SwapPhase::kStopped));
}

TEST(SwapMachineTest, JournalRoundTrips) {
  SwapJournal j;
  j.operation_id = "op-7";
  j.phase = SwapPhase::kInstalled;
  j.target_version = "0.2.0";
  j.target_sha256 = std::string(64, 'a');
  j.fence_term = 42;
  j.fence_index = 7;
  j.sequence = 12;
  j.history = {"Staged@1", "Installed@2"};
  j.failure_reason = "NOT_READY";
  j.kind = "rollback";
  j.of_operation_id = "op-3";
  j.replaces_sha256 = std::string(64, 'b');
  j.staged_digest = std::string(64, 'c');
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->operation_id, "op-7");
  EXPECT_EQ(back->of_operation_id, "op-3");
  EXPECT_EQ(back->replaces_sha256, j.replaces_sha256);
  EXPECT_EQ(back->staged_digest, j.staged_digest);
  EXPECT_EQ(back->phase, SwapPhase::kInstalled);
  EXPECT_EQ(back->fence_term, 42u);
  EXPECT_EQ(back->fence_index, 7u);
  EXPECT_EQ(back->sequence, 12u);
  EXPECT_EQ(back->history, j.history);
  EXPECT_EQ(back->failure_reason, "NOT_READY");
  EXPECT_TRUE(back->open);
  // A journal written before the field reads as naming no swap.
  back = ParseJournal(R"({"operationId":"op-7","kind":"rollback","phase":"Stable","open":false})",
                      "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->of_operation_id, "");
  EXPECT_EQ(back->staged_digest, "");
  EXPECT_EQ(back->sequence, 0u);
}

// A swap's acknowledgement of a checkpoint that is not current survives
// the journal (a restarted agent recovering the swap checks it again);
// absent it is false, and a value of another type is corruption.
TEST(SwapMachineTest, TheCheckpointAcknowledgementRoundTrips) {
  SwapJournal j;
  j.operation_id = "op-8";
  j.checkpoint_acknowledged = true;
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->checkpoint_acknowledged);
  back = ParseJournal(R"({"operationId":"op-8","phase":"Staged","open":true})", "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_FALSE(back->checkpoint_acknowledged);
  absl::Status odd = ParseJournal(
      R"({"operationId":"op-8","phase":"Staged","open":true,"checkpointAcknowledged":"yes"})",
      "j.json").status();
  EXPECT_EQ(ReasonOf(odd), reason::kJournalCorrupt) << odd;
}

TEST(SwapMachineTest, CorruptJournalIsNamedAsDataLoss) {
  absl::StatusOr<SwapJournal> j =
      ParseJournal(R"({"operationId":"x","phase":"Sideways"})", "j.json");
  EXPECT_EQ(ReasonOf(j.status()), reason::kJournalCorrupt);
  EXPECT_EQ(j.status().code(), absl::StatusCode::kDataLoss);
  absl::Status truncated = ParseJournal("{", "j.json").status();
  EXPECT_EQ(ReasonOf(truncated), reason::kJournalCorrupt);
  EXPECT_EQ(truncated.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(truncated.message()), ::testing::HasSubstr("j.json"));
}

// What a plan's facts forbid survives the journal (a restarted agent
// recovering the swap reads it), and nothing else is taken for it.
TEST(SwapMachineTest, TheRestoreBarrierRoundTripsAndOnlyReasonCodesAreRead) {
  SwapJournal j;
  j.operation_id = "op-7";
  j.kind = "swap";
  j.target_ready_seen = true;
  j.restore_refused_once_served = reason::kRollbackRefusedOneWay;
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->restore_refused_once_served, reason::kRollbackRefusedOneWay);
  // A code a newer agent wrote: still read, still refusing the restore.
  j.restore_refused_once_served = "ROLLBACK_REFUSED_SOMETHING_NEW";
  back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  back->previous_version = "0.1.0";
  back->target_version = "0.2.0";
  EXPECT_EQ(ReasonOf(CheckRestoreOnceServed(*back)), "ROLLBACK_REFUSED_SOMETHING_NEW");
  // Its refusal is the operation's reason, as a known one's is.
  back->phase = SwapPhase::kRollingBack;
  back->failure_reason = "NOT_READY";
  RecordFailure(*back, CheckRestoreOnceServed(*back));
  EXPECT_EQ(back->failure_reason, "ROLLBACK_REFUSED_SOMETHING_NEW");
  j.restore_refused_once_served = "not a code\n";
  absl::Status odd = ParseJournal(SerializeJournal(j), "j.json").status();
  EXPECT_EQ(ReasonOf(odd), reason::kJournalCorrupt);
  // A journal of an agent before the field restores as it always did.
  back = ParseJournal(R"({"operationId":"x","phase":"Verifying","open":true})", "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->restore_refused_once_served, "");
}

TEST(SwapMachineTest, OnlyATargetThatWasReadyUnderABarrierIsKept) {
  SwapJournal j;
  j.kind = "swap";
  j.previous_version = "0.1.0";
  j.target_version = "0.2.0";
  j.restore_refused_once_served = reason::kRollbackRefusedWireFormat;
  EXPECT_TRUE(CheckRestoreOnceServed(j).ok()) << "never ready: it served nothing";
  j.target_ready_seen = true;
  absl::Status kept = CheckRestoreOnceServed(j);
  EXPECT_EQ(ReasonOf(kept), reason::kRollbackRefusedWireFormat);
  EXPECT_THAT(std::string(kept.message()), ::testing::HasSubstr("wire-format change"));
  j.restore_refused_once_served = reason::kRollbackRefusedOneWay;
  EXPECT_THAT(std::string(CheckRestoreOnceServed(j).message()), ::testing::HasSubstr("one-way"));
  j.restore_refused_once_served.clear();
  EXPECT_TRUE(CheckRestoreOnceServed(j).ok());
  j.restore_refused_once_served = reason::kRollbackRefusedOneWay;
  j.previous_version = j.target_version;  // the same release again
  EXPECT_TRUE(CheckRestoreOnceServed(j).ok());
  j.previous_version = "0.1.0";
  j.kind = "rollback";  // its restore goes forward, to the newer release
  EXPECT_TRUE(CheckRestoreOnceServed(j).ok());
}

TEST(SwapMachineTest, RecoveryObservesTheInstalledDigest) {
  SwapJournal j;
  j.target_sha256 = std::string(64, 't');
  j.previous_sha256 = std::string(64, 'p');
  j.phase = SwapPhase::kPreflighted;
  EXPECT_EQ(PlanRecovery(j, j.previous_sha256).action, RecoveryAction::kClose);
  j.phase = SwapPhase::kStopped;
  EXPECT_EQ(PlanRecovery(j, j.previous_sha256).action, RecoveryAction::kRollBack);
  j.phase = SwapPhase::kInstalled;
  EXPECT_EQ(PlanRecovery(j, j.target_sha256).action, RecoveryAction::kResumeVerify);
  j.phase = SwapPhase::kVerifying;
  EXPECT_EQ(PlanRecovery(j, "junk").action, RecoveryAction::kRollBack);
  j.phase = SwapPhase::kRollingBack;
  EXPECT_EQ(PlanRecovery(j, j.target_sha256).action, RecoveryAction::kRollBack);
  j.phase = SwapPhase::kStable;
  EXPECT_EQ(PlanRecovery(j, j.target_sha256).action, RecoveryAction::kCloseAsIs);
  j.phase = SwapPhase::kVerifying;
  EXPECT_TRUE(RecoveryReadsInstalledDigest(j));
  for (SwapPhase p : {SwapPhase::kPreflighted, SwapPhase::kRollingBack, SwapPhase::kStable}) {
    SwapJournal other = j;
    other.phase = p;
    EXPECT_FALSE(RecoveryReadsInstalledDigest(other)) << PhaseName(p);
  }
  RecoveryPlan unread = PlanRecovery(j, "", "read /usr/bin/p: Input/output error");
  EXPECT_EQ(unread.action, RecoveryAction::kRollBack);
  EXPECT_THAT(unread.why, ::testing::HasSubstr("could not be read (read /usr/bin/p: Input"));
}

TEST(SwapMachineTest, RemovedRecordsAppearingSinceTheCaptureRefuseRollback) {
  absl::StatusOr<RegistryFacts> f = ParseRegistryFacts(
      R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1","snapshots":[
          {"state":"active"},{"state":"removed"}]})", "r.json");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->removed_records, 1);
  RegistryFacts before{f->schema_version, 0};
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed(before, *f)), reason::kRollbackRefusedRemoved);
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed(std::nullopt, *f)),
            reason::kRollbackRefusedRemoved);
  // Grew since the capture: refused.
  RegistryFacts grown{f->schema_version, 3};
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed(*f, grown)), reason::kRollbackRefusedRemoved);
}

// The previous version already served with these records: they do not
// block its return.
TEST(SwapMachineTest, RemovedRecordsThePreviousVersionServedWithDoNotBlock) {
  RegistryFacts before{"keyregistry.openbao-kms/v1alpha1", 2};
  EXPECT_TRUE(CheckRollbackAllowed(before, before).ok());
  SwapJournal j;
  j.operation_id = "op-1";
  j.registry_schema = before.schema_version;
  j.registry_removed_records = 2;
  std::optional<RegistryFacts> captured = CapturedRegistryFacts(j);
  ASSERT_TRUE(captured.has_value());
  EXPECT_TRUE(CheckRollbackAllowed(captured, before).ok());
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->registry_removed_records, 2);
}

// A journal of a `kind` operation that found `from` running and installs
// `to`.
SwapJournal JournalOf(std::string id, std::string kind, std::string from, std::string to) {
  SwapJournal j;
  j.operation_id = std::move(id);
  j.kind = std::move(kind);
  j.previous_version = std::move(from);
  j.target_version = std::move(to);
  return j;
}

// Reference §8.1: never back once a rotation was promoted under the
// release being undone. The registry names its active key; the journal
// keeps the hash it had at the capture, and across a restart.
TEST(SwapMachineTest, ARotationPromotedSinceTheCaptureRefusesRollback) {
  absl::StatusOr<RegistryFacts> f = ParseRegistryFacts(
      R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1","activeKeyId":"obk2.k2"})", "r");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->active_key_id, "obk2.k2");
  const std::string before(43, 'a'), after(43, 'b');
  SwapJournal j = JournalOf("op-2", "rollback", "0.2.0", "0.1.0");
  j.key_id_hash_before_undone = before;
  j.registry_active_key_id_hash = after;  // its own capture's: not what it is judged by
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->key_id_hash_before_undone, before);
  EXPECT_EQ(back->registry_active_key_id_hash, after);
  EXPECT_TRUE(CheckNoRotationSinceCapture(*back, before).ok());
  absl::Status refused = CheckNoRotationSinceCapture(*back, after);
  EXPECT_EQ(ReasonOf(refused), reason::kRollbackRefusedKeyRotated);
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("refusing to reinstall 0.1.0"));
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("before 0.2.0 was installed"));
  // A registry that names no active key now is left to the older release,
  // which starts only on state it can read.
  EXPECT_TRUE(CheckNoRotationSinceCapture(*back, "").ok());
  // Nothing to judge: not judged.
  j.key_id_hash_before_undone.clear();
  EXPECT_TRUE(CheckNoRotationSinceCapture(j, after).ok());
  // Restores are not judged. A failed swap's: a key its target derived
  // otherwise is what its verify caught (KEY_ID_HASH_MISMATCH). A failed
  // rollback's: it puts back the release that promoted the key.
  // (A swap to an older release before its stop is judged: a rollback by
  // another name, ASwapToAnOlderReleaseIsJudgedByTheKeyWhenItLastRan.)
  SwapJournal swap = *back;  // an upgrade's restore of the release it replaced
  swap.kind = "swap";
  swap.previous_version = "0.1.0";
  swap.target_version = "0.2.0";
  swap.phase = SwapPhase::kRollingBack;
  EXPECT_TRUE(CheckNoRotationSinceCapture(swap, after).ok());
  SwapJournal restoring = *back;
  restoring.phase = SwapPhase::kRollingBack;
  EXPECT_TRUE(CheckNoRotationSinceCapture(restoring, after).ok());
}

// A swap to an older release, by hand, is judged as a rollback is:
// against the key active when that release last ran on the node, which
// the capture of the latest closed operation that stopped it kept.
TEST(SwapMachineTest, ASwapToAnOlderReleaseIsJudgedByTheKeyWhenItLastRan) {
  const std::string first(43, 'a'), second(43, 'b'), third(43, 'c');
  auto closed = [](std::string id, std::string from, std::string to, SwapPhase phase,
                   uint64_t sequence, std::string registry_hash, std::string expected) {
    SwapJournal j = JournalOf(std::move(id), "swap", std::move(from), std::move(to));
    j.phase = phase;
    j.open = false;
    j.sequence = sequence;
    j.registry_active_key_id_hash = std::move(registry_hash);
    j.expected_key_id_hash = std::move(expected);
    return j;
  };
  std::vector<SwapJournal> journals = {
      closed("op-1", "0.1.0", "0.2.0", SwapPhase::kStable, 1, first, first),
      // Refused before its stop: it never stopped 0.1.0.
      closed("op-2", "0.1.0", "0.3.0", SwapPhase::kPreflighted, 3, third, third),
      closed("op-3", "0.2.0", "0.3.0", SwapPhase::kStable, 4, second, second),
  };
  EXPECT_EQ(KeyIdHashWhenLastReplaced(journals, "0.1.0"), first);
  EXPECT_EQ(KeyIdHashWhenLastReplaced(journals, "0.2.0"), second);
  EXPECT_EQ(KeyIdHashWhenLastReplaced(journals, "0.3.0"), "");
  // The latest in the node's order wins; one written before the registry's
  // hash was kept answers with the hash its swap expected.
  journals.push_back(closed("op-4", "0.1.0", "0.2.0", SwapPhase::kRolledBack, 2, "", third));
  EXPECT_EQ(KeyIdHashWhenLastReplaced(journals, "0.1.0"), third);
  journals.back().open = true;  // still running: not judged by
  EXPECT_EQ(KeyIdHashWhenLastReplaced(journals, "0.1.0"), first);

  SwapJournal down = JournalOf("op-5", "swap", "0.3.0", "0.1.0");
  down.key_id_hash_before_undone = first;
  EXPECT_TRUE(CheckNoRotationSinceCapture(down, first).ok());
  absl::Status refused = CheckNoRotationSinceCapture(down, second);
  EXPECT_EQ(ReasonOf(refused), reason::kRollbackRefusedKeyRotated);
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("refusing to reinstall 0.1.0"));
  EXPECT_THAT(refused.message(),
              ::testing::HasSubstr(first + " when 0.1.0 last ran on this node"));
  // Going forward reads what the older promoted: not judged; nor is the
  // same version again (break-glass), whatever its string.
  SwapJournal up = down;
  up.previous_version = "0.1.0";
  up.target_version = "0.3.0";
  EXPECT_TRUE(CheckNoRotationSinceCapture(up, second).ok());
  SwapJournal same = down;
  same.previous_version = same.target_version = "dev-build";
  EXPECT_TRUE(CheckNoRotationSinceCapture(same, second).ok());
}

// Journals from an agent before the sequence (0) are ordered by fence,
// then start time, as the hand-off orders them (AdmissionOrder).
TEST(SwapMachineTest, TheLastOperationThatReplacedAReleaseIsTheNodesLastAdmitted) {
  auto stopped = [](std::string id, uint64_t sequence, uint64_t fence_index,
                    int64_t started, std::string hash) {
    SwapJournal j = JournalOf(std::move(id), "swap", "0.1.0", "0.2.0");
    j.phase = SwapPhase::kStable;
    j.open = false;
    j.sequence = sequence;
    j.fence_index = fence_index;
    j.started_unix_ms = j.updated_unix_ms = started;
    j.registry_active_key_id_hash = std::move(hash);
    return j;
  };
  const std::string a(43, 'a'), b(43, 'b'), c(43, 'c');
  // Fence before the clock: a wall clock stepped back does not reorder.
  EXPECT_EQ(KeyIdHashWhenLastReplaced({stopped("op-2", 0, 7, 100, b), stopped("op-1", 0, 6, 900, a)},
                                      "0.1.0"),
            b);
  // A sequence, once there, comes first.
  EXPECT_EQ(KeyIdHashWhenLastReplaced(
                {stopped("op-2", 0, 7, 100, b), stopped("op-3", 1, 0, 50, c)}, "0.1.0"),
            c);
}

TEST(SwapMachineTest, ASwapWhoseRegistryPromotedAnotherKeyIsRefusedBeforeItsStop) {
  const std::string expected(43, 'a'), promoted(43, 'b');
  SwapJournal j = JournalOf("op-1", "swap", "0.1.0", "0.2.0");
  j.expected_key_id_hash = expected;
  j.registry_active_key_id_hash = expected;
  EXPECT_TRUE(CheckActiveKeyAsExpected(j).ok());
  j.registry_active_key_id_hash = promoted;
  absl::Status refused = CheckActiveKeyAsExpected(j);
  EXPECT_EQ(ReasonOf(refused), reason::kActiveKeyNotExpected);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("refusing to stop the provider for 0.2.0"));
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("active key_id hash is " + promoted));
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("the swap expects " + expected));
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("A rotation this node promoted"));
  // The provider still serving the expected key: the registry on disk is
  // what moved, and the refusal says to mend it before any restart.
  absl::Status moved_on_disk = CheckActiveKeyAsExpected(j, expected);
  EXPECT_EQ(ReasonOf(moved_on_disk), reason::kActiveKeyNotExpected);
  EXPECT_THAT(moved_on_disk.message(),
              ::testing::HasSubstr("the registry on disk is not what it serves"));
  // Either hash unknown: nothing to judge (a registry without activeKeyId,
  // an operation journaled before the field).
  SwapJournal unknown = j;
  unknown.registry_active_key_id_hash.clear();
  EXPECT_TRUE(CheckActiveKeyAsExpected(unknown).ok());
  unknown = j;
  unknown.expected_key_id_hash.clear();
  EXPECT_TRUE(CheckActiveKeyAsExpected(unknown).ok());
  // A rollback is judged by CheckNoRotationSinceCapture instead.
  SwapJournal rollback = j;
  rollback.kind = "rollback";
  EXPECT_TRUE(CheckActiveKeyAsExpected(rollback).ok());
}

// Only a rollback to an older release is judged; it must find the key of
// the undone operation's capture, or, for a journal without one, the key
// that operation's target was verified serving.
TEST(SwapMachineTest, ARollbackToAnOlderReleaseKeepsTheKeyBeforeTheOneItUndoes) {
  SwapJournal up;
  up.previous_version = "0.1.0";
  up.target_version = "0.2.0";
  up.expected_key_id_hash = std::string(43, 'e');
  EXPECT_EQ(KeyIdHashBeforeUndone(up), std::string(43, 'e'));
  up.registry_active_key_id_hash = std::string(43, 'c');
  EXPECT_EQ(KeyIdHashBeforeUndone(up), std::string(43, 'c'));
  // Undoing it goes back; undoing a downgrade, or the same version again,
  // does not.
  SwapJournal down = up;
  std::swap(down.previous_version, down.target_version);
  EXPECT_EQ(KeyIdHashBeforeUndone(down), "");
  SwapJournal same = up;
  same.previous_version = "0.2.0";
  EXPECT_EQ(KeyIdHashBeforeUndone(same), "");
  // A pre-release is older than its release; a version that does not
  // parse is taken as older.
  SwapJournal pre = up;
  pre.previous_version = "0.2.0-preview.3";
  EXPECT_EQ(KeyIdHashBeforeUndone(pre), std::string(43, 'c'));
  SwapJournal odd = down;
  odd.previous_version = "latest";
  EXPECT_EQ(KeyIdHashBeforeUndone(odd), std::string(43, 'c'));
}

// A failed swap's restore is refused once its target promoted a Transit
// version (it may have served long: an agent down in its window); a
// key_id derived otherwise for the same version is restored.
TEST(SwapMachineTest, ARestoreAfterItsTargetPromotedATransitVersionIsRefused) {
  absl::StatusOr<RegistryFacts> f = ParseRegistryFacts(
      R"({"schemaVersion":"s","snapshots":[{"state":"retired","transitVersion":1},
          {"state":"active","transitVersion":2}]})", "r");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->active_transit_version, 2);
  SwapJournal j;
  j.operation_id = "op-1";
  j.kind = "swap";
  j.phase = SwapPhase::kRollingBack;
  j.previous_version = "0.1.0";
  j.target_version = "0.2.0";
  j.registry_active_transit_version = 1;
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->registry_active_transit_version, 1);
  absl::Status refused = CheckNoPromotionSinceCapture(*back, 2, false);
  EXPECT_EQ(ReasonOf(refused), reason::kRollbackRefusedKeyRotated);
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("refusing to reinstall 0.1.0"));
  EXPECT_TRUE(CheckNoPromotionSinceCapture(*back, 1, false).ok());
  SwapJournal unknown = *back;
  unknown.registry_active_transit_version = 0;
  EXPECT_TRUE(CheckNoPromotionSinceCapture(unknown, 2, false).ok());
  SwapJournal before_the_stop = *back;
  before_the_stop.phase = SwapPhase::kPreflighted;
  EXPECT_TRUE(CheckNoPromotionSinceCapture(before_the_stop, 2, false).ok());
  SwapJournal same_version = *back;
  same_version.previous_version = "0.2.0";
  EXPECT_TRUE(CheckNoPromotionSinceCapture(same_version, 2, false).ok());
  // A downgrade's restore goes to the newer release, which reads it (found
  // in review); a restore already in place was judged before it ran.
  SwapJournal downgrade = *back;
  std::swap(downgrade.previous_version, downgrade.target_version);
  EXPECT_TRUE(CheckNoPromotionSinceCapture(downgrade, 2, false).ok());
  EXPECT_TRUE(CheckNoPromotionSinceCapture(*back, 2, /*restored_already=*/true).ok());
}

TEST(SwapMachineTest, SchemaChangeRefusesRollback) {
  RegistryFacts now{"keyregistry.openbao-kms/v2", 0};
  RegistryFacts before{"keyregistry.openbao-kms/v1alpha1", 0};
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed(before, now)), reason::kRollbackRefusedSchema);
  EXPECT_TRUE(CheckRollbackAllowed(std::nullopt, now).ok());
  EXPECT_TRUE(CheckRollbackAllowed(now, now).ok());
  EXPECT_EQ(ReasonOf(ParseRegistryFacts("{}", "r").status()),
            reason::kMalformedRegistry);
}

v1::NodeState Healthy() {
  v1::NodeState s;
  s.set_ready(true);
  s.set_provider_version("0.2.0");
  s.set_key_id_hash_metric(kHash);
  s.set_key_id_hash_socket(kHash);
  s.set_kms_healthz("ok");
  s.set_decrypt_key_id_errors_total(0);
  s.set_aad_validation_errors_total(0);
  return s;
}

TEST(SwapMachineTest, VerifyVerdicts) {
  VerifyExpectations e{"0.2.0", kHash};
  CounterBaseline base{0.0, 0.0};
  EXPECT_EQ(EvaluateVerify(Healthy(), e, base).verdict, VerifyVerdict::kHealthy);

  v1::NodeState s = Healthy();
  s.set_ready(false);
  EXPECT_EQ(EvaluateVerify(s, e, base).verdict, VerifyVerdict::kNotReady);

  s = Healthy();
  s.set_provider_version("0.1.0");
  EXPECT_EQ(ReasonOf(EvaluateVerify(s, e, base).problem), reason::kVersionMismatch);

  s = Healthy();
  s.set_key_id_hash_metric("other");
  EXPECT_EQ(ReasonOf(EvaluateVerify(s, e, base).problem), reason::kKeyIdHashMismatch);

  s = Healthy();
  s.set_key_id_hash_socket("other");
  EXPECT_EQ(ReasonOf(EvaluateVerify(s, e, base).problem), reason::kKeyIdHashMismatch);
  EXPECT_EQ(EvaluateVerify(s, e, base).verdict, VerifyVerdict::kFailed);

  s = Healthy();
  s.set_aad_validation_errors_total(3);
  EXPECT_EQ(ReasonOf(EvaluateVerify(s, e, base).problem), reason::kCountersRising);
}

// Found in review: one malformed known series drops every fact of the
// scrape, the hash with them, and the window waited out its deadline on
// "no ... series yet", never saying why. The scrape's failure is named.
TEST(SwapMachineTest, AHashMissingBecauseMetricsCannotBeReadSaysWhy) {
  VerifyExpectations e{"0.2.0", kHash};
  CounterBaseline base;
  v1::NodeState s = Healthy();
  s.set_key_id_hash_metric("");
  v1::Condition* c = s.add_conditions();
  c->set_reason(reason::kMalformedExposition);
  c->set_message("metrics series openbao_kms_key_version{k=\"b\"} with value 3: is a second "
                 "key version series");
  VerifyStep step = EvaluateVerify(s, e, base);
  EXPECT_EQ(step.verdict, VerifyVerdict::kNotReady);
  EXPECT_EQ(ReasonOf(step.problem), reason::kKeyIdHashMissing);
  EXPECT_THAT(std::string(step.problem.message()),
              ::testing::HasSubstr("[MALFORMED_EXPOSITION] metrics series "
                                   "openbao_kms_key_version"));
}

// A provider that has just started may answer /ready before its metrics
// or socket do: what is not observed yet waits, what is wrong fails.
TEST(SwapMachineTest, NotYetObservedIsNotReadyRatherThanFailed) {
  VerifyExpectations e{"0.2.0", kHash};
  CounterBaseline base;
  v1::NodeState s = Healthy();
  s.set_key_id_hash_metric("");
  VerifyStep step = EvaluateVerify(s, e, base);
  EXPECT_EQ(step.verdict, VerifyVerdict::kNotReady);
  EXPECT_EQ(ReasonOf(step.problem), reason::kKeyIdHashMissing);

  s = Healthy();
  s.set_provider_version("");
  EXPECT_EQ(EvaluateVerify(s, e, base).verdict, VerifyVerdict::kNotReady);

  s = Healthy();
  s.set_kms_healthz("unhealthy");
  s.set_key_id_hash_socket("");
  EXPECT_EQ(ReasonOf(EvaluateVerify(s, e, base).problem), reason::kKmsUnhealthy);
  EXPECT_EQ(EvaluateVerify(s, e, base).verdict, VerifyVerdict::kNotReady);
}

TEST(SwapMachineTest, StabilityWindowRestartsOnAnyBadStep) {
  StabilityWindow w(1000);
  w.Observe(VerifyVerdict::kHealthy, 0);
  EXPECT_FALSE(w.Stable(999));
  w.Observe(VerifyVerdict::kNotReady, 999);
  w.Observe(VerifyVerdict::kHealthy, 1000);
  EXPECT_FALSE(w.Stable(1999));
  EXPECT_TRUE(w.Stable(2000));
}

// The last wait before the window completes is cut to the window's end:
// with the poll interval as the only wait, a 500 ms production poll made
// every node's step up to half a second longer than its window.
TEST(SwapMachineTest, StabilityWindowWaitsNoLongerThanItsEnd) {
  StabilityWindow w(1000);
  EXPECT_EQ(w.NextPollInMs(0, 500), 500);  // nothing healthy yet
  w.Observe(VerifyVerdict::kHealthy, 100);
  EXPECT_EQ(w.NextPollInMs(120, 500), 500);
  EXPECT_EQ(w.NextPollInMs(800, 500), 300);
  EXPECT_EQ(w.NextPollInMs(1100, 500), 0);
  EXPECT_EQ(w.NextPollInMs(1300, 500), 0);  // never negative
  w.Observe(VerifyVerdict::kNotReady, 1050);
  EXPECT_EQ(w.NextPollInMs(1060, 500), 125);  // a bad step restarts it
}

// The window counts from the poll that sees the provider ready: with a
// whole poll between tries, a provider ready 10 ms after its start was
// seen up to a poll later (500 ms in production) and every node's step
// took that much longer. Until a poll is healthy the waits are a quarter of
// a poll, for two polls' time; then whole polls.
TEST(SwapMachineTest, StabilityWindowAsksSoonAfterAPollThatWasNotHealthy) {
  StabilityWindow w(1000);
  std::vector<int64_t> waits;
  int64_t now = 0;
  for (int i = 0; i < 10; ++i) {
    w.Observe(VerifyVerdict::kNotReady, now);
    waits.push_back(w.NextPollInMs(now, 500));
    now += waits.back();
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{125, 125, 125, 125, 125, 125, 125, 125, 500, 500}));
  w.Observe(VerifyVerdict::kHealthy, now);
  EXPECT_EQ(w.NextPollInMs(now, 500), 500);
  w.Observe(VerifyVerdict::kNotReady, now + 500);
  EXPECT_EQ(w.NextPollInMs(now + 500, 500), 125);  // quick again
  EXPECT_EQ(w.NextPollInMs(0, 1), 1);            // never below a millisecond
}

// The AAD baseline is the first healthy value whether or not the decrypt
// counter is exported: without it, the baseline used to follow every
// healthy poll, so a dip and return of the AAD counter failed the window
// only on providers that lack the decrypt counter.
TEST(SwapMachineTest, AadBaselineHoldsWithoutTheDecryptCounter) {
  for (bool with_decrypt : {true, false}) {
    VerifyTracker t({"0.2.0", kHash}, 1000, "p.service");
    v1::NodeState s = Healthy();
    if (!with_decrypt) s.clear_decrypt_key_id_errors_total();
    int64_t now = 0;
    for (double aad : {5.0, 4.0, 5.0}) {
      s.set_aad_validation_errors_total(aad);
      EXPECT_EQ(t.Observe(std::nullopt, s, now += 100).verdict, VerifyVerdict::kHealthy)
          << "aad=" << aad << " with_decrypt=" << with_decrypt;
    }
    s.set_aad_validation_errors_total(6);
    VerifyStep step = t.Observe(std::nullopt, s, now += 100);
    EXPECT_EQ(ReasonOf(step.problem), reason::kCountersRising) << with_decrypt;
  }
}

UnitState Running(std::string invocation) {
  UnitState u;
  u.activity = UnitActivity::kRunning;
  u.detail = "active (running)";
  u.invocation_id = std::move(invocation);
  return u;
}

TEST(SwapMachineTest, ANewInvocationInsideTheWindowFailsIt) {
  VerifyTracker t({"0.2.0", kHash}, 1000, "p.service");
  EXPECT_EQ(t.Observe(Running("aa"), Healthy(), 0).verdict, VerifyVerdict::kHealthy);
  EXPECT_EQ(t.Observe(Running("aa"), Healthy(), 500).verdict, VerifyVerdict::kHealthy);
  VerifyStep step = t.Observe(Running("bb"), Healthy(), 900);
  EXPECT_EQ(step.verdict, VerifyVerdict::kFailed);
  EXPECT_EQ(ReasonOf(step.problem), reason::kUnitRestarted);
  EXPECT_THAT(std::string(step.problem.message()), ::testing::HasSubstr("aa"));
}

// Only a poll that found no health listener, among the quick polls after
// a start, lets the executor watch for one; a listener answering 503 is
// polled at the usual pace, and so is one still absent after two polls.
TEST(SwapMachineTest, TheListenerIsWatchedForOnlyWhileUnreachableAfterAStart) {
  VerifyTracker t({"0.2.0", kHash}, 1000, "p.service");
  EXPECT_FALSE(t.WatchesForListener()) << "before any poll";
  v1::NodeState down;
  v1::Condition* c = down.add_conditions();
  c->set_reason(reason::kHealthUnreachable);
  t.Observe(std::nullopt, down, 0);
  EXPECT_TRUE(t.WatchesForListener());
  v1::NodeState starting;
  starting.add_ready_reasons("openbao_unreachable");
  t.Observe(std::nullopt, starting, 5);
  EXPECT_FALSE(t.WatchesForListener()) << "listening, not ready";
  t.Observe(std::nullopt, Healthy(), 10);
  EXPECT_FALSE(t.WatchesForListener());

  VerifyTracker slow({"0.2.0", kHash}, 1000, "p.service");
  int64_t now = 0;
  for (int poll = 1; poll <= 8; ++poll) {
    slow.Observe(std::nullopt, down, now += 25);
    EXPECT_TRUE(slow.WatchesForListener()) << "quick poll " << poll;
  }
  slow.Observe(std::nullopt, down, now += 25);
  EXPECT_FALSE(slow.WatchesForListener()) << "after the quick polls: every poll";
}

TEST(SwapMachineTest, ChecksStayFreshForASecondOfTheSteadyClock) {
  EXPECT_TRUE(ChecksStillFresh(5000, 5000));
  EXPECT_TRUE(ChecksStillFresh(5000, 5000 + kChecksFreshForMs));
  EXPECT_FALSE(ChecksStillFresh(5000, 5001 + kChecksFreshForMs));
  EXPECT_FALSE(ChecksStillFresh(5000, 4999)) << "ended after now: not a time to trust";
}

TEST(SwapMachineTest, AFailedUnitNamesItsExitStatusAndOutput) {
  UnitState u;
  u.activity = UnitActivity::kFailed;
  u.detail = "failed (failed)";
  u.exit_status = 3;
  u.last_output = "requires fresh bound state";
  VerifyStep step = EvaluateUnit(u, "", "p.service", "0.2.0");
  EXPECT_EQ(step.verdict, VerifyVerdict::kFailed);
  EXPECT_EQ(ReasonOf(step.problem), reason::kUnitFailed);
  EXPECT_THAT(std::string(step.problem.message()), ::testing::HasSubstr("exit status 3"));
  EXPECT_THAT(std::string(step.problem.message()),
              ::testing::HasSubstr("requires fresh bound state"));
}

TEST(SwapMachineTest, StabilizationIsBoundedToAnHour) {
  EXPECT_TRUE(CheckStabilizationMs(0).ok());
  EXPECT_TRUE(CheckStabilizationMs(kMaxStabilizationMs).ok());
  absl::Status s = CheckStabilizationMs(kMaxStabilizationMs + 1);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(s), reason::kInvalidArgument);
  EXPECT_FALSE(CheckStabilizationMs(-1).ok());
}

TEST(SwapMachineTest, CloseRetriesBackOffToFiveSeconds) {
  EXPECT_EQ(CloseRetryDelayMs(1), 100);
  EXPECT_EQ(CloseRetryDelayMs(2), 200);
  EXPECT_EQ(CloseRetryDelayMs(6), 3200);
  EXPECT_EQ(CloseRetryDelayMs(7), 5000);
  EXPECT_EQ(CloseRetryDelayMs(1000000), 5000);
}

// Drives the machine with every action succeeding, journaling as the
// executor does; returns the actions in order.
std::vector<SwapAction> Drive(SwapJournal& j, SwapStep step,
                              SwapAction fail_at = SwapAction::kClose) {
  std::vector<SwapAction> done;
  bool failed = false;
  for (int i = 0; i < 32; ++i) {
    RecordFailure(j, step.failure);
    if (step.record) {
      EXPECT_TRUE(Advance(j, *step.record, i).ok());
    }
    if (step.action == SwapAction::kClose) break;
    done.push_back(step.action);
    absl::Status result = absl::OkStatus();
    if (!failed && fail_at == step.action) {
      result = MakeError(absl::StatusCode::kAborted, "BOOM", "boom");
      failed = true;
    }
    step = NextSwapStep(j, {step.action, result});
  }
  return done;
}

TEST(SwapMachineTest, HappySwapStepsInOrder) {
  SwapJournal j;
  using A = SwapAction;
  EXPECT_EQ(Drive(j, FirstSwapStep()),
            (std::vector<A>{A::kCheckTarget, A::kPreflight, A::kCaptureEvidence,
                            A::kStopUnit, A::kInstallTarget, A::kStartUnit,
                            A::kVerifyTarget}));
  EXPECT_EQ(j.phase, SwapPhase::kStable);
  EXPECT_EQ(j.history.size(), 7u);
}

TEST(SwapMachineTest, AFailureBeforeTheStopClosesWhereItIs) {
  SwapJournal j;
  Drive(j, FirstSwapStep(), SwapAction::kPreflight);
  EXPECT_EQ(j.phase, SwapPhase::kPreflighted);
  EXPECT_EQ(j.failure_reason, "BOOM");
}

TEST(SwapMachineTest, AFailureAfterTheStopRollsBack) {
  SwapJournal j;
  using A = SwapAction;
  std::vector<A> done = Drive(j, FirstSwapStep(), A::kVerifyTarget);
  EXPECT_EQ(j.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(j.failure_reason, "BOOM");
  EXPECT_EQ(std::vector<A>(done.end() - 5, done.end()),
            (std::vector<A>{A::kCheckRollbackAllowed, A::kStopUnit,
                            A::kRestorePrevious, A::kStartUnit, A::kVerifyPrevious}));
}

TEST(SwapMachineTest, ARefusedRollbackBecomesTheReason) {
  SwapJournal j;
  j.phase = SwapPhase::kVerifying;
  SwapStep step = NextSwapStep(j, {SwapAction::kVerifyTarget,
                                   MakeError(absl::StatusCode::kAborted,
                                             reason::kUnitFailed, "unit failed")});
  RecordFailure(j, step.failure);
  ASSERT_TRUE(Advance(j, *step.record, 1).ok());
  step = NextSwapStep(j, {SwapAction::kCheckRollbackAllowed,
                          MakeError(absl::StatusCode::kFailedPrecondition,
                                    reason::kRollbackRefusedRemoved, "refused")});
  RecordFailure(j, step.failure);
  EXPECT_EQ(step.record, SwapPhase::kRollbackFailed);
  EXPECT_EQ(j.failure_reason, reason::kRollbackRefusedRemoved);
  EXPECT_THAT(j.failure_message, ::testing::HasSubstr("first failure: UNIT_FAILED"));
}

SwapJournal StaticPodRollback() {
  SwapJournal j;
  j.phase = SwapPhase::kRollingBack;
  j.target_sha256 = std::string(64, 't');
  j.previous_sha256 = std::string(64, 'p');
  j.target_binary = "/state/artifacts/0.2.0/manifest.yaml";
  j.previous_binary = "/state/operations/op-1/previous-manifest.yaml";
  return j;
}

// Found in review: a static-pod restore wrote the captured manifest over
// one an operator had edited since the install. Only the manifest the
// operation installed, or the one already restored, is written over. Found
// in a later review: an absent one was written too, and restarted a
// provider an operator had stopped by moving its manifest away.
TEST(SwapMachineTest, AStaticPodRestoreNeverWritesOverAManifestEditedByHand) {
  const SwapJournal j = StaticPodRollback();
  const std::string manifest = "/etc/kubernetes/manifests/bao-kms-provider.yaml";
  EXPECT_TRUE(CheckManifestRestorable(j, manifest, j.target_sha256).ok());
  EXPECT_TRUE(CheckManifestRestorable(j, manifest, j.previous_sha256).ok());
  absl::Status removed = CheckManifestRestorable(j, manifest, absl::NotFoundError("gone"));
  EXPECT_EQ(ReasonOf(removed), reason::kRollbackRefusedManifestEdited);
  EXPECT_THAT(removed.message(), ::testing::HasSubstr("it is gone"));

  const std::string edited(64, 'e');
  absl::Status refused = CheckManifestRestorable(j, manifest, edited);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(refused), reason::kRollbackRefusedManifestEdited);
  for (const std::string& named : {manifest, edited, j.target_sha256, j.previous_sha256,
                                   j.previous_binary}) {
    EXPECT_THAT(refused.message(), ::testing::HasSubstr(named));
  }

  // A passing read error is restored over; a symlink or an oversized file
  // put there is refused, as the installer's own read refuses it (found in
  // review: the check run right before the rename let them through).
  EXPECT_TRUE(CheckManifestRestorable(
                  j, manifest,
                  MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo, "EIO"))
                  .ok());
  for (const char* why : {reason::kNotRegularFile, reason::kInputTooLarge}) {
    absl::Status not_ours = CheckManifestRestorable(
        j, manifest, MakeError(absl::StatusCode::kFailedPrecondition, why, manifest));
    EXPECT_EQ(ReasonOf(not_ours), why);
  }
}

// Found in review: an edit made between the capture and the install was
// installed over, then lost for good, as a rollback restores the capture.
// The install goes ahead only over the captured manifest, its own release
// (an install resumed); a removed one stays removed.
TEST(SwapMachineTest, AStaticPodInstallNeverWritesOverAManifestEditedAfterTheCapture) {
  const SwapJournal j = StaticPodRollback();
  const std::string manifest = "/etc/kubernetes/manifests/bao-kms-provider.yaml";
  EXPECT_TRUE(CheckManifestInstallable(j, manifest, j.previous_sha256).ok());
  EXPECT_TRUE(CheckManifestInstallable(j, manifest, j.target_sha256).ok());
  absl::Status removed = CheckManifestInstallable(j, manifest, absl::NotFoundError("gone"));
  EXPECT_EQ(ReasonOf(removed), reason::kManifestChanged);
  EXPECT_THAT(removed.message(), ::testing::HasSubstr("it is gone"));

  const std::string edited(64, 'e');
  absl::Status refused = CheckManifestInstallable(j, manifest, edited);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(refused), reason::kManifestChanged);
  for (const std::string& named : {manifest, edited, j.previous_sha256, j.target_binary}) {
    EXPECT_THAT(refused.message(), ::testing::HasSubstr(named));
  }
  // A failed install rolls back: the restore then finds the edit too and
  // keeps it (ROLLBACK_REFUSED_MANIFEST_EDITED).
  EXPECT_EQ(ReasonOf(CheckManifestRestorable(j, manifest, edited)),
            reason::kRollbackRefusedManifestEdited);
}

// A manifest that cannot be read (after the shell's few tries): the
// install, which then changes nothing, refuses with the read error; the
// restore writes over it, as a rollback must not leave a failed release
// running for want of a hash.
TEST(SwapMachineTest, AnUnreadableManifestRefusesTheInstallButNotTheRestore) {
  const SwapJournal j = StaticPodRollback();
  const absl::Status unreadable = MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                                            "read /m.yaml: Input/output error");
  absl::Status install = CheckManifestInstallable(j, "/m.yaml", unreadable);
  EXPECT_EQ(ReasonOf(install), reason::kArtifactIo);
  EXPECT_THAT(install.message(), ::testing::HasSubstr("Input/output error"));
  EXPECT_TRUE(CheckManifestRestorable(j, "/m.yaml", unreadable).ok());
}

// The refusal ends the rollback at once (no retry) and becomes the
// operation's reason, as the registry's refusals do: it is what the
// operator must act on.
TEST(SwapMachineTest, ARefusedRestoreOfAnEditedManifestEndsRollbackFailed) {
  SwapJournal j = StaticPodRollback();
  j.failure_reason = reason::kNotReady;
  j.failure_message = "not ready";
  SwapStep step = NextSwapStep(
      j, {SwapAction::kRestorePrevious,
          CheckManifestRestorable(j, "/m.yaml", std::string(64, 'e'))});
  RecordFailure(j, step.failure);
  EXPECT_EQ(step.record, SwapPhase::kRollbackFailed);
  EXPECT_EQ(step.action, SwapAction::kClose);
  EXPECT_EQ(j.failure_reason, reason::kRollbackRefusedManifestEdited);
  EXPECT_THAT(j.failure_message, ::testing::HasSubstr("first failure: NOT_READY"));
  EXPECT_THAT(j.failure_message, ::testing::HasSubstr("/m.yaml"));
}

// A kill between the rename and the directory's fsync leaves the target in
// place but not durable: recovery installs again (which then only fsyncs)
// before it starts or verifies anything.
TEST(SwapMachineTest, RecoveryPastTheInstallInstallsAgainFirst) {
  const std::string target(64, 't');
  for (SwapPhase p : {SwapPhase::kInstalled, SwapPhase::kStarted, SwapPhase::kVerifying}) {
    SwapJournal j;
    j.phase = p;
    j.target_sha256 = target;
    SwapStep step = RecoverySwapStep(j, target);
    EXPECT_EQ(step.action, SwapAction::kInstallTarget) << PhaseName(p);
    EXPECT_FALSE(step.record.has_value()) << PhaseName(p);
    EXPECT_TRUE(step.failure.ok()) << PhaseName(p);
  }
}

TEST(SwapMachineTest, RecoveryResumesFromEachOpenPhase) {
  const std::string target(64, 't'), previous(64, 'p');
  using A = SwapAction;
  for (SwapPhase p : {SwapPhase::kStopped, SwapPhase::kInstalled, SwapPhase::kStarted,
                      SwapPhase::kVerifying}) {
    SwapJournal j;
    j.phase = p;
    j.target_sha256 = target;
    std::vector<A> done = Drive(j, RecoverySwapStep(j, target));
    EXPECT_EQ(j.phase, SwapPhase::kStable) << PhaseName(p);
    EXPECT_EQ(done.back(), A::kVerifyTarget) << PhaseName(p);
    EXPECT_TRUE(j.failure_reason.empty());

    SwapJournal k;
    k.phase = p;
    k.target_sha256 = target;
    Drive(k, RecoverySwapStep(k, previous));
    EXPECT_EQ(k.phase, SwapPhase::kRolledBack) << PhaseName(p);
    EXPECT_EQ(k.failure_reason, reason::kAgentRestarted);
  }
  SwapJournal rolling;
  rolling.phase = SwapPhase::kRollingBack;
  rolling.failure_reason = reason::kKeyIdHashMismatch;
  Drive(rolling, RecoverySwapStep(rolling, target));
  EXPECT_EQ(rolling.phase, SwapPhase::kRolledBack);
  EXPECT_EQ(rolling.failure_reason, reason::kKeyIdHashMismatch);
  EXPECT_EQ(rolling.failure_message, "");

  SwapJournal early;
  early.phase = SwapPhase::kPreflighted;
  EXPECT_TRUE(Drive(early, RecoverySwapStep(early, previous)).empty());
  EXPECT_EQ(early.phase, SwapPhase::kPreflighted);
  EXPECT_EQ(early.failure_reason, reason::kAgentRestarted);
}

}  // namespace
}  // namespace kmsfleet
