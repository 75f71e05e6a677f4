// Tests of the OpenBao health and rotation guards (fleet_guards.h;
// reference §2.6, §8.1 "Defer the upgrade while a Transit rotation is
// pending, OpenBao is failing over or restoring").
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fleet_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/swap_machine.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using testing::HealthyView;

OpenBaoProbe Probe(int status, std::string body) {
  return {"https://bao.example:8200", absl::OkStatus(), status, std::move(body)};
}

TEST(OpenBaoGuardTest, InitializedUnsealedActivePasses) {
  EXPECT_TRUE(CheckOpenBaoHealth(Probe(200, R"({"initialized":true,
      "sealed":false,"standby":false,"version":"2.6.0"})")).ok());
}

TEST(OpenBaoGuardTest, SealedRefusesNamingTheAddress) {
  const absl::Status s = CheckOpenBaoHealth(
      Probe(503, R"({"initialized":true,"sealed":true,"standby":true})"));
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoSealed) << s;
  EXPECT_THAT(s.message(), HasSubstr("https://bao.example:8200"));
  EXPECT_THAT(s.message(), HasSubstr("HTTP 503"));
}

TEST(OpenBaoGuardTest, UninitializedRefuses) {
  const absl::Status s = CheckOpenBaoHealth(
      Probe(501, R"({"initialized":false,"sealed":true,"standby":true})"));
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoUninitialized) << s;
}

TEST(OpenBaoGuardTest, StandbyOnlyRefuses) {
  const absl::Status s = CheckOpenBaoHealth(
      Probe(429, R"({"initialized":true,"sealed":false,"standby":true})"));
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoStandby) << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(OpenBaoGuardTest, StatusCodeDecidesWhenTheBodyIsEmpty) {
  EXPECT_TRUE(CheckOpenBaoHealth(Probe(200, "")).ok());
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(Probe(503, ""))), reason::kOpenBaoSealed);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(Probe(473, ""))), reason::kOpenBaoStandby);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(Probe(501, ""))),
            reason::kOpenBaoUninitialized);
  EXPECT_EQ(ReasonOf(CheckOpenBaoHealth(Probe(500, ""))),
            reason::kOpenBaoUnreachable);
}

TEST(OpenBaoGuardTest, TransportErrorIsUnreachable) {
  OpenBaoProbe probe = Probe(0, "");
  probe.transport = absl::UnavailableError("connection refused");
  const absl::Status s = CheckOpenBaoHealth(probe);
  EXPECT_EQ(ReasonOf(s), reason::kOpenBaoUnreachable) << s;
  EXPECT_THAT(s.message(), HasSubstr("connection refused"));
}

TEST(OpenBaoGuardTest, MalformedOrOversizedBodyIsNamed) {
  absl::Status s = CheckOpenBaoHealth(Probe(200, R"({"sealed":"no"})"));
  EXPECT_EQ(ReasonOf(s), reason::kMalformedOpenBaoHealth) << s;
  EXPECT_THAT(s.message(), HasSubstr("sealed"));
  s = CheckOpenBaoHealth(Probe(200, "not json"));
  EXPECT_EQ(ReasonOf(s), reason::kMalformedOpenBaoHealth) << s;
  s = CheckOpenBaoHealth(Probe(200, std::string(kMaxOpenBaoHealthBytes + 1, ' ')));
  EXPECT_EQ(ReasonOf(s), reason::kInputTooLarge) << s;
}

// The probe cannot hand over a body it refused to buffer; it says so with
// INPUT_TOO_LARGE, which is an answer, not unreachability.
TEST(OpenBaoGuardTest, BodyTheProbeRefusedAsTooLargeIsMalformed) {
  OpenBaoProbe probe = Probe(0, "");
  probe.transport = MakeError(absl::StatusCode::kResourceExhausted,
                              reason::kInputTooLarge,
                              "response body exceeds 65536 bytes");
  const absl::Status s = CheckOpenBaoHealth(probe);
  EXPECT_EQ(ReasonOf(s), reason::kMalformedOpenBaoHealth) << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("https://bao.example:8200"));
  EXPECT_THAT(s.message(), HasSubstr("65536"));
}

RotationReport Active() {
  RotationReport r;
  r.name = "rotation-plan";
  r.transit_metadata_status = "pass";
  r.rotation_state = "active";
  r.state_checkpoint_status = "current";
  r.active_key_id_hash = testing::kHashA;
  return r;
}

NodeRotation Node(std::string name, RotationReport report, int exit_code = 0,
                  std::string metric = "active") {
  NodeRotation n;
  n.node = std::move(name);
  n.exit_code = exit_code;
  n.report = std::move(report);
  n.metric_state = std::move(metric);
  return n;
}

TEST(RotationGuardTest, ActiveEverywherePasses) {
  EXPECT_TRUE(CheckRotation({Node("a", Active()), Node("b", Active())}).ok());
}

TEST(RotationGuardTest, NonZeroExitIsUntrusted) {
  const absl::Status s = CheckRotation({Node("a", Active()), Node("b", Active(), 4)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationPlanUntrusted) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "b");
  EXPECT_THAT(s.message(), HasSubstr("b (exit code 4)"));
}

TEST(RotationGuardTest, MetadataStatusOtherThanPassIsUntrusted) {
  RotationReport old = Active();
  old.transit_metadata_status = "";  // binaries before the Unreleased line
  const absl::Status s = CheckRotation({Node("a", old)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationPlanUntrusted) << s;
  EXPECT_THAT(s.message(), HasSubstr("transitMetadataStatus (none)"));
}

TEST(RotationGuardTest, PendingKeyRefusesNamingIt) {
  RotationReport pending = Active();
  pending.rotation_state = "pending";
  absl::Status s = CheckRotation({Node("a", Active()), Node("c", pending)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr("c (rotationState \"pending\")"));
  RotationReport pending_key = Active();
  pending_key.pending_key_id_hash = testing::kHashB;
  s = CheckRotation({Node("a", pending_key)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr(testing::kHashB));
}

// Reference §2.6: a key rotated in OpenBao that the provider has not
// recorded as pending yet shows only as latest above active.
TEST(RotationGuardTest, ALatestTransitVersionAboveTheActiveOneRefuses) {
  RotationReport rotated = Active();
  rotated.active_transit_version = 1;
  rotated.latest_transit_version = 2;
  const absl::Status s = CheckRotation({Node("a", Active()), Node("b", rotated)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr("b (latest Transit version 2 above the active 1)"));
  EXPECT_EQ(ReasonOf(CheckRotationSettled(rotated)), reason::kRotationInProgress)
      << "the node's own swap preflight says the same";
  rotated.latest_transit_version = 1;
  EXPECT_TRUE(CheckRotation({Node("b", rotated)}).ok());
  EXPECT_TRUE(CheckRotationSettled(rotated).ok());
}

// Reference §10: the pre-upgrade gate asks for stateCheckpointStatus
// current on every node; a report without the key is not judged on it.
TEST(RotationGuardTest, ARegistryCheckpointThatIsNotCurrentRefusesNamingNodeAndStatus) {
  for (const char* status : {"behind", "missing", "absent"}) {
    SCOPED_TRACE(status);
    RotationReport lagging = Active();
    lagging.state_checkpoint_status = status;
    const absl::Status s = CheckRotation({Node("a", Active()), Node("b", lagging)});
    EXPECT_EQ(ReasonOf(s), reason::kStateCheckpointNotCurrent) << s;
    EXPECT_EQ(MetadataOf(s, "nodes"), "b");
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("b (stateCheckpointStatus ", status, ")")));
    EXPECT_THAT(s.message(), HasSubstr("--acknowledge STATE_CHECKPOINT_NOT_CURRENT"));
    EXPECT_EQ(ReasonOf(CheckRotationPlanAllowsUpgrade(lagging, false)), reason::kStateCheckpointNotCurrent)
        << "the node's own swap preflight says the same";
    EXPECT_TRUE(CheckRotation({Node("b", lagging)}, /*checkpoint_acknowledged=*/true).ok());
    EXPECT_TRUE(CheckRotationPlanAllowsUpgrade(lagging, true).ok());
    EXPECT_TRUE(CheckRotationSettled(lagging).ok()) << "a rollback is not held to it";
  }
  RotationReport unsaid = Active();
  unsaid.state_checkpoint_status = "";
  EXPECT_TRUE(CheckRotation({Node("a", unsaid)}).ok());
  EXPECT_TRUE(CheckRotationPlanAllowsUpgrade(unsaid, false).ok());
  RotationReport both = Active();
  both.rotation_state = "pending";
  both.state_checkpoint_status = "missing";
  EXPECT_EQ(ReasonOf(CheckRotation({Node("a", both)})), reason::kRotationInProgress)
      << "a rotation under way is said first";
}

TEST(RotationGuardTest, APreflightAnswerCarriesTheCheckpointStatus) {
  v1::PreflightResponse answer;
  answer.set_transit_metadata_status("pass");
  answer.set_rotation_state("active");
  answer.set_state_checkpoint_status("missing");
  const absl::Status s = CheckRotation({RotationOfPreflight("cp-2", "active", answer)});
  EXPECT_EQ(ReasonOf(s), reason::kStateCheckpointNotCurrent) << s;
  EXPECT_THAT(s.message(), HasSubstr("cp-2 (stateCheckpointStatus missing)"));
  answer.set_state_checkpoint_status("current");
  EXPECT_TRUE(CheckRotation({RotationOfPreflight("cp-2", "active", answer)}).ok());
}

// Found in review: the coordinator rebuilt each node's report from three
// fields of its Preflight answer, so a latest Transit version above the
// active one, which the agent itself refused, passed the plan's guard.
TEST(RotationGuardTest, APreflightAnswerKeepsTheTransitVersionsTheGuardJudges) {
  v1::PreflightResponse answer;
  answer.set_transit_metadata_status("pass");
  answer.set_rotation_state("active");
  answer.set_active_transit_version(2);
  answer.set_latest_transit_version(3);
  absl::Status s = CheckRotation({RotationOfPreflight("cp-2", "active", answer)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr("cp-2 (latest Transit version 3 above the active 2)"));
  answer.clear_latest_transit_version();
  answer.set_pending_transit_version(3);
  s = CheckRotation({RotationOfPreflight("cp-2", "active", answer)});
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  // An agent older than the fields: judged on what it sends.
  answer.clear_active_transit_version();
  answer.clear_pending_transit_version();
  EXPECT_TRUE(CheckRotation({RotationOfPreflight("cp-2", "active", answer)}).ok());
}

TEST(RotationGuardTest, APreflightAnswerWithoutAReportCarriesTheAgentsReason) {
  v1::PreflightResponse answer;
  answer.mutable_rotation_plan()->set_reason(reason::kRotationPlanUntrusted);
  answer.mutable_rotation_plan()->set_message("rotation-plan exited 4");
  NodeRotation r = RotationOfPreflight("cp-2", "active", answer);
  EXPECT_EQ(r.exit_code, 1);
  absl::Status s = CheckRotation({r});
  EXPECT_EQ(ReasonOf(s), reason::kRotationPlanUntrusted) << s;
}

TEST(RotationGuardTest, MetricDisagreeingRefuses) {
  const absl::Status s =
      CheckRotation({Node("a", Active(), 0, "pending"), Node("b", Active())});
  EXPECT_EQ(ReasonOf(s), reason::kRotationMetricDisagrees) << s;
  EXPECT_EQ(MetadataOf(s, "nodes"), "a");
}

TEST(RotationGuardTest, UnparsableReportIsUntrusted) {
  NodeRotation n = Node("a", Active());
  n.report = absl::InvalidArgumentError("rotation-plan output is not JSON");
  const absl::Status s = CheckRotation({n});
  EXPECT_EQ(ReasonOf(s), reason::kRotationPlanUntrusted) << s;
  EXPECT_THAT(s.message(), HasSubstr("not JSON"));
}

TEST(RotationMetricTest, PendingMetricBlocksBetweenNodes) {
  std::vector<NodeView> views = {HealthyView("a", "0.1.0"), HealthyView("b", "0.1.0")};
  EXPECT_TRUE(CheckRotationMetric(views).ok());
  views[1].state->set_rotation_state("pending");
  const absl::Status s = CheckRotationMetric(views);
  EXPECT_EQ(ReasonOf(s), reason::kRotationInProgress) << s;
  EXPECT_THAT(s.message(), HasSubstr("b (\"pending\")"));
}

}  // namespace
}  // namespace kmsfleet
