// The local side of the authenticated Agent API (issue 8 §3): the unix
// socket's mode and group, the standalone rule for agents without a
// cluster, plain TCP refused at config load, and kmsfleetctl refusing to
// dial a TCP agent without TLS.
#include <gmock/gmock.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <cctype>
#include <sstream>

#include "fleet.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

constexpr auto kStart = std::chrono::seconds(15);

class AgentLocalTest : public ::testing::Test {
 protected:
  TestNode* StartAgent(const std::string& extra_config) {
    node_ = std::make_unique<TestNode>(dir_,
                                       NodeOptions{.name = "cp-1", .extra_config = extra_config});
    node_->StartAgent();
    return node_.get();
  }
  // With `listen` as the agent's whole `listen:` section.
  TestNode* StartAgentListening(const std::string& listen) {
    node_ = std::make_unique<TestNode>(dir_,
                                       NodeOptions{.name = "cp-1", .listen_config = listen});
    node_->StartAgent();
    return node_.get();
  }
  bool Listening() {
    return WaitUntil([&] { return PathExists(node_->agent_socket()); }, kStart);
  }
  absl::StatusOr<SubprocessResult> Swap() {
    return RunCtl({"node", "--agent", "unix:" + node_->agent_socket(), "--timeout-ms",
                   "10000", "swap", "--version", "0.2.0"});
  }
  void TearDown() override {
    if (HasFailure() && node_ && node_->agent()) {
      std::cerr << "agent log:\n" << node_->agent()->Output();
    }
  }

  TempDir dir_;
  std::unique_ptr<TestNode> node_;
};

TEST_F(AgentLocalTest, AgentWithoutClusterRefusesSwapsUnlessStandalone) {
  StartAgent("");
  ASSERT_TRUE(Listening());
  absl::StatusOr<SubprocessResult> r = Swap();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->stdout_text;
  EXPECT_THAT(r->stderr_text, HasSubstr("[STANDALONE_NOT_CONFIGURED]"));
  absl::StatusOr<SubprocessResult> status = Status({node_.get()}, "table");
  ASSERT_TRUE(status.ok());
  EXPECT_THAT(status->stdout_text, HasSubstr("cp-1  refusing"));
}

TEST_F(AgentLocalTest, StandaloneAgentAdmitsAnUnfencedSwap) {
  StartAgent("standalone: true\n");
  ASSERT_TRUE(Listening());
  absl::StatusOr<SubprocessResult> r = Swap();
  ASSERT_TRUE(r.ok()) << r.status();
  // Past the fence: nothing is staged, so the executor says so.
  EXPECT_THAT(r->stderr_text, HasSubstr("[NOT_STAGED]"));
  absl::StatusOr<SubprocessResult> status = Status({node_.get()}, "json");
  ASSERT_TRUE(status.ok());
  EXPECT_THAT(status->stdout_text, HasSubstr("\"agent_mode\":\"standalone\""));
}

TEST_F(AgentLocalTest, SocketHasTheConfiguredModeAndGroup) {
  struct group* daemon_group = getgrnam("daemon");
  ASSERT_NE(daemon_group, nullptr);
  gid_t gid = daemon_group->gr_gid;
  StartAgentListening("listen:\n  unix: " + dir_.File("cp-1/agent.sock") +
             "\n  unix_mode: \"0600\"\n  unix_group: daemon\n");
  ASSERT_TRUE(Listening());
  // The socket accepts from its bind, under a umask that leaves it
  // owner-only; its mode and group are set right after (agent_server.cc),
  // so a fast check can land in between.
  struct stat st {};
  EXPECT_TRUE(WaitUntil(
      [&] {
        return lstat(node_->agent_socket().c_str(), &st) == 0 && (st.st_mode & 0777) == 0600 &&
               st.st_gid == gid;
      },
      std::chrono::seconds(5)));
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_gid, gid);
}

// Found in review: systemd's RuntimeDirectory= is root:root 0750, so the
// group's members could not reach the socket inside it. A private
// directory of the agent's gets the group; one others may enter does not.
TEST_F(AgentLocalTest, TheSocketsGroupCanReachItThroughTheAgentsOwnDirectory) {
  struct group* daemon_group = getgrnam("daemon");
  ASSERT_NE(daemon_group, nullptr);
  const std::string run = dir_.File("run-kmsfleet");
  ASSERT_EQ(mkdir(run.c_str(), 0750), 0);
  ASSERT_EQ(chmod(run.c_str(), 0750), 0);
  StartAgentListening("listen:\n  unix: " + run + "/agent.sock\n  unix_group: daemon\n");
  ASSERT_TRUE(WaitUntil([&] { return PathExists(run + "/agent.sock"); }, kStart))
      << node_->agent()->Output();
  // The socket exists from its bind; its group, and its directory's, are
  // set right after (as in the test above).
  struct stat st {};
  WaitUntil([&] { return stat(run.c_str(), &st) == 0 && st.st_gid == daemon_group->gr_gid; },
            std::chrono::seconds(5));
  ASSERT_EQ(stat(run.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, daemon_group->gr_gid);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
  ASSERT_EQ(stat(dir_.path().c_str(), &st), 0);
  EXPECT_NE(st.st_gid, daemon_group->gr_gid) << "not the directories above it";
}

TEST_F(AgentLocalTest, UnknownSocketGroupStopsTheAgent) {
  StartAgentListening("listen:\n  unix: " + dir_.File("cp-1/agent.sock") +
             "\n  unix_group: no-such-group-kmsfleet\n");
  std::optional<int> exit = node_->agent()->Wait(kStart);
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(*exit, 1);
  EXPECT_THAT(node_->agent()->Output(), HasSubstr("no-such-group-kmsfleet does not exist"));
  EXPECT_FALSE(PathExists(node_->agent_socket()));
}

TEST_F(AgentLocalTest, InsecureLoopbackTcpServesOnlyWhenAskedForByName) {
  uint16_t port = FreeLoopbackPort();
  std::string agent = "127.0.0.1:" + std::to_string(port);
  StartAgentListening("listen:\n  unix: " + dir_.File("cp-1/agent.sock") + "\n  tcp: " + agent +
             "\n  insecure: true\n");
  ASSERT_TRUE(Listening());
  absl::StatusOr<SubprocessResult> r = RunCtl({"status", "--agent", agent, "--insecure"});
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->stdout_text, HasSubstr("cp-1  refusing"));
  EXPECT_THAT(node_->agent()->Output(), HasSubstr("plain TCP (listen.insecure: true)"));
  struct stat st {};
  ASSERT_EQ(lstat(node_->agent_socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u) << "the default socket mode";
}

TEST_F(AgentLocalTest, InsecureTcpOnANonLoopbackAddressIsRefusedAtLoad) {
  std::string path = dir_.File("config.yaml");
  WriteFile(path, "node: cp-1\nlisten:\n  tcp: 0.0.0.0:7443\n  insecure: true\n");
  absl::StatusOr<SubprocessResult> r =
      RunSubprocess({KMSFLEETD_PATH, "--config", path, "--check-config"}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr(path + ":3: listen.tcp: insecure plain TCP is "
                                               "allowed only on a loopback address"));
}

TEST_F(AgentLocalTest, KmsfleetctlNeverDialsATcpAgentInPlainText) {
  uint16_t port = FreeLoopbackPort();
  std::string agent = "127.0.0.1:" + std::to_string(port);
  absl::StatusOr<SubprocessResult> r = RunCtl({"status", "--agent", agent});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr("--ca is missing"));

  r = RunCtl({"leader", "--agent", agent, "--cert", "/op.pem"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr("--ca is missing"));

  r = RunCtl({"node", "--agent", agent, "--ca", "/ca.pem", "swap", "--version", "0.2.0"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr("--cert is missing"));

  r = RunCtl({"plan", "commit", "--agent", agent, "--in-flight", "cp-1", "--ca", "/ca.pem",
              "--cert", "/op.pem"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr("--key is missing"));
}

// Found in review: a command line CLI11 refused exited 105 to 114 (a
// missing --to 106, an unknown flag 109), not the documented 2.
TEST(UsageExitTest, ACommandLineRefusedExitsTwoAndHelpOrVersionZero) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> refused = {
      {{KMSFLEETCTL_PATH, "upgrade"}, "--to"},
      {{KMSFLEETCTL_PATH, "status", "--no-such-flag"}, "--no-such-flag"},
      {{KMSFLEETCTL_PATH, "no-such-command"}, "A subcommand is required"},
      {{KMSFLEETD_PATH, "--no-such-flag"}, "--no-such-flag"}};
  for (const auto& [args, named] : refused) {
    absl::StatusOr<SubprocessResult> r = RunSubprocess(args, {});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exit_code, 2) << args[1] << ": " << r->stderr_text;
    EXPECT_THAT(r->stderr_text, HasSubstr(named)) << args[1];
  }
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{KMSFLEETCTL_PATH, "--help"},
        std::vector<std::string>{KMSFLEETCTL_PATH, "upgrade", "--help"},
        std::vector<std::string>{KMSFLEETCTL_PATH, "--version"},
        std::vector<std::string>{KMSFLEETD_PATH, "--help"}}) {
    absl::StatusOr<SubprocessResult> r = RunSubprocess(args, {});
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->exit_code, 0) << args[1] << ": " << r->stderr_text;
    EXPECT_FALSE(r->stdout_text.empty()) << args[1];
  }
}

// The subcommands `kmsfleetctl WORDS... --help` lists, as
// tests/deploy/check_completion.sh reads them (the list ends at a blank
// line, before any example).
std::vector<std::string> SubcommandsOf(const std::vector<std::string>& words) {
  std::vector<std::string> args = words;
  args.push_back("--help");
  absl::StatusOr<SubprocessResult> r = RunCtl(args);
  if (!r.ok()) return {};
  std::vector<std::string> names;
  std::istringstream lines(r->stdout_text);
  bool listing = false;
  for (std::string line; std::getline(lines, line);) {
    if (line == "Subcommands:") {
      listing = true;
    } else if (listing && line.empty()) {
      break;
    } else if (listing && line.size() > 2 && line.starts_with("  ") &&
               std::islower(static_cast<unsigned char>(line[2]))) {
      names.push_back(line.substr(2, line.find(' ', 2) - 2));
    }
  }
  return names;
}

// Found in review: status, leader, node and its subcommands, plan, plan
// commit and health had no example in --help (the issue: "every command
// has --help with an example").
TEST(KmsfleetctlHelpTest, EveryCommandsHelpHasAnExampleOfItself) {
  std::vector<std::vector<std::string>> commands;
  for (const std::string& name : SubcommandsOf({})) {
    commands.push_back({name});
    for (const std::string& sub : SubcommandsOf({name})) commands.push_back({name, sub});
  }
  ASSERT_GT(commands.size(), 15u);
  for (const std::vector<std::string>& words : commands) {
    std::string invocation = "kmsfleetctl";
    for (const std::string& w : words) invocation += " " + w;
    std::vector<std::string> args = words;
    args.push_back("--help");
    absl::StatusOr<SubprocessResult> r = RunCtl(args);
    ASSERT_TRUE(r.ok()) << invocation << ": " << r.status();
    EXPECT_EQ(r->exit_code, 0) << invocation;
    const std::string& help = r->stdout_text;
    const size_t example = help.find("Example");
    ASSERT_NE(example, std::string::npos) << invocation << " --help has no example";
    // The invocation as a whole: "kmsfleetctl plan" is not "... plan commit".
    bool shown = false;
    for (size_t at = help.find(invocation, example); at != std::string::npos && !shown;
         at = help.find(invocation, at + 1)) {
      const size_t end = at + invocation.size();
      shown = end == help.size() || help[end] == ' ' || help[end] == '\n';
    }
    EXPECT_TRUE(shown) << invocation << " --help shows no example of itself:\n" << help;
  }
}

// Found in review: `plan --agent X commit` went to the default unix socket,
// and `node` printed gRPC's bare "failed to connect" with no reason code.
TEST(KmsfleetctlUnreachableTest, EveryCommandNamesTheAgentItAskedAndItsReason) {
  TempDir dir;
  const std::string agent = "unix:" + dir.File("no-agent.sock");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"plan", "--agent", agent, "commit", "--in-flight", "cp-1"},
        std::vector<std::string>{"plan", "commit", "--agent", agent, "--in-flight", "cp-1"},
        std::vector<std::string>{"node", "--agent", agent, "operation", "--id", "op-x"},
        std::vector<std::string>{"node", "--agent", agent, "preflight", "--version", "0.2.0"}}) {
    absl::StatusOr<SubprocessResult> r = RunCtl(args);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 3) << args[0] << " " << args[1] << ": " << r->stderr_text;
    EXPECT_THAT(r->stderr_text, HasSubstr("[AGENT_UNREACHABLE] agent " + agent))
        << args[0] << " " << args[1];
  }
  // Given on both sides of `commit`, the two must agree.
  absl::StatusOr<SubprocessResult> r = RunCtl({"plan", "--agent", agent, "commit", "--agent",
                                               "unix:/run/kmsfleet/agent.sock", "--in-flight",
                                               "cp-1"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 2) << r->stderr_text;
  EXPECT_THAT(r->stderr_text, HasSubstr("[INVALID_CONFIG] --agent is given before `commit`"));
}

// `kmsfleetctl health` is the static pod's liveness and readiness probe
// (static-pod/kmsfleetd.yaml): it must pass for a serving agent and fail
// for one that is hung (stopped) or gone, within its deadline.
// SIGHUP's default action ended the agent at once, mid-swap if one ran,
// and systemd's Restart=on-failure counts that as a clean exit.
TEST_F(AgentLocalTest, SighupDoesNotStopTheAgent) {
  StartAgent("");
  ASSERT_TRUE(Listening());
  node_->agent()->Signal(SIGHUP);
  EXPECT_TRUE(WaitUntil([&] { return node_->agent()->Output().find("SIGHUP ignored") !=
                                     std::string::npos; },
                        kStart));
  absl::StatusOr<SubprocessResult> r =
      RunCtl({"health", "--agent", "unix:" + node_->agent_socket(), "--timeout-ms", "3000"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_text << node_->agent()->Output();
}

TEST_F(AgentLocalTest, HealthProbePassesOnlyWhileTheAgentServes) {
  StartAgent("");
  ASSERT_TRUE(Listening());
  std::vector<std::string> probe = {"health", "--agent", "unix:" + node_->agent_socket(),
                                    "--timeout-ms", "1000"};
  absl::StatusOr<SubprocessResult> r = RunCtl(probe);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_text;
  EXPECT_THAT(r->stdout_text, HasSubstr("agent.sock: SERVING"));

  node_->agent()->Signal(SIGSTOP);
  r = RunCtl(probe);
  node_->agent()->Signal(SIGCONT);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << "a hung agent must fail the probe";
  EXPECT_THAT(r->stderr_text, HasSubstr("[AGENT_UNREACHABLE]"));

  node_->agent()->Signal(SIGKILL);
  ASSERT_TRUE(node_->agent()->Wait(kStart).has_value());
  r = RunCtl(probe);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << "the dead agent's socket file is left behind";
  EXPECT_THAT(r->stderr_text, HasSubstr("[AGENT_UNREACHABLE]"));
}

}  // namespace
}  // namespace kmsfleet::testing
