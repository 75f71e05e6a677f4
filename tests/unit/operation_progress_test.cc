// `kmsfleetctl node swap` progress: one line per phase change; and the
// `node` commands' flags, help and refusals.
#include "cli/operation_progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "cli/node_commands.h"
#include "cli/usage_exit.h"

namespace kmsfleet {
namespace {

v1::Operation Op(const std::string& phase, const std::string& reason = "",
                 const std::string& message = "") {
  v1::Operation op;
  op.set_operation_id("op-1");
  op.set_phase(phase);
  op.set_reason(reason);
  op.set_message(message);
  return op;
}

std::vector<std::string> Lines(const std::vector<v1::Operation>& updates) {
  OperationProgress progress;
  std::vector<std::string> lines;
  for (const v1::Operation& op : updates) {
    if (auto line = progress.Next(op)) lines.push_back(*line);
  }
  return lines;
}

TEST(OperationProgressTest, AClosingUpdateInTheSamePhasePrintsNothing) {
  // The journal's last update and its close both say Stable.
  EXPECT_EQ(Lines({Op("Staged"), Op("Stopped"), Op("Stable"), Op("Stable")}),
            (std::vector<std::string>{"op-1: Staged", "op-1: Stopped", "op-1: Stable"}));
}

TEST(OperationProgressTest, ARefusalInThePhaseItWasRefusedInIsNotASecondPhaseLine) {
  EXPECT_EQ(Lines({Op("Staged"), Op("Staged", "DOCTOR_FAILED", "doctor: fail")}),
            (std::vector<std::string>{"op-1: Staged"}));
  EXPECT_EQ(OperationRefusal(Op("Staged", "DOCTOR_FAILED", "doctor: fail")),
            "[DOCTOR_FAILED] doctor: fail");
}

TEST(OperationProgressTest, ReturningToAPhaseIsANewLine) {
  EXPECT_EQ(Lines({Op("Verifying"), Op("RollingBack"), Op("Verifying")}).size(), 3u);
}

TEST(OperationProgressTest, NoReasonMeansNoRefusal) {
  EXPECT_EQ(OperationRefusal(Op("Stable")), "");
}

// An older agent ignores SwapRequest.acknowledgements and refuses the
// checkpoint again, with a remedy that names the flag just given.
TEST(IgnoredAcknowledgementTest, SaidOnlyWhenTheWaivedCheckpointRefusalCameBackUnmarked) {
  const std::vector<std::string> acked = {"STATE_CHECKPOINT_NOT_CURRENT"};
  const v1::Operation refused = Op("Preflighted", "STATE_CHECKPOINT_NOT_CURRENT", "behind");
  EXPECT_THAT(IgnoredAcknowledgement(refused, acked),
              ::testing::AllOf(
                  ::testing::HasSubstr("did not take --acknowledge STATE_CHECKPOINT_NOT_CURRENT"),
                  ::testing::HasSubstr("Upgrade kmsfleetd on this node first")));
  EXPECT_EQ(IgnoredAcknowledgement(refused, {}), "") << "not acknowledged: its own remedy holds";
  v1::Operation marked = refused;
  marked.set_checkpoint_acknowledged(true);
  EXPECT_EQ(IgnoredAcknowledgement(marked, acked), "") << "the agent took the waiver";
  EXPECT_EQ(IgnoredAcknowledgement(Op("Stable"), acked), "");
  EXPECT_EQ(IgnoredAcknowledgement(Op("Preflighted", "DOCTOR_FAILED", "x"), acked), "");
}

TEST(CallRefusalTest, TheReasonShowsExactlyOnce) {
  // The Agent service's messages start with the reason already.
  EXPECT_EQ(CallRefusal("STALE_TERM", "[STALE_TERM] node cp-1 refused"),
            "[STALE_TERM] node cp-1 refused");
  EXPECT_EQ(CallRefusal("NOT_LEADER", "cp-2 is not the coordinator"),
            "[NOT_LEADER] cp-2 is not the coordinator");
  EXPECT_EQ(CallRefusal("", "failed to connect to all addresses"),
            "failed to connect to all addresses");
}

// kmsfleetctl's `node` tree, built as its main builds it.
struct NodeCommandLine {
  CLI::App app{"kmsfleetctl"};
  NodeFlags flags;
  CLI::App* node = AddNodeCommands(app, flags);

  // Parses `kmsfleetctl node args...`: nullopt to go on, else the exit code.
  std::optional<int> Parse(std::vector<std::string> args) {
    std::vector<const char*> argv = {"kmsfleetctl", "node"};
    for (const std::string& a : args) argv.push_back(a.c_str());
    return ParseCommandLine(app, static_cast<int>(argv.size()), argv.data());
  }
  // Parses and runs `kmsfleetctl node args...`; returns its exit code and
  // what it printed on stderr.
  std::pair<int, std::string> Run(std::vector<std::string> args) {
    if (std::optional<int> exit = Parse(std::move(args))) return {*exit, ""};
    ::testing::internal::CaptureStderr();
    const int code = RunNodeCommand(*node, flags);
    return {code, ::testing::internal::GetCapturedStderr()};
  }
};

// Found in review: with the agent unreachable, `node` printed gRPC's bare
// "failed to connect ...", without the [AGENT_UNREACHABLE] every other
// command prints.
TEST(NodeCommandTest, AnUnreachableAgentIsAgentUnreachable) {
  const std::string agent = "unix:" + ::testing::TempDir() + "/no-agent.sock";
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"operation", "--id", "op-x"},
        std::vector<std::string>{"preflight", "--version", "0.2.0"},
        std::vector<std::string>{"swap", "--version", "0.2.0"}}) {
    NodeCommandLine line;
    std::vector<std::string> args = {"--agent", agent, "--timeout-ms", "5000"};
    args.insert(args.end(), command.begin(), command.end());
    auto [code, err] = line.Run(args);
    EXPECT_EQ(code, 3) << command[0] << ": " << err;
    EXPECT_THAT(err, ::testing::HasSubstr(": [AGENT_UNREACHABLE] agent " + agent))
        << command[0];
  }
}

TEST(NodeCommandTest, ABadFenceIsAUsageErrorWithItsReason) {
  NodeCommandLine line;
  auto [code, err] = line.Run({"--agent", "unix:" + ::testing::TempDir() + "/no-agent.sock",
                               "swap", "--version", "0.2.0", "--fence", "3/x/cp-1"});
  EXPECT_EQ(code, 2) << err;
  EXPECT_THAT(err, ::testing::HasSubstr("[INVALID_CONFIG] --fence \"3/x/cp-1\""));
}

// Found in review: the node commands print JSON, yet refused `-o json`.
TEST(NodeCommandTest, EverySubcommandTakesOutputJsonAndNothingElse) {
  const std::vector<std::vector<std::string>> commands = {
      {"stage", "--version", "0.2.0", "--source", "/srv/p", "--checksums", "/srv/c"},
      {"preflight", "--version", "0.2.0"},
      {"swap", "--version", "0.2.0"},
      {"rollback", "--of", "op-1"},
      {"operation", "--id", "op-1"}};
  for (const std::vector<std::string>& command : commands) {
    for (const char* flag : {"--output", "-o"}) {
      NodeCommandLine json;
      std::vector<std::string> args = command;
      args.push_back(flag);
      args.push_back("json");
      EXPECT_FALSE(json.Parse(args).has_value()) << command[0] << " " << flag;
      EXPECT_EQ(json.flags.output, "json");
    }
    NodeCommandLine table;
    std::vector<std::string> args = command;
    args.push_back("--output");
    args.push_back("table");
    EXPECT_EQ(table.Parse(args).value_or(0), 2) << command[0];
  }
}

TEST(NodeCommandTest, NodeAndEverySubcommandHelpShowAnExample) {
  NodeCommandLine line;
  EXPECT_THAT(line.node->help(), ::testing::HasSubstr("\n    kmsfleetctl node --agent "));
  for (const char* name : {"stage", "preflight", "swap", "rollback", "operation"}) {
    EXPECT_THAT(line.node->get_subcommand(name)->help(),
                ::testing::HasSubstr("Example:\n  kmsfleetctl node " + std::string(name) + " "))
        << name;
  }
}

}  // namespace
}  // namespace kmsfleet
