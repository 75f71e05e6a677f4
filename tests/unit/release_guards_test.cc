// Tests of the version policy, release compatibility and rollback safety
// guards (release_guards.h; reference §7.4, §8.1 "Never roll back when").
#include <string>
#include <vector>

#include "fleet_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::HealthyFleet;
using testing::HealthyView;

VersionPolicyInput Upgrade(std::string target,
                           std::vector<NodeVersion> running) {
  VersionPolicyInput in;
  in.target = std::move(target);
  in.running = std::move(running);
  return in;
}

TEST(VersionPolicyTest, UpgradeToAHigherVersionPasses) {
  EXPECT_TRUE(CheckVersionPolicy(Upgrade("0.2.0", {{"a", "0.1.0"}, {"b", "0.1.0"}})).ok());
  EXPECT_TRUE(CheckVersionPolicy(
      Upgrade("0.1.0-preview.3", {{"a", "0.1.0-preview.2"}})).ok());
}

TEST(VersionPolicyTest, TargetNotStrictSemVerIsInvalid) {
  const absl::Status s = CheckVersionPolicy(Upgrade("v0.2.0", {{"a", "0.1.0"}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(s), reason::kInvalidSemver);
}

TEST(VersionPolicyTest, DowngradeAsUpgradeIsRefusedNamingTheNode) {
  const absl::Status s =
      CheckVersionPolicy(Upgrade("0.1.0", {{"a", "0.2.0"}, {"b", "0.2.0"}}));
  EXPECT_EQ(ReasonOf(s), reason::kVersionNotHigher) << s;
  EXPECT_THAT(s.message(), HasSubstr("a (0.2.0)"));
  EXPECT_EQ(MetadataOf(s, "nodes"), "a,b");
}

TEST(VersionPolicyTest, TargetEqualToEveryNodeIsANoOpThatSaysSo) {
  const absl::Status s =
      CheckVersionPolicy(Upgrade("0.2.0", {{"a", "0.2.0"}, {"b", "0.2.0"}}));
  EXPECT_EQ(ReasonOf(s), reason::kAlreadyAtTarget) << s;
  EXPECT_THAT(s.message(), HasSubstr("already runs 0.2.0"));
}

// Build metadata does not order versions (SemVer §10): another build of
// the running version is not higher, and would swap every node for it.
TEST(VersionPolicyTest, AnotherBuildOfTheRunningVersionIsNotHigher) {
  absl::Status s = CheckVersionPolicy(Upgrade("0.2.0+rebuild.1", {{"a", "0.2.0"}}));
  EXPECT_EQ(ReasonOf(s), reason::kVersionNotHigher) << s;
  EXPECT_THAT(s.message(), HasSubstr("a (0.2.0)"));
  s = CheckVersionPolicy(Upgrade("0.2.0", {{"a", "0.2.0+rebuild.1"}}));
  EXPECT_EQ(ReasonOf(s), reason::kVersionNotHigher) << s;
  EXPECT_TRUE(CheckVersionPolicy(Upgrade("0.2.1+rebuild.1", {{"a", "0.2.0"}})).ok());
}

TEST(VersionPolicyTest, MixedFleetIsRefused) {
  const absl::Status s =
      CheckVersionPolicy(Upgrade("0.3.0", {{"a", "0.2.0"}, {"b", "0.1.0"}}));
  EXPECT_EQ(ReasonOf(s), reason::kFleetVersionsMixed) << s;
  EXPECT_THAT(s.message(), HasSubstr("a (0.2.0) and b (0.1.0)"));
  // Found in review: the text named them, the metadata did not.
  EXPECT_EQ(MetadataOf(s, "nodes"), "a,b");
}

TEST(VersionPolicyTest, UnknownNodeVersionIsRefused) {
  const absl::Status s =
      CheckVersionPolicy(Upgrade("0.2.0", {{"a", "0.1.0"}, {"b", ""}}));
  EXPECT_EQ(ReasonOf(s), reason::kVersionUnknown) << s;
  EXPECT_THAT(s.message(), HasSubstr("b ((none))"));
}

TEST(VersionPolicyTest, RollbackOnlyToTheRecordedVersion) {
  VersionPolicyInput in = Upgrade("0.1.0", {{"a", "0.2.0"}, {"b", "0.1.0"}});
  in.direction = PlanDirection::kRollback;
  in.recorded_before = "0.1.0";
  EXPECT_TRUE(CheckVersionPolicy(in).ok());
  in.target = "0.0.9";
  const absl::Status s = CheckVersionPolicy(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackTargetMismatch) << s;
  EXPECT_THAT(s.message(), HasSubstr("0.0.9"));
  in.recorded_before = "";
  EXPECT_EQ(ReasonOf(CheckVersionPolicy(in)), reason::kNoPlan);
}

CompatInput Compat() {
  CompatInput in;
  in.facts.add_releases("0.2.0");
  return in;
}

TEST(CompatibilityGuardTest, PlainReleasePasses) {
  EXPECT_TRUE(CheckCompatibility(Compat()).ok());
}

TEST(CompatibilityGuardTest, FreshInstallOnlyIsRefusedEvenWhenAcknowledged) {
  CompatInput in = Compat();
  in.facts.set_fresh_install_only(true);
  in.acknowledgements = {"ONE_WAY_UPGRADE", "FRESH_INSTALLATION"};
  const absl::Status s = CheckCompatibility(in);
  EXPECT_EQ(ReasonOf(s), reason::kFreshInstallRequired) << s;
  EXPECT_THAT(s.message(), HasSubstr("0.2.0"));
}

TEST(CompatibilityGuardTest, UnplannedWireFormatChangeIsRefused) {
  CompatInput in = Compat();
  in.facts.set_wire_format_change(true);
  EXPECT_EQ(ReasonOf(CheckCompatibility(in)), reason::kWireFormatUnplanned);
  in.facts.set_migration_planned(true);
  const absl::Status s = CheckCompatibility(in);
  EXPECT_EQ(ReasonOf(s), reason::kAcknowledgementRequired) << s;
  EXPECT_EQ(MetadataOf(s, "missing"), "WIRE_FORMAT_CHANGE");
  in.acknowledgements = {"WIRE_FORMAT_CHANGE"};
  EXPECT_TRUE(CheckCompatibility(in).ok());
}

TEST(CompatibilityGuardTest, ChangelogNotesNeedAcknowledgingNamingTheLine) {
  CompatInput in = Compat();
  in.changelog = {{"0.2.0", "CHANGELOG_BREAKING", 12, "### ⚠ BREAKING CHANGES"},
                  {"0.2.0", "ONE_WAY_UPGRADE", 15, "This upgrade is one-way."}};
  EXPECT_THAT(RequiredAcknowledgements(in),
              ElementsAre("CHANGELOG_BREAKING", "ONE_WAY_UPGRADE"));
  in.acknowledgements = {"CHANGELOG_BREAKING"};
  const absl::Status s = CheckCompatibility(in);
  EXPECT_EQ(ReasonOf(s), reason::kAcknowledgementRequired) << s;
  EXPECT_EQ(MetadataOf(s, "missing"), "ONE_WAY_UPGRADE");
  EXPECT_THAT(s.message(), HasSubstr("changelog line 15"));
  EXPECT_THAT(s.message(), HasSubstr("--acknowledge ONE_WAY_UPGRADE"));
  in.acknowledgements.push_back("ONE_WAY_UPGRADE");
  EXPECT_TRUE(CheckCompatibility(in).ok());
}

// Found in review: any text was taken and kept in the plan, so a typo
// satisfied nothing, and thousands of long values left a plan that
// committed its start and then no change at all (PLAN_TOO_LARGE).
TEST(CompatibilityGuardTest, AnUnknownAcknowledgementIsRefusedNamingIt) {
  CompatInput in = Compat();
  in.acknowledgements = {"ONE_WAY_UPGRADE", "ONE_WAY"};
  const absl::Status s = CheckCompatibility(in);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(ReasonOf(s), reason::kInvalidArgument) << s;
  EXPECT_EQ(MetadataOf(s, "acknowledge"), "ONE_WAY");
  EXPECT_THAT(s.message(), HasSubstr("\"ONE_WAY\""));
  EXPECT_THAT(s.message(),
              HasSubstr("ONE_WAY_UPGRADE, STATE_CHECKPOINT_NOT_CURRENT, WIRE_FORMAT_CHANGE"));
  in.acknowledgements = {std::string(100000, 'A')};
  const absl::Status long_one = CheckCompatibility(in);
  EXPECT_EQ(ReasonOf(long_one), reason::kInvalidArgument);
  EXPECT_LT(long_one.message().size(), 400u);
  in.acknowledgements = {"CHANGELOG_BREAKING", "ONE_WAY_UPGRADE", "CHANGELOG_BREAKING"};
  EXPECT_TRUE(CheckCompatibility(in).ok());
  EXPECT_THAT(UniqueAcknowledgements(in.acknowledgements),
              ElementsAre("CHANGELOG_BREAKING", "ONE_WAY_UPGRADE"));
}

// Found in review: only the coordinator's own method was looked at (the
// plan's settings), so a node without one was swapped and only then
// refused the restart, halting the plan after the disruption.
TEST(CompatibilityGuardTest, ApiServerRestartNeedsAConfiguredMethod) {
  CompatInput in = Compat();
  in.facts.set_apiserver_restart_required(true);
  in.apiserver_restart_unconfigured = {"cp-2", "cp-3"};
  const absl::Status s = CheckCompatibility(in);
  EXPECT_EQ(ReasonOf(s), reason::kApiServerRestartUnconfigured) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "cp-2,cp-3");
  EXPECT_THAT(s.message(), HasSubstr("cp-2"));
  in.apiserver_restart_unconfigured.clear();
  EXPECT_TRUE(CheckCompatibility(in).ok());
  // Not needed by the releases crossed: nobody has to configure one.
  in.facts.set_apiserver_restart_required(false);
  in.apiserver_restart_unconfigured = {"cp-2"};
  EXPECT_TRUE(CheckCompatibility(in).ok());
}

RollbackSafetyInput Safety() {
  RollbackSafetyInput in;
  for (const char* n : {"a", "b"}) {
    v1::NodeBaseline* b = &in.baseline.emplace_back();
    b->set_node(n);
    b->set_provider_version("0.1.0");
    b->set_key_id_hash(testing::kHashA);
    b->set_registry_schema(testing::kSchema);
  }
  in.views = HealthyFleet({"a", "b"}, "0.2.0");
  return in;
}

TEST(RollbackSafetyTest, UnchangedFleetMayRollBack) {
  EXPECT_TRUE(CheckRollbackSafety(Safety()).ok());
}

TEST(RollbackSafetyTest, OneWayAndWireFormatPoliciesRefuse) {
  RollbackSafetyInput in = Safety();
  in.facts.add_releases("0.2.0");
  in.facts.set_one_way(true);
  absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedOneWay) << s;
  EXPECT_THAT(s.message(), HasSubstr("0.2.0"));
  in.facts.set_one_way(false);
  in.facts.set_wire_format_change(true);
  EXPECT_EQ(ReasonOf(CheckRollbackSafety(in)), reason::kRollbackRefusedWireFormat);
}

// Found in review: a CHANGELOG note calling the upgrade one-way, a fresh
// installation or a wire-format change was acknowledged at the start and
// then never read again, so a policy without an entry for the release let
// the rollback through (reference §8.1: never roll back when the release
// notes call the upgrade one-way).
TEST(RollbackSafetyTest, ReleaseNotesAcknowledgedAtTheStartRefuseToo) {
  for (const char* code : {reason::kAckOneWayUpgrade, reason::kAckFreshInstallation}) {
    RollbackSafetyInput in = Safety();
    in.facts.add_required_acknowledgements(reason::kAckChangelogBreaking);
    in.facts.add_required_acknowledgements(code);
    absl::Status s = CheckRollbackSafety(in);
    EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedOneWay) << code << ": " << s;
    EXPECT_THAT(s.message(), HasSubstr(code));
  }
  RollbackSafetyInput in = Safety();
  in.facts.add_required_acknowledgements(reason::kAckWireFormatChange);
  absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedWireFormat) << s;
  EXPECT_THAT(s.message(), HasSubstr(reason::kAckWireFormatChange));
  // A breaking or compatibility section alone says nothing of the way back.
  in = Safety();
  in.facts.add_required_acknowledgements(reason::kAckChangelogBreaking);
  in.facts.add_required_acknowledgements(reason::kAckChangelogCompatibility);
  EXPECT_TRUE(CheckRollbackSafety(in).ok());
}

TEST(RollbackSafetyTest, KeyRotatedSinceThePlanStartedRefuses) {
  RollbackSafetyInput in = Safety();
  in.views[1] = HealthyView("b", "0.2.0", testing::kHashB);
  const absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedKeyRotated) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "b");
  EXPECT_THAT(s.message(), HasSubstr(testing::kHashB));
}

// A provider that is down shows no hash; that is a reason to wait, not a
// rotation that would refuse the rollback for good (chaos seed 90039).
TEST(RollbackSafetyTest, AProviderShowingNoHashIsWaitedForNotCalledRotated) {
  RollbackSafetyInput in = Safety();
  in.views[1].state->clear_key_id_hash_metric();
  in.views[1].state->set_ready(false);
  const absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kKeyIdHashMissing) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "b");
  EXPECT_THAT(s.message(), HasSubstr("Wait until that provider serves again"));
}

TEST(RollbackSafetyTest, PendingRotationOnAnyNodeRefuses) {
  RollbackSafetyInput in = Safety();
  in.views[0].state->set_rotation_state("pending");
  const absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedPendingRotation) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "a");
}

// Found in review: a rotation state the provider calls unknown passed.
// (The last state kept of an agent that stopped answering is judged here
// as it stands: every walk-back step first waits for fleet health and
// asks this guard again, so a blip then only delays it.)
TEST(RollbackSafetyTest, AnUnknownRotationStateRefuses) {
  RollbackSafetyInput in = Safety();
  in.views[1].state->set_rotation_state("unknown");
  absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedPendingRotation) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "b");
  EXPECT_THAT(s.message(), HasSubstr("rotation state unknown"));
  // An older provider with no rotation metric at all is not refused for it.
  in = Safety();
  in.views[0].state->set_rotation_state("");
  EXPECT_TRUE(CheckRollbackSafety(in).ok()) << CheckRollbackSafety(in);
}

TEST(RollbackSafetyTest, RemovedRecordsOrSchemaChangeRefuse) {
  RollbackSafetyInput in = Safety();
  in.views[1].registry->removed_records = 2;
  absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedRemoved) << s;
  EXPECT_THAT(s.message(), HasSubstr("b (2 removed records, at plan start 0)"));
  in = Safety();
  in.views[0].registry->schema_version = "keyregistry.openbao-kms/v1beta1";
  s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRollbackRefusedSchema) << s;
  EXPECT_THAT(s.message(), HasSubstr("v1beta1"));
}

// A fact the plan did not record at its start is no value to compare
// with: "" read as a schema refused a safe rollback for good, and a node
// without a baseline passed every check unseen.
TEST(RollbackSafetyTest, AStartThePlanDidNotRecordIsNeverCompared) {
  RollbackSafetyInput in = Safety();
  in.baseline[1].clear_registry_schema();
  absl::Status s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRegistryUnknown) << s;
  EXPECT_THAT(s.message(), HasSubstr("b (no registry facts recorded at plan start)"));
  EXPECT_THAT(s.message(), HasSubstr("docs/runbooks/rollback.md"));
  in = Safety();
  in.baseline[0].clear_key_id_hash();
  EXPECT_EQ(MetadataOf(CheckRollbackSafety(in), "nodes"), "a");
  in = Safety();
  in.baseline.pop_back();
  in.views[1].registry->removed_records = 3;
  s = CheckRollbackSafety(in);
  EXPECT_EQ(ReasonOf(s), reason::kRegistryUnknown) << s;
  EXPECT_THAT(s.message(), HasSubstr("b (no facts recorded at plan start)"));
}

TEST(RollbackSafetyTest, UnknownRegistryOrStateRefuses) {
  RollbackSafetyInput in = Safety();
  in.views[0].registry.reset();
  EXPECT_EQ(ReasonOf(CheckRollbackSafety(in)), reason::kRegistryUnknown);
  in = Safety();
  in.views[1].state.reset();
  EXPECT_EQ(ReasonOf(CheckRollbackSafety(in)), reason::kAgentUnreachable);
}

}  // namespace
}  // namespace kmsfleet
