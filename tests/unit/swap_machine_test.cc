// The swap state machine, journal encoding, recovery decisions, rollback
// refusal and the verification verdict.
#include "kmsfleet/swap_machine.h"

#include <gtest/gtest.h>

#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"

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
  j.history = {"Staged@1", "Installed@2"};
  j.failure_reason = "NOT_READY";
  absl::StatusOr<SwapJournal> back = ParseJournal(SerializeJournal(j), "j.json");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->operation_id, "op-7");
  EXPECT_EQ(back->phase, SwapPhase::kInstalled);
  EXPECT_EQ(back->fence_term, 42u);
  EXPECT_EQ(back->fence_index, 7u);
  EXPECT_EQ(back->history, j.history);
  EXPECT_EQ(back->failure_reason, "NOT_READY");
  EXPECT_TRUE(back->open);
}

TEST(SwapMachineTest, CorruptJournalIsNamed) {
  absl::StatusOr<SwapJournal> j =
      ParseJournal(R"({"operationId":"x","phase":"Sideways"})", "j.json");
  EXPECT_EQ(ReasonOf(j.status()), reason::kJournalCorrupt);
  EXPECT_EQ(ReasonOf(ParseJournal("{", "j.json").status()), reason::kJournalCorrupt);
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
}

TEST(SwapMachineTest, RegistryWithRemovedRecordsRefusesRollback) {
  absl::StatusOr<RegistryFacts> f = ParseRegistryFacts(
      R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1","snapshots":[
          {"state":"active"},{"state":"removed"}]})", "r.json");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->removed_records, 1);
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed(f->schema_version, *f)),
            reason::kRollbackRefusedRemoved);
}

TEST(SwapMachineTest, SchemaChangeRefusesRollback) {
  RegistryFacts now{"keyregistry.openbao-kms/v2", 0};
  EXPECT_EQ(ReasonOf(CheckRollbackAllowed("keyregistry.openbao-kms/v1alpha1", now)),
            reason::kRollbackRefusedSchema);
  EXPECT_TRUE(CheckRollbackAllowed("", now).ok());
  EXPECT_TRUE(CheckRollbackAllowed(now.schema_version, now).ok());
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

}  // namespace
}  // namespace kmsfleet
