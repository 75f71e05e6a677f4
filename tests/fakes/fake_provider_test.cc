// The fake's one-shot subcommands, run as a child process the way kmsfleet
// runs the real binary: output shapes and exit codes of reference §2.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <boost/json.hpp>

#include "absl/strings/str_split.h"

#include "fake_test_config.h"
#include "key_material.h"
#include "kmsfleet/node/key_id_hash.h"
#include "test_process.h"

namespace kmsfleet::fake::testing {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
    lines.push_back(text.substr(start, end - start));
  }
  return lines;
}

TEST(FakeVersionCommandTest, PrintsExactlyFourLinesWithTheDefaultVersion) {
  RunResult run = RunFake({"version"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 4u) << run.out;
  EXPECT_EQ(lines[0], "version: 0.1.0-preview.3");
  EXPECT_EQ(lines[1].rfind("commit: ", 0), 0u);
  EXPECT_EQ(lines[1].size(), 8u + 40u);
  EXPECT_EQ(lines[2].rfind("buildDate: 20", 0), 0u);
  EXPECT_EQ(lines[2].back(), 'Z');
  EXPECT_EQ(lines[3], "dirty: false");
}

TEST(FakeVersionCommandTest, CobraVersionFlagUsesTheCobraTemplate) {
  RunResult run = RunFake({"--version"});
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(run.out, "bao-kms-provider version 0.1.0-preview.3\n");
}

// Stamp < env < flag, so a copied artifact can be overridden per run.
TEST(FakeVersionCommandTest, StampEnvAndFlagApplyInPrecedenceOrder) {
  TempDir dir;
  std::string artifact = dir.File("bao-kms-provider");
  WriteFile(artifact, ReadFile(FakeBinary()) + "\nFAKE_BAO_KMS_VERSION=0.1.0-preview.2\n");
  ASSERT_EQ(::chmod(artifact.c_str(), 0755), 0);
  EXPECT_EQ(Lines(RunFake({"version"}, {}, artifact).out)[0], "version: 0.1.0-preview.2");
  EXPECT_EQ(Lines(RunFake({"version"}, {"FAKE_BAO_KMS_VERSION=0.1.0-preview.1"}, artifact).out)[0],
            "version: 0.1.0-preview.1");
  EXPECT_EQ(Lines(RunFake({"--fake-version", "0.2.0", "version"},
                          {"FAKE_BAO_KMS_VERSION=0.1.0-preview.1"}, artifact)
                      .out)[0],
            "version: 0.2.0");
}

// kmsfleet runs version, doctor, config and rotation-plan on an upgrade's
// critical path; the real provider is a static Go binary that starts in
// about a millisecond. Loading gRPC's ~50 shared libraries took the fake
// ten times that, so its one-shot commands must not load them, nor the
// libraries the build links statically into the binary (on a VM with slow
// page faults, loading those cost a `version` 4 ms of its 10). The dynamic
// loader lists what it would load when LD_TRACE_LOADED_OBJECTS is set.
TEST(FakeStartupTest, OneShotCommandsLoadNoGrpcProtobufOrSystemd) {
  RunResult run = RunFake({"version"}, {"LD_TRACE_LOADED_OBJECTS=1"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  ASSERT_NE(run.out.find("libc.so.6"), std::string::npos) << run.out;
  std::vector<std::string> unwanted = {"libgrpc", "libgpr", "libprotobuf", "libsystemd",
                                       "libupb", "libssl"};
  // The libraries the build linked from their archives (CMakeLists.txt).
  for (absl::string_view library :
       absl::StrSplit(FAKE_CLI_STATIC_LIBRARIES, ',', absl::SkipEmpty())) {
    unwanted.emplace_back(std::string(library));
  }
  for (const std::string& library : unwanted) {
    EXPECT_EQ(run.out.find(library), std::string::npos) << library << " in\n" << run.out;
  }
}

// serve and probe run in fake-bao-kms-provider-grpc; when it cannot be
// run, one error line names what was tried, and a hand-off never loops.
TEST(FakeStartupTest, ServeWithoutTheGrpcExecutableFailsNamingIt) {
  RunResult missing = RunFake({"serve", "--config", "/nonexistent.yaml"},
                              {"FAKE_BAO_KMS_GRPC_BINARY=/nonexistent/grpc-fake"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_EQ(missing.err,
            "Error: cannot run fake-bao-kms-provider-grpc for \"serve\": tried "
            "/nonexistent/grpc-fake (No such file or directory)\n");
  RunResult loop = RunFake({"probe", "--socket", "/nonexistent.sock"},
                           {"FAKE_BAO_KMS_GRPC_BINARY=" + FakeBinary()});
  EXPECT_EQ(loop.exit_code, 1);
  EXPECT_NE(loop.err.find("started fake-bao-kms-provider again"), std::string::npos) << loop.err;
}

TEST(FakeUsageTest, UnknownFlagExitsTwoWithOneErrorLine) {
  RunResult run = RunFake({"version", "--bogus"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_EQ(run.err, "Error: unknown flag: --bogus\n");
}

TEST(FakeUsageTest, UnknownCommandExitsTwo) {
  RunResult run = RunFake({"status"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("unknown command \"status\""), std::string::npos);
}

// Reference §2.1: before the Unreleased corrections usage errors exited 1.
TEST(FakeUsageTest, LegacyExitCodesTurnUsageAndConfigErrorsIntoOne) {
  EXPECT_EQ(RunFake({"--fake-set", "legacy_exit_codes=true", "version", "--bogus"}).exit_code, 1);
  EXPECT_EQ(RunFake({"doctor", "--config", "/nonexistent/config.yaml"}).exit_code, 3);
  TempDir dir;
  WriteFile(dir.File("s.yaml"), "legacy_exit_codes: true\n");
  EXPECT_EQ(RunFake({"doctor", "--config", "/nonexistent/config.yaml"},
                    {"FAKE_BAO_KMS_SCENARIO=" + dir.File("s.yaml")})
                .exit_code,
            1);
}

TEST(FakeUsageTest, XmlOutputIsAUsageError) {
  TempDir dir;
  RunResult run = RunFake({"doctor", "--config", WriteProviderConfig(dir), "--output", "xml"});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("unsupported output format \"xml\": expected text or json"),
            std::string::npos);
}

TEST(FakeScenarioFileTest, UnknownScenarioKeyExitsThreeNamingFileAndKey) {
  TempDir dir;
  WriteFile(dir.File("s.yaml"), "kms_health: ok\n");
  RunResult run = RunFake({"--scenario", dir.File("s.yaml"), "version"});
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_NE(run.err.find(dir.File("s.yaml")), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("\"kms_health\""), std::string::npos) << run.err;
}

TEST(FakeDoctorTest, PassingDoctorJsonListsChecksInOrderWithTheKeyHash) {
  TempDir dir;
  RunResult run = RunFake({"doctor", "--config", WriteProviderConfig(dir), "--output", "json"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  boost::json::object report = boost::json::parse(run.out).as_object();
  EXPECT_EQ(report.at("name"), "doctor");
  const auto& checks = report.at("checks").as_array();
  ASSERT_EQ(checks.size(), 14u);
  EXPECT_EQ(checks[0].at("id"), "config.load");
  EXPECT_EQ(checks[4].at("id"), "kubernetes.encryption_config");
  EXPECT_EQ(checks[4].at("status"), "skip");
  EXPECT_EQ(checks[4].at("message"), "no --encryption-config path supplied");
  EXPECT_EQ(checks[12].at("id"), "key_id.deterministic");
  EXPECT_EQ(Str(checks[12].at("message")),
            "active key_id hash " + kmsfleet::KeyIdHash(DeriveKeyId(kDefaultKeySeed, 1)));
  EXPECT_EQ(checks[13].at("id"), "kms.status_encrypt");
}

TEST(FakeDoctorTest, IdentityFallbackInEncryptionConfigWarnsButPasses) {
  TempDir dir;
  std::string config = WriteProviderConfig(dir);
  WriteFile(dir.File("enc.yaml"),
            "apiVersion: apiserver.config.k8s.io/v1\n"
            "kind: EncryptionConfiguration\n"
            "resources:\n"
            "  - resources: [secrets]\n"
            "    providers:\n"
            "      - kms: {apiVersion: v2, name: openbao-kms-a,\n"
            "              endpoint: unix://" + dir.File("kms.sock") + ", timeout: 3s}\n"
            "      - identity: {}\n");
  RunResult run =
      RunFake({"doctor", "--config", config, "--encryption-config", dir.File("enc.yaml")});
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[warn] kubernetes.encryption_config: EncryptionConfiguration - "
                         "identity fallback remains configured\n"),
            std::string::npos)
      << run.out;
}

TEST(FakeDoctorTest, ScenarioFailureExitsFourAndSkipsDependentChecks) {
  TempDir dir;
  RunResult run = RunFake({"doctor", "--config", WriteProviderConfig(dir),
                           "--fake-set", "doctor={fail: [transit.metadata]}"});
  EXPECT_EQ(run.exit_code, 4);
  EXPECT_NE(run.out.find("[fail] transit.metadata: Transit metadata - "), std::string::npos);
  EXPECT_NE(run.out.find("[skip] transit.profile: "), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("Error: "), std::string::npos);
}

TEST(FakeDoctorTest, MissingConfigFailsConfigLoadWithExitThree) {
  RunResult run = RunFake({"doctor", "--config", "/nonexistent/config.yaml"});
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_EQ(run.out.rfind("doctor\n[fail] config.load: Config load - ", 0), 0u) << run.out;
}

TEST(FakeRotationPlanTest, ActiveReportCarriesStateAndHash) {
  TempDir dir;
  RunResult run = RunFake({"rotation-plan", "--config", WriteProviderConfig(dir), "--output",
                           "json", "--fake-version", "0.1.0"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  boost::json::object plan = boost::json::parse(run.out).as_object();
  EXPECT_EQ(plan.at("name"), "rotation-plan");
  EXPECT_EQ(plan.at("transitMetadataStatus"), "pass");
  EXPECT_EQ(plan.at("stateLoaded"), true);
  EXPECT_EQ(plan.at("stateCheckpointStatus"), "current");
  EXPECT_EQ(plan.at("rotationState"), "active");
  EXPECT_EQ(Str(plan.at("stateHash")).substr(0, 5), "krs1.");
  EXPECT_EQ(Str(plan.at("activeKeyIdHash")), kmsfleet::KeyIdHash(DeriveKeyId(kDefaultKeySeed, 1)));
  EXPECT_FALSE(plan.contains("pendingKeyIdHash"));
}

// The released previews predate the live Transit check (reference §2.6):
// no transitMetadataStatus, and exit 0 on the local report.
TEST(FakeRotationPlanTest, APreviewReleasePrintsNoTransitMetadataStatus) {
  TempDir dir;
  for (const char* version : {"0.1.0-preview.2", "0.1.0-preview.3"}) {
    RunResult run = RunFake({"rotation-plan", "--config", WriteProviderConfig(dir), "--output",
                             "json", "--fake-version", version});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    boost::json::object plan = boost::json::parse(run.out).as_object();
    EXPECT_FALSE(plan.contains("transitMetadataStatus")) << version << ": " << run.out;
    EXPECT_EQ(plan.at("rotationState"), "active");
  }
}

TEST(FakeRotationPlanTest, PendingRotationAddsPendingFields) {
  TempDir dir;
  RunResult run = RunFake({"rotation-plan", "--config", WriteProviderConfig(dir), "--output",
                           "json", "--fake-set", "rotation_state=pending"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  boost::json::object plan = boost::json::parse(run.out).as_object();
  EXPECT_EQ(plan.at("rotationState"), "pending");
  EXPECT_EQ(plan.at("pendingTransitVersion"), 2);
  EXPECT_EQ(plan.at("latestTransitVersion"), 2);
  EXPECT_EQ(Str(plan.at("pendingKeyIdHash")), kmsfleet::KeyIdHash(DeriveKeyId(kDefaultKeySeed, 2)));
}

TEST(FakeRotationPlanTest, FailedMetadataReadExitsFour) {
  TempDir dir;
  RunResult run = RunFake({"rotation-plan", "--config", WriteProviderConfig(dir), "--output",
                           "json", "--fake-set", "rotation_plan={transitMetadataStatus: fail}"});
  EXPECT_EQ(run.exit_code, 4);
  boost::json::object plan = boost::json::parse(run.out).as_object();
  EXPECT_EQ(plan.at("transitMetadataStatus"), "fail");
  EXPECT_TRUE(plan.contains("transitMetadataError"));
}

TEST(FakeConfigCommandTest, PrintsSixSummaryLines) {
  TempDir dir;
  RunResult run = RunFake({"config", "--config", WriteProviderConfig(dir)});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 6u) << run.out;
  EXPECT_EQ(lines[0], "configVersion: v1alpha1");
  EXPECT_EQ(lines[1], "socketPath: " + dir.File("kms.sock"));
  EXPECT_EQ(lines[4], "authMethod: jwt");
  EXPECT_EQ(lines[5].rfind("identityFingerprint: cfg1.", 0), 0u);
  EXPECT_EQ(lines[5].size(), std::string("identityFingerprint: cfg1.").size() + 43);
}

TEST(FakeConfigCommandTest, UnknownTopLevelSectionExitsThree) {
  TempDir dir;
  WriteFile(dir.File("c.yaml"), "configVersion: v1alpha1\nadmin: {}\n");
  RunResult run = RunFake({"config", "--config", dir.File("c.yaml")});
  EXPECT_EQ(run.exit_code, 3);
  EXPECT_NE(run.err.find("unknown field \"admin\""), std::string::npos);
}

TEST(FakeServeStartTest, ExitOnStartPrintsTheBootstrapErrorAndExitsFive) {
  TempDir dir;
  RunResult run = RunFake({"serve", "--config", WriteProviderConfig(dir),
                           "--fake-set", "exit_on_start=true"});
  EXPECT_EQ(run.exit_code, 5);
  EXPECT_NE(run.err.find("bootstrap status probe did not succeed within 60s"),
            std::string::npos)
      << run.err;
  EXPECT_FALSE(PathExists(dir.File("kms.sock")));
}

}  // namespace
}  // namespace kmsfleet::fake::testing
