// Preflight against the fake provider binary: doctor verdicts, skip is not
// a pass, version checks, rotation-plan trust, and run-as.
#include "kmsfleet/node/preflight.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

class PreflightTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kfpre.XXXXXX";
    dir_ = mkdtemp(tmpl);
    Write(dir_ + "/provider.yaml",
          "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
              "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
              "127.0.0.1:0\ntransit:\n  keyIdScope: {providerName: p-a}\n");
    Write(dir_ + "/enc.yaml",
          "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
          "resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n"
          "          apiVersion: v2\n          name: p-a\n          endpoint: unix://" +
              dir_ + "/kms.sock\n");
    options_.provider_config = dir_ + "/provider.yaml";
    options_.encryption_config = dir_ + "/enc.yaml";
    options_.timeout = std::chrono::seconds(20);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  // A release that runs the fake as `version` with `extra` arguments.
  std::string Binary(const std::string& version, const std::string& extra = "") {
    std::string path = dir_ + "/bin-" + std::to_string(++n_);
    Write(path, "#!/bin/sh\nexec " FAKE_PROVIDER_PATH " --fake-version " + version +
                    " " + extra + " \"$@\"\n");
    chmod(path.c_str(), 0755);
    return path;
  }

  std::string dir_;
  int n_ = 0;
  PreflightOptions options_;
};

TEST_F(PreflightTest, PassingDoctorReportsNoBlock) {
  absl::StatusOr<PreflightResult> r = RunPreflight(Binary("0.2.0"), "0.2.0", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->verdict.ok()) << r->verdict;
  EXPECT_EQ(r->binary_version, "0.2.0");
  EXPECT_FALSE(r->doctor.checks.empty());
}

TEST_F(PreflightTest, FailingCheckBlocksWithIdTitleAndMessage) {
  absl::StatusOr<PreflightResult> r = RunPreflight(
      Binary("0.2.0", "--fake-set 'doctor={fail: [openbao.auth]}'"), "0.2.0", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReasonOf(r->verdict), reason::kDoctorFailed);
  EXPECT_NE(r->verdict.message().find("openbao.auth ("), std::string::npos)
      << r->verdict;
  // Checks after a failed gate are skip: reported, never a pass.
  bool saw_skip = false;
  for (const Check& c : r->warnings) saw_skip |= c.status == CheckStatus::kSkip;
  EXPECT_TRUE(saw_skip);
}

TEST_F(PreflightTest, WarnIsReportedNotBlocking) {
  absl::StatusOr<PreflightResult> r = RunPreflight(
      Binary("0.2.0", "--fake-set 'doctor={warn: [openbao.tls]}'"), "0.2.0", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->verdict.ok()) << r->verdict;
  ASSERT_FALSE(r->warnings.empty());
  EXPECT_EQ(r->warnings.front().id, "openbao.tls");
}

TEST_F(PreflightTest, WrongVersionBlocks) {
  absl::StatusOr<PreflightResult> r = RunPreflight(Binary("0.3.0"), "0.2.0", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReasonOf(r->verdict), reason::kVersionMismatch);
}

TEST_F(PreflightTest, RotationPlanIsTrustedOnlyWithTransitMetadataPass) {
  absl::StatusOr<RotationReport> ok = RunRotationPlan(Binary("0.2.0"), options_);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->rotation_state, "active");
  absl::StatusOr<RotationReport> bad = RunRotationPlan(
      Binary("0.2.0", "--fake-set 'rotation_plan={transitMetadataStatus: fail}'"),
      options_);
  EXPECT_EQ(ReasonOf(bad.status()), reason::kRotationPlanUntrusted);
  absl::StatusOr<RotationReport> old = RunRotationPlan(
      Binary("0.2.0", "--fake-set 'rotation_plan={transitMetadataStatus: null}'"),
      options_);
  EXPECT_EQ(ReasonOf(old.status()), reason::kRotationPlanUntrusted);
}

TEST_F(PreflightTest, AFailedRotationPlanSaysWhatItsReportSaid) {
  // Exit 4 with transitMetadataStatus: fail; the redacted error names the
  // cause, and the operator must see it, not only "exited 4".
  absl::StatusOr<RotationReport> bad = RunRotationPlan(
      Binary("0.2.0", "--fake-set 'rotation_plan={transitMetadataStatus: fail}'"),
      options_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(MetadataOf(bad.status(), "exit_code"), "4");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("exited 4"));
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("transitMetadataStatus: fail"));
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("openbao_unavailable"));
  EXPECT_EQ(MetadataOf(bad.status(), "transit_metadata_status"), "fail");
}

TEST_F(PreflightTest, IdentityFingerprintsAreCompared) {
  // With every identity field set, the fake prints cfg1.<hash> from them.
  Write(dir_ + "/provider.yaml",
        "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
            "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
            "127.0.0.1:0\nopenbao: {instanceId: bao-a}\ntransit:\n  keyIdScope: "
            "{providerName: p-a, clusterId: a, transitMountId: t-a, "
            "keyLineageId: l-a}\n");
  std::string installed = Binary("0.1.0");
  EXPECT_EQ(RunIdentityFingerprint(installed, options_).substr(0, 5), "cfg1.");
  absl::StatusOr<PreflightResult> same =
      RunPreflight(Binary("0.2.0"), "0.2.0", options_, installed);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_TRUE(same->verdict.ok()) << same->verdict;
  EXPECT_EQ(same->identity_staged, same->identity_installed);

  // A release that derives another identity from the same config.
  std::string other = dir_ + "/other-identity";
  Write(other, "#!/bin/sh\ncase \"$1\" in config) echo 'identityFingerprint: "
               "cfg1.something-else'; exit 0;; esac\nexec " FAKE_PROVIDER_PATH
               " --fake-version 0.2.0 \"$@\"\n");
  chmod(other.c_str(), 0755);
  absl::StatusOr<PreflightResult> changed =
      RunPreflight(other, "0.2.0", options_, installed);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(ReasonOf(changed->verdict), reason::kIdentityChanged);
  EXPECT_NE(changed->verdict.message().find("cfg1.something-else"), std::string::npos);
}

// version, doctor and both `config` runs only read: they run together.
// Each command here waits at a rendezvous for the other three and fails if
// they do not come, so commands run one after another fail the preflight.
TEST_F(PreflightTest, RunsItsFourCommandsTogether) {
  Write(dir_ + "/provider.yaml",  // every identity field, so `config` prints one
        "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
            "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
            "127.0.0.1:0\nopenbao: {instanceId: bao-a}\ntransit:\n  keyIdScope: "
            "{providerName: p-a, clusterId: a, transitMountId: t-a, "
            "keyLineageId: l-a}\n");
  auto rendezvous = [this](const std::string& version) {
    std::string path = dir_ + "/together-" + version;
    Write(path, "#!/bin/sh\ntouch " + dir_ + "/arrived.$$\ni=0\n"
                "while [ \"$(ls " + dir_ + "/arrived.* | wc -l)\" -lt 4 ]; do\n"
                "  i=$((i+1)); if [ $i -gt 500 ]; then echo alone >&2; exit 9; fi\n"
                "  sleep 0.01\ndone\n"
                "exec " FAKE_PROVIDER_PATH " --fake-version " + version + " \"$@\"\n");
    chmod(path.c_str(), 0755);
    return path;
  };
  absl::StatusOr<PreflightResult> r =
      RunPreflight(rendezvous("0.2.0"), "0.2.0", options_, rendezvous("0.1.0"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->verdict.ok()) << r->verdict;
  EXPECT_EQ(r->binary_version, "0.2.0");
  EXPECT_EQ(r->identity_staged.substr(0, 5), "cfg1.");
  EXPECT_EQ(r->identity_staged, r->identity_installed);
}

TEST_F(PreflightTest, RunsAsTheConfiguredUser) {
  if (geteuid() != 0) GTEST_SKIP() << "setpriv needs root";
  options_.run_as = "nobody";
  std::string probe = dir_ + "/whoami";
  Write(probe, "#!/bin/sh\necho \"version: $(id -un)\"\n");
  chmod(probe.c_str(), 0755);
  chmod(dir_.c_str(), 0755);
  absl::StatusOr<std::string> v = RunVersion(probe, options_);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "nobody");
}

}  // namespace
}  // namespace kmsfleet

namespace kmsfleet {
namespace {

// doctor from an image (static_pod.doctor_command): the placeholders are
// filled in, the report is judged like the kit binary's, and a command
// that prints no report or names an unknown placeholder is an error.
class ImageDoctorTest : public PreflightTest {
 protected:
  // A stand-in for `ctr run`: records its arguments, then runs the fake's
  // doctor with the config paths it was given.
  std::string Runner(const std::string& extra = "") {
    std::string path = dir_ + "/runner";
    Write(path, "#!/bin/sh\necho \"$@\" > " + dir_ + "/runner.args\nexec " FAKE_PROVIDER_PATH
                " " + extra + " doctor --config \"$2\" --encryption-config \"$3\" --output json\n");
    chmod(path.c_str(), 0755);
    return path;
  }
};

TEST_F(ImageDoctorTest, PlaceholdersAreFilledAndThePassingReportAdmits) {
  options_.doctor_command = {Runner(), "{image}", "{config}", "{encryption_config}",
                             "--name=kms-{image}"};
  absl::StatusOr<PreflightResult> r = RunImageDoctor("repo@sha256:ab", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->verdict.ok()) << r->verdict;
  std::ifstream in(dir_ + "/runner.args");
  std::string args((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(args, "repo@sha256:ab " + dir_ + "/provider.yaml " + dir_ +
                      "/enc.yaml --name=kms-repo@sha256:ab\n");
}

TEST_F(ImageDoctorTest, AFailingCheckIsTheVerdictNamingTheImage) {
  options_.doctor_command = {Runner("--fake-set 'doctor={fail: [openbao.auth]}'"), "{image}",
                             "{config}", "{encryption_config}"};
  absl::StatusOr<PreflightResult> r = RunImageDoctor("repo@sha256:ab", options_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(ReasonOf(r->verdict), reason::kDoctorFailed);
  EXPECT_THAT(std::string(r->verdict.message()), HasSubstr("openbao.auth ("));
  EXPECT_THAT(std::string(r->verdict.message()), HasSubstr("image repo@sha256:ab"));
}

TEST_F(ImageDoctorTest, NoReportUnknownPlaceholderOrNoCommandIsAnError) {
  options_.doctor_command = {"/bin/echo", "not a report"};
  EXPECT_EQ(ReasonOf(RunImageDoctor("repo@sha256:ab", options_).status()),
            reason::kDoctorFailed);
  options_.doctor_command = {"/bin/echo", "{imag}"};
  absl::Status s = RunImageDoctor("repo@sha256:ab", options_).status();
  EXPECT_EQ(ReasonOf(s), reason::kInvalidConfig);
  EXPECT_THAT(std::string(s.message()), HasSubstr("{imag}"));
  options_.doctor_command.clear();
  EXPECT_EQ(ReasonOf(RunImageDoctor("repo@sha256:ab", options_).status()),
            reason::kInvalidConfig);
}

}  // namespace
}  // namespace kmsfleet
