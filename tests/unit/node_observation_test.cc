// From raw probe results to a NodeState with named conditions.
#include "kmsfleet/core/node_observation.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

const std::string kHash = "uKq0-dTbTrV9r_gC3wJvhVSy9Hq2bb7nn2uR6Sx1ZkE";
const std::string kOtherHash = "Zx9_3PmYtV0wH2q-EaR1cBnLrS4uJ8dKfG7iO6hQ5yM";

std::string Metrics(const std::string& hash, bool build_info = true,
                    const std::string& rotation = "active") {
  std::string text =
      "# HELP openbao_kms_status_key_id_hash Active key_id hash.\n"
      "# TYPE openbao_kms_status_key_id_hash gauge\n"
      "openbao_kms_status_key_id_hash{hash=\"" +
      hash +
      "\"} 1\n"
      "# TYPE openbao_kms_key_version gauge\n"
      "openbao_kms_key_version 3\n"
      "# TYPE openbao_kms_rotation_state gauge\n";
  for (const char* s : {"active", "pending", "unknown"}) {
    text += std::string("openbao_kms_rotation_state{state=\"") + s + "\"} " +
            (rotation == s ? "1" : "0") + "\n";
  }
  text +=
      "# TYPE openbao_kms_decrypt_key_id_errors_total counter\n"
      "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_unknown\"} 2\n"
      "openbao_kms_decrypt_key_id_errors_total{reason=\"key_id_malformed\"} "
      "1\n";
  if (build_info) {
    text +=
        "# TYPE openbao_kms_build_info gauge\n"
        "openbao_kms_build_info{version=\"0.1.0-preview.3\",commit=\"abc\","
        "build_date=\"2026-10-01T00:00:00Z\",dirty=\"false\"} 1\n";
  }
  return text;
}

RawObservation Healthy() {
  RawObservation raw;
  raw.node = "cp-1";
  raw.observed_at_unix_ms = 1'790'000'000'000;
  raw.metrics = {absl::OkStatus(), 200, Metrics(kHash)};
  raw.ready = {
      absl::OkStatus(), 200,
      R"({"reasons":[],"status":"ok","healthz":"ok","cache_age_ms":12,"stale":false,"rotation_state":"active"})"};
  raw.live = {absl::OkStatus(), 200, R"({"status":"ok"})"};
  v2::StatusResponse kms;
  kms.set_version("v2");
  kms.set_healthz("ok");
  kms.set_key_id("obk2.whatever");
  raw.kms_status = kms;
  raw.kms_key_id_hash = kHash;
  return raw;
}

std::vector<std::string> Reasons(const v1::NodeState& s) {
  std::vector<std::string> out;
  for (const auto& c : s.conditions()) out.push_back(c.reason());
  return out;
}

TEST(NodeObservationTest, HealthyProviderHasNoConditions) {
  v1::NodeState s = AssembleNodeState(Healthy());
  EXPECT_TRUE(Reasons(s).empty()) << s.DebugString();
  EXPECT_EQ(s.node(), "cp-1");
  EXPECT_TRUE(s.live());
  EXPECT_TRUE(s.ready());
  EXPECT_EQ(s.key_id_hash_metric(), kHash);
  EXPECT_EQ(s.key_id_hash_socket(), kHash);
  EXPECT_EQ(s.provider_version(), "0.1.0-preview.3");
  EXPECT_EQ(s.provider_version_source(), "build_info");
  EXPECT_EQ(s.rotation_state(), "active");
  EXPECT_EQ(s.key_version(), 3);
  EXPECT_DOUBLE_EQ(s.decrypt_key_id_errors_total(), 3);
  EXPECT_EQ(s.kms_healthz(), "ok");
  EXPECT_EQ(s.observed_at_unix_ms(), 1'790'000'000'000);
  EXPECT_FALSE(NeedsVersionCommand(s));
}

TEST(NodeObservationTest, UnreadyProviderCarriesItsReasons) {
  RawObservation raw = Healthy();
  raw.ready = {
      absl::OkStatus(), 503,
      R"({"reasons":["status_stale","deep_probe_failed"],"status":"unavailable","stale":true})"};
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_FALSE(s.ready());
  ASSERT_EQ(s.ready_reasons_size(), 2);
  EXPECT_EQ(s.ready_reasons(1), "deep_probe_failed");
  ASSERT_EQ(Reasons(s), std::vector<std::string>{reason::kNotReady});
  EXPECT_NE(s.conditions(0).message().find("status_stale deep_probe_failed"),
            std::string::npos);
}

TEST(NodeObservationTest, ProviderStillBootstrappingIsUnreachableNotCrashed) {
  RawObservation raw = Healthy();
  absl::Status refused =
      MakeError(absl::StatusCode::kUnavailable, reason::kHttpError,
                "GET http://127.0.0.1:8082/ready: connect failed");
  raw.ready.transport = refused;
  raw.live.transport = refused;
  raw.metrics.transport = refused;
  raw.kms_status = MakeError(absl::StatusCode::kUnavailable,
                             reason::kKmsSocketUnreachable, "no socket");
  raw.kms_key_id_hash.clear();
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_FALSE(s.ready());
  EXPECT_FALSE(s.live());
  EXPECT_EQ(Reasons(s),
            (std::vector<std::string>{
                reason::kHealthUnreachable, reason::kHealthUnreachable,
                reason::kMetricsUnreachable, reason::kKmsSocketUnreachable}));
  EXPECT_TRUE(NeedsVersionCommand(s));
}

TEST(NodeObservationTest, TwoHashSeriesAtOneIsAmbiguous) {
  RawObservation raw = Healthy();
  raw.metrics.body +=
      "openbao_kms_status_key_id_hash{hash=\"" + kOtherHash + "\"} 1\n";
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_TRUE(s.key_id_hash_metric().empty());
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kKeyIdHashAmbiguous});
}

TEST(NodeObservationTest, MetricAndSocketDisagreeingIsAMismatch) {
  RawObservation raw = Healthy();
  raw.kms_key_id_hash = kOtherHash;
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kKeyIdHashMismatch});
  EXPECT_NE(s.conditions(0).message().find(kOtherHash), std::string::npos);
}

TEST(NodeObservationTest, UnhealthyKmsStatusIsNamed) {
  RawObservation raw = Healthy();
  raw.kms_status->set_healthz("unhealthy");
  raw.kms_status->clear_key_id();
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kKmsUnhealthy});
  EXPECT_TRUE(s.key_id_hash_socket().empty());
}

TEST(NodeObservationTest, PendingRotationIsACondition) {
  RawObservation raw = Healthy();
  raw.metrics.body = Metrics(kHash, true, "pending");
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_EQ(s.rotation_state(), "pending");
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kRotationInProgress});
}

TEST(NodeObservationTest, OlderProviderWithoutBuildInfoAsksTheBinary) {
  RawObservation raw = Healthy();
  raw.metrics.body = Metrics(kHash, false);
  v1::NodeState s = AssembleNodeState(raw);
  ASSERT_TRUE(NeedsVersionCommand(s));
  ApplyVersionCommand(
      std::string("version: 0.1.0-preview.2\ncommit: abc\n"
                  "buildDate: 2026-09-21T00:00:00Z\ndirty: false\n"),
      s);
  EXPECT_EQ(s.provider_version(), "0.1.0-preview.2");
  EXPECT_EQ(s.provider_version_source(), "version_command");
  EXPECT_TRUE(Reasons(s).empty());
}

TEST(NodeObservationTest, FailedVersionCommandIsACondition) {
  v1::NodeState s;
  ApplyVersionCommand(MakeError(absl::StatusCode::kUnavailable,
                                reason::kSubprocessFailed, "exited 1"),
                      s);
  EXPECT_EQ(Reasons(s),
            std::vector<std::string>{reason::kVersionCommandFailed});
  ApplyVersionCommand(std::string("garbage\n"), s);
  EXPECT_EQ(s.conditions_size(), 2);
  EXPECT_TRUE(s.provider_version().empty());
}

TEST(NodeObservationTest, MalformedScrapeIsNamedNotFatal) {
  RawObservation raw = Healthy();
  raw.metrics.body = "openbao_kms_key_version{ 3\n";
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kMalformedExposition});
  EXPECT_TRUE(s.ready());
}

TEST(NodeObservationTest, MetricsHttpErrorIsUnreachable) {
  RawObservation raw = Healthy();
  raw.metrics = {absl::OkStatus(), 404, "404 page not found"};
  v1::NodeState s = AssembleNodeState(raw);
  EXPECT_EQ(Reasons(s), std::vector<std::string>{reason::kMetricsUnreachable});
}

// ---- Registry facts (NodeState.registry_*, for the rollback guard) ----

constexpr char kRegistryPath[] = "/var/lib/openbao-kms/state/key-registry.json";

TEST(RegistryFactsTest, ReadRegistryIsKnownWithSchemaAndRemovedCount) {
  v1::NodeState s;
  ApplyRegistryRead(std::string(R"({"schemaVersion":"keyregistry.openbao-kms/v1",
      "snapshots":[{"state":"active"},{"state":"removed"},{"state":"removed"}]})"),
                    kRegistryPath, s);
  EXPECT_TRUE(s.registry_known());
  EXPECT_FALSE(s.has_registry());
  std::optional<RegistryFacts> facts = RegistryFactsOf(s);
  ASSERT_TRUE(facts.has_value());
  EXPECT_EQ(facts->schema_version, "keyregistry.openbao-kms/v1");
  EXPECT_EQ(facts->removed_records, 2);
  EXPECT_TRUE(s.conditions().empty());  // the provider's health is untouched
}

TEST(RegistryFactsTest, AbsentRegistryIsKnownEmpty) {
  v1::NodeState s;
  ApplyRegistryRead(absl::NotFoundError("no such file"), kRegistryPath, s);
  std::optional<RegistryFacts> facts = RegistryFactsOf(s);
  ASSERT_TRUE(facts.has_value());
  EXPECT_EQ(facts->schema_version, "");
  EXPECT_EQ(facts->removed_records, 0);
}

TEST(RegistryFactsTest, UnreadableRegistryIsUnknownNamingThePath) {
  v1::NodeState s;
  ApplyRegistryRead(MakeError(absl::StatusCode::kPermissionDenied, reason::kArtifactIo,
                              "permission denied"),
                    kRegistryPath, s);
  EXPECT_FALSE(RegistryFactsOf(s).has_value());
  EXPECT_EQ(s.registry().reason(), reason::kRegistryUnreadable);
  EXPECT_NE(s.registry().message().find(kRegistryPath), std::string::npos);
  EXPECT_NE(s.registry().message().find("permission denied"), std::string::npos);
}

TEST(RegistryFactsTest, OversizedOrMalformedRegistryIsUnknownWithItsReason) {
  v1::NodeState s;
  ApplyRegistryRead(MakeError(absl::StatusCode::kResourceExhausted, reason::kInputTooLarge,
                              "larger than 16777216 bytes"),
                    kRegistryPath, s);
  EXPECT_FALSE(RegistryFactsOf(s).has_value());
  EXPECT_EQ(s.registry().reason(), reason::kInputTooLarge);
  ApplyRegistryRead(std::string(R"({"snapshots":[]})"), kRegistryPath, s);
  EXPECT_FALSE(RegistryFactsOf(s).has_value());
  EXPECT_EQ(s.registry().reason(), reason::kMalformedRegistry);
  EXPECT_NE(s.registry().message().find(kRegistryPath), std::string::npos);
}

TEST(RegistryFactsTest, NoPathConfiguredIsUnknown) {
  v1::NodeState s;
  ApplyRegistryRead(std::string("{}"), "", s);
  EXPECT_FALSE(RegistryFactsOf(s).has_value());
  EXPECT_EQ(s.registry().reason(), reason::kRegistryUnreadable);
}

// A later read replaces an earlier one in the same state.
TEST(RegistryFactsTest, AFailedReadForgetsEarlierFacts) {
  v1::NodeState s;
  ApplyRegistryRead(std::string(R"({"schemaVersion":"v1","snapshots":[{"state":"removed"}]})"),
                    kRegistryPath, s);
  ApplyRegistryRead(absl::UnavailableError("EIO"), kRegistryPath, s);
  EXPECT_FALSE(RegistryFactsOf(s).has_value());
  EXPECT_TRUE(s.registry_schema_version().empty());
  EXPECT_EQ(s.registry_removed_records(), 0);
  ApplyRegistryRead(std::string(R"({"schemaVersion":"v1"})"), kRegistryPath, s);
  EXPECT_TRUE(RegistryFactsOf(s).has_value());
  EXPECT_FALSE(s.has_registry());
}

// An agent without these fields, or a state nobody filled, is unknown, never
// "schema '' with 0 removed".
TEST(RegistryFactsTest, StateWithoutRegistryFieldsIsUnknown) {
  EXPECT_FALSE(RegistryFactsOf(v1::NodeState()).has_value());
}

}  // namespace
}  // namespace kmsfleet
