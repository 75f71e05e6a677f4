// The memo of content-determined provider answers: reused only for files
// unchanged since, never for a failed run, a file changed while it ran or
// within a timestamp tick before it; and the preflight asks it.
#include "kmsfleet/node/command_memo.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "kmsfleet/node/preflight.h"

namespace kmsfleet {
namespace {

class CommandMemoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kfmemo.XXXXXX";
    dir_ = mkdtemp(tmpl);
    file_ = dir_ + "/bin";
    Write(file_, "v1\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static void Write(const std::string& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  // A clock far enough past every file's change that all are settled.
  static int64_t Later() { return WallClockMillis() + 1000; }

  // Asks `memo` for `command` on `files`, counting the runs.
  absl::StatusOr<std::string> Ask(CommandMemo& memo, const std::vector<std::string>& files,
                                  absl::StatusOr<std::string> answer = std::string("a"),
                                  const std::string& command = "version") {
    return memo.Answer(command, files, [&] {
      ++runs_;
      return answer;
    });
  }

  std::string dir_, file_;
  int runs_ = 0;
};

TEST_F(CommandMemoTest, AnAnswerIsReusedWhileItsFilesAreUnchanged) {
  CommandMemo memo(Later);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("0.2.0")), "0.2.0");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("other")), "0.2.0");
  EXPECT_EQ(runs_, 1);
  EXPECT_EQ(memo.reused(), 1u);
  // Another command on the same file is another answer.
  EXPECT_EQ(*Ask(memo, {file_}, std::string("fp"), "config"), "fp");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFileRewrittenInPlaceOrReplacedIsAskedAgain) {
  CommandMemo memo(Later);
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  // Same size, same inode: only the times tell. Past a timestamp tick.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Write(file_, "v2\n");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
  Write(dir_ + "/new", "v2\n");
  std::filesystem::rename(dir_ + "/new", file_);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("c")), "c");
  EXPECT_EQ(runs_, 3);
  EXPECT_EQ(*Ask(memo, {file_}, std::string("d")), "c");
  EXPECT_EQ(runs_, 3);
}

TEST_F(CommandMemoTest, EveryFileTheCommandReadsIsPartOfTheKey) {
  const std::string config = dir_ + "/config.yaml";
  Write(config, "a: 1\n");
  CommandMemo memo(Later);
  ASSERT_TRUE(Ask(memo, {file_, config}, std::string("fp-1")).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Write(config, "a: 2\n");
  EXPECT_EQ(*Ask(memo, {file_, config}, std::string("fp-2")), "fp-2");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFailedRunIsNotKept) {
  CommandMemo memo(Later);
  EXPECT_FALSE(Ask(memo, {file_}, absl::InternalError("exit 1")).ok());
  EXPECT_EQ(*Ask(memo, {file_}, std::string("a")), "a");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFileChangedWhileTheCommandRanIsNotKept) {
  CommandMemo memo(Later);
  auto rewrite = [&] {
    ++runs_;
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    Write(file_, "v9\n");
    return absl::StatusOr<std::string>("a");
  };
  EXPECT_EQ(*memo.Answer("version", {file_}, rewrite), "a");
  EXPECT_EQ(*Ask(memo, {file_}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, AFileChangedWithinATimestampTickBeforeTheRunIsNotKept) {
  struct stat st;
  ASSERT_EQ(stat(file_.c_str(), &st), 0);
  const int64_t changed = int64_t{st.st_ctim.tv_sec} * 1000 + st.st_ctim.tv_nsec / 1000000;
  int64_t now = changed + CommandMemo::kSettledMs - 1;
  CommandMemo memo([&] { return now; });
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  EXPECT_EQ(runs_, 2);
  now = changed + CommandMemo::kSettledMs;
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  ASSERT_TRUE(Ask(memo, {file_}).ok());
  EXPECT_EQ(runs_, 3);
}

TEST_F(CommandMemoTest, AMissingFileRunsTheCommandAndKeepsNothing) {
  CommandMemo memo(Later);
  EXPECT_EQ(*Ask(memo, {dir_ + "/absent"}, std::string("a")), "a");
  EXPECT_EQ(*Ask(memo, {dir_ + "/absent"}, std::string("b")), "b");
  EXPECT_EQ(runs_, 2);
}

TEST_F(CommandMemoTest, TheOldestAnswerGoesFirst) {
  CommandMemo memo(Later);
  for (size_t i = 0; i <= CommandMemo::kMaxAnswers; ++i) {
    ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c" + std::to_string(i)).ok());
  }
  const int asked = runs_;
  ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c" + std::to_string(CommandMemo::kMaxAnswers)).ok());
  EXPECT_EQ(runs_, asked);  // the newest is kept
  ASSERT_TRUE(Ask(memo, {file_}, std::string("a"), "c0").ok());
  EXPECT_EQ(runs_, asked + 1);  // the oldest was dropped
}

// RunPreflight with a memo, against the fake provider behind a script that
// logs each command it is asked: a second preflight of the same files runs
// doctor again but neither `version` nor `config`.
class PreflightMemoTest : public CommandMemoTest {
 protected:
  void SetUp() override {
    CommandMemoTest::SetUp();
    Write(dir_ + "/provider.yaml",
          "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
              "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
              "127.0.0.1:0\nopenbao: {instanceId: bao-a}\ntransit:\n  keyIdScope: "
              "{providerName: p-a, clusterId: a, transitMountId: t-a, keyLineageId: l-a}\n");
    Write(dir_ + "/enc.yaml",
          "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
          "resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n"
          "          apiVersion: v2\n          name: p-a\n          endpoint: unix://" +
              dir_ + "/kms.sock\n");
    options_.provider_config = dir_ + "/provider.yaml";
    options_.encryption_config = dir_ + "/enc.yaml";
    options_.timeout = std::chrono::seconds(20);
    options_.memo = std::make_shared<CommandMemo>(Later);
  }
  std::string Binary(const std::string& name, const std::string& version) {
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
  PreflightOptions options_;
};

TEST_F(PreflightMemoTest, ASecondPreflightOfTheSameFilesRunsOnlyDoctor) {
  const std::string staged = Binary("staged", "0.2.0");
  const std::string installed = Binary("installed", "0.1.0");
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

TEST_F(PreflightMemoTest, AnEditedConfigIsAskedForItsIdentityAgain) {
  const std::string staged = Binary("staged", "0.2.0");
  const std::string installed = Binary("installed", "0.1.0");
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_, installed).ok());
  Asked();
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  Write(options_.provider_config,
        "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
            "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
            "127.0.0.1:0\nopenbao: {instanceId: bao-a}\ntransit:\n  keyIdScope: "
            "{providerName: p-b, clusterId: a, transitMountId: t-a, keyLineageId: l-a}\n");
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_, installed).ok());
  EXPECT_EQ(Asked(), "installed config;staged config;staged doctor;");
}

TEST_F(PreflightMemoTest, AConfigWithoutAnIdentityIsAnAnswerToo) {
  Write(options_.provider_config,
        "configVersion: v1alpha1\nserver:\n  socketPath: " + dir_ +
            "/kms.sock\n  metricsAddress: 127.0.0.1:0\n  healthAddress: "
            "127.0.0.1:0\ntransit:\n  keyIdScope: {providerName: p-a}\n");
  const std::string staged = Binary("staged", "0.2.0");
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
  const std::string staged = Binary("staged", "0.2.0");
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_).ok());
  ASSERT_TRUE(RunPreflight(staged, "0.2.0", options_).ok());
  EXPECT_EQ(Asked(), "staged doctor;staged doctor;staged version;staged version;");
}

}  // namespace
}  // namespace kmsfleet
