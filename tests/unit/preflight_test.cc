// Preflight against the fake provider binary: doctor verdicts, skip is not
// a pass, version checks, rotation-plan trust, run-as, and the answers a
// memo keeps.
#include "kmsfleet/node/preflight.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/provider_cli.h"
#include "test_clocks.h"

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

// "fail" is refused here. A report with no transitMetadataStatus at all
// comes from a release older than the live Transit check: it is handed
// back as such, and the executor asks the other binary
// (ExecutorTest.AnInstalledReleaseOlderThanTheTransitCheckIsCheckedByTheNewOne).
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
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->transit_metadata_status, "");
  EXPECT_EQ(ok->transit_metadata_status, "pass");
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


// RunPreflight with a memo, against the fake provider behind a script that
// logs each command it is asked: a second preflight of the same files runs
// doctor again but neither `version` nor `config`.
class PreflightMemoTest : public PreflightTest {
 protected:
  void SetUp() override {
    PreflightTest::SetUp();
    // Every identity field, so that `config` prints a fingerprint.
    Write(dir_ + "/provider.yaml", Config("p-a"));
    options_.memo = std::make_shared<CommandMemo>(later_);
  }
  // Without `full`, only the provider name: no fingerprint is printed.
  std::string Config(const std::string& provider, bool full = true) {
    return "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
           "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: 127.0.0.1:0\n" +
           (full ? "openbao: {instanceId: bao-a}\ntransit:\n  keyIdScope: {providerName: " +
                       provider + ", clusterId: a, transitMountId: t-a, keyLineageId: l-a}\n"
                 : "transit:\n  keyIdScope: {providerName: " + provider + "}\n");
  }
  // Far enough past every file's change that all are settled.
  static inline const testing::ClockAhead later_{1000};
  // A release that logs each command it is asked to `asked`.
  std::string Logged(const std::string& name, const std::string& version) {
    std::string path = dir_ + "/" + name;
    Write(path, "#!/bin/sh\necho \"" + name + " $1\" >> " + dir_ + "/asked\nexec " +
                    FAKE_PROVIDER_PATH " --fake-version " + version + " \"$@\"\n");
    chmod(path.c_str(), 0755);
    return path;
  }
  std::string Asked() {
    std::ifstream in(dir_ + "/asked");
    std::stringstream text;
    text << in.rdbuf();
    std::filesystem::remove(dir_ + "/asked");
    std::vector<std::string> lines;
    for (std::string line; std::getline(text, line);) lines.push_back(line);
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const std::string& l : lines) out += l + ";";
    return out;
  }
};

TEST_F(PreflightMemoTest, ASecondPreflightOfTheSameFilesRunsOnlyDoctor) {
  const std::string staged = Logged("staged", "0.2.0");
  const std::string installed = Logged("installed", "0.1.0");
  absl::StatusOr<PreflightResult> first = RunPreflight(staged, "0.2.0", options_, installed);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->verdict.ok()) << first->verdict;
  EXPECT_EQ(Asked(), "installed config;staged config;staged doctor;staged version;");
  absl::StatusOr<PreflightResult> second = RunPreflight(staged, "0.2.0", options_, installed);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->verdict.ok()) << second->verdict;
  EXPECT_EQ(second->binary_version, "0.2.0");
  EXPECT_EQ(second->identity_staged.substr(0, 5), "cfg1.");
  EXPECT_EQ(second->identity_staged, first->identity_staged);
  EXPECT_EQ(second->identity_installed, first->identity_installed);
  EXPECT_EQ(Asked(), "staged doctor;");
  // The installed binary's version, asked once, as the swap's capture does.
  EXPECT_EQ(*RunVersion(installed, options_), "0.1.0");
  EXPECT_EQ(*RunVersion(installed, options_), "0.1.0");
  EXPECT_EQ(Asked(), "installed version;");
}

// What the agent does at start for its installed release (the executor's
// learner): the plan's preflight then asks the installed binary nothing.
TEST_F(PreflightMemoTest, AnswersLearntAheadAreNotAskedAgain) {
  const std::string staged = Logged("staged", "0.2.0");
  const std::string installed = Logged("installed", "0.1.0");
  std::unique_ptr<ProviderCli> cli = NewProcessProviderCli(options_);
  cli->LearnKeptAnswers(installed);
  EXPECT_EQ(Asked(), "installed config;installed version;");
  absl::StatusOr<PreflightResult> r = cli->Preflight(staged, "0.2.0", installed);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->verdict.ok()) << r->verdict;
  EXPECT_EQ(r->identity_installed.substr(0, 5), "cfg1.");
  EXPECT_EQ(*cli->Version(installed), "0.1.0");
  EXPECT_EQ(Asked(), "staged config;staged doctor;staged version;");
}

TEST_F(PreflightMemoTest, AnEditedConfigIsAskedForItsIdentityAgain) {
  const std::string staged = Logged("staged", "0.2.0");
  const std::string installed = Logged("installed", "0.1.0");
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_, installed).ok());
  Asked();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Write(options_.provider_config, Config("p-b"));
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_, installed).ok());
  EXPECT_EQ(Asked(), "installed config;staged config;staged doctor;");
}

TEST_F(PreflightMemoTest, AConfigWithoutAnIdentityIsAnAnswerToo) {
  Write(options_.provider_config, Config("p-a", false));
  const std::string staged = Logged("staged", "0.2.0");
  EXPECT_EQ(RunIdentityFingerprint(staged, options_), "");
  EXPECT_EQ(RunIdentityFingerprint(staged, options_), "");
  EXPECT_EQ(Asked(), "staged config;");
}

TEST_F(PreflightMemoTest, AFailedConfigRunIsAskedAgain) {
  // `config` exits 3 until the file `ok` exists, as a config the binary
  // cannot read would.
  const std::string path = dir_ + "/flaky";
  Write(path, "#!/bin/sh\necho \"flaky $1\" >> " + dir_ +
                  "/asked\nif [ \"$1\" = config ] && [ ! -e " + dir_ +
                  "/ok ]; then exit 3; fi\nexec " FAKE_PROVIDER_PATH
                  " --fake-version 0.2.0 \"$@\"\n");
  chmod(path.c_str(), 0755);
  EXPECT_EQ(RunIdentityFingerprint(path, options_), "");
  Write(dir_ + "/ok", "");
  EXPECT_EQ(RunIdentityFingerprint(path, options_).substr(0, 5), "cfg1.");
  EXPECT_EQ(RunIdentityFingerprint(path, options_).substr(0, 5), "cfg1.");
  EXPECT_EQ(Asked(), "flaky config;flaky config;");
}

TEST_F(PreflightMemoTest, WithoutAMemoEveryCommandRuns) {
  options_.memo.reset();
  const std::string staged = Logged("staged", "0.2.0");
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_).ok());
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_).ok());
  EXPECT_EQ(Asked(), "staged doctor;staged doctor;staged version;staged version;");
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
