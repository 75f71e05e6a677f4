// `kmsfleetctl node swap|rollback` against an agent served in-process: the
// operation id a start call carries, and what a start that gets no answer
// exits with.
#include "cli/node_commands.h"

#include <grpcpp/grpcpp.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli/usage_exit.h"
#include "loopback_server.h"
#include "watch_ending_agent.h"
#include "kmsfleet/v1/agent.grpc.pb.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;

// Records the operation id of every Swap and Rollback. `answer`: reply at
// once with a Stable, closed operation under that id; otherwise say
// nothing until the caller gives up, as an agent stuck on a slow disk.
class FakeAgent final : public v1::Agent::Service {
 public:
  explicit FakeAgent(bool answer) : answer_(answer) {}

  grpc::Status Swap(grpc::ServerContext* ctx, const v1::SwapRequest* req,
                    v1::Operation* op) override {
    return Start(ctx, req->operation_id(), op);
  }
  grpc::Status Rollback(grpc::ServerContext* ctx, const v1::RollbackRequest* req,
                        v1::Operation* op) override {
    return Start(ctx, req->operation_id(), op);
  }

  std::vector<std::string> ids() {
    std::lock_guard<std::mutex> lock(mu_);
    return ids_;
  }

 private:
  grpc::Status Start(grpc::ServerContext* ctx, const std::string& id, v1::Operation* op) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ids_.push_back(id);
    }
    if (!answer_) {
      while (!ctx->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "the caller left");
    }
    op->set_operation_id(id);
    op->set_phase("Stable");
    op->set_done(true);
    return grpc::Status::OK;
  }

  const bool answer_;
  std::mutex mu_;
  std::vector<std::string> ids_;
};

struct NodeOutcome {
  int exit_code = -1;
  std::string out, err;
};

// Runs `kmsfleetctl node --agent (agent) args...` in-process.
NodeOutcome RunNode(grpc::Service& agent, std::vector<std::string> args) {
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(agent, port);
  if (server == nullptr) return {};

  CLI::App app{"kmsfleetctl"};
  NodeFlags flags;
  CLI::App* node = AddNodeCommands(app, flags);
  args.insert(args.begin(), {"kmsfleetctl", "node", "--agent",
                             "127.0.0.1:" + std::to_string(port), "--insecure"});
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  NodeOutcome r;
  if (std::optional<int> usage =
          ParseCommandLine(app, static_cast<int>(argv.size()), argv.data())) {
    ADD_FAILURE() << "usage error " << *usage;
    return r;
  }
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  r.exit_code = RunNodeCommand(*node, flags);
  std::cout.flush();
  r.err = ::testing::internal::GetCapturedStderr();
  r.out = ::testing::internal::GetCapturedStdout();
  server->Shutdown(std::chrono::system_clock::now());
  return r;
}

TEST(NodeCommandsTest, ASwapWithoutAnIdCarriesOneChosenByTheCommand) {
  FakeAgent agent(/*answer=*/true);
  NodeOutcome first = RunNode(agent, {"swap", "--version", "0.2.0"});
  NodeOutcome second = RunNode(agent, {"swap", "--version", "0.2.0"});
  EXPECT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(second.exit_code, 0) << second.err;
  std::vector<std::string> ids = agent.ids();
  ASSERT_THAT(ids, SizeIs(2));
  // The agent's own format, which CheckOperationId accepts.
  EXPECT_THAT(ids[0], MatchesRegex("op-[0-9]+-[0-9]+"));
  EXPECT_NE(ids[0], ids[1]);
}

TEST(NodeCommandsTest, AGivenIdIsSentAsItIs) {
  FakeAgent agent(/*answer=*/true);
  NodeOutcome r =
      RunNode(agent, {"rollback", "--of", "op-1", "--operation-id", "rollback-cp2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(agent.ids(), ::testing::ElementsAre("rollback-cp2"));
}

// Found in review: a start call that timed out exited 3, "ask again", and
// named no operation, though the agent may have started one; a script
// asking again would start a second under a new id.
TEST(NodeCommandsTest, AnUnansweredStartSaysTheOperationMayHaveStarted) {
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"swap", "--version", "0.2.0"},
        std::vector<std::string>{"rollback", "--of", "op-1"}}) {
    FakeAgent agent(/*answer=*/false);
    // Long enough for the in-process server to take the call on a loaded
    // machine: the test needs the id it received.
    std::vector<std::string> args = {"--timeout-ms", "1500"};
    args.insert(args.end(), command.begin(), command.end());
    NodeOutcome r = RunNode(agent, args);
    ASSERT_THAT(agent.ids(), SizeIs(1));
    const std::string id = agent.ids()[0];
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_THAT(r.err, HasSubstr("[AGENT_UNREACHABLE]"));
    EXPECT_THAT(r.err, HasSubstr("operation " + id + " may have started: see it with "
                                 "kmsfleetctl node operation --id " + id));
    EXPECT_THAT(r.err, HasSubstr("--operation-id " + id + " starts nothing new"));
    // stdout holds the operation, as when a wait ends: its id, no phase.
    EXPECT_THAT(r.out, HasSubstr("\"operation_id\": \"" + id + "\""));
    EXPECT_THAT(r.out, Not(HasSubstr("phase")));
  }
}

// Found in review: a watch cut after the start (a TCP blip, the agent
// shutting down while the swap verifies) exited 3, "ask again", with
// nothing on stdout, though the operation goes on; a script asking again
// without the id would start a second.
TEST(NodeCommandsTest, AWatchCutAfterTheStartSaysTheOperationGoesOn) {
  WatchEndingAgent cutting("Verifying",
                           grpc::Status(grpc::StatusCode::UNAVAILABLE, "kmsfleetd is stopping"));
  NodeOutcome r = RunNode(cutting, {"swap", "--version", "0.2.0", "--operation-id", "op-7"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("watch op-7: [AGENT_UNREACHABLE]"));
  EXPECT_THAT(r.err, HasSubstr("op-7 may still be running (phase Verifying): "
                               "follow it with: kmsfleetctl node operation --id op-7"));
  EXPECT_THAT(r.out, HasSubstr("\"phase\": \"Verifying\""));
}

// An agent that refuses the watch answered: that is a refusal (exit 1),
// not a cut watch (found in review of the exit 4 above).
TEST(NodeCommandsTest, AWatchTheAgentRefusesIsARefusal) {
  v1::ErrorInfo info;
  info.set_reason("OPERATOR_ONLY");
  WatchEndingAgent refusing("", grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                             "operators only", info.SerializeAsString()));
  NodeOutcome r = RunNode(refusing, {"swap", "--version", "0.2.0", "--operation-id", "op-8"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("watch op-8: [OPERATOR_ONLY] operators only"));
  EXPECT_THAT(r.err, Not(HasSubstr("may still be running")));
}

// Found in review: --timeout-ms, documented as the whole command's bound,
// was each call's: a start that took 2 s, then a watch, ran 2 s past it.
TEST(NodeCommandsTest, TheTimeoutBoundsTheWholeCommand) {
  class SlowAgent final : public v1::Agent::Service {
    grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest* req,
                      v1::Operation* op) override {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      op->set_operation_id(req->operation_id());
      op->set_phase("Idle");
      return grpc::Status::OK;
    }
    grpc::Status WatchOperation(grpc::ServerContext* ctx, const v1::GetOperationRequest*,
                                grpc::ServerWriter<v1::Operation>*) override {
      while (!ctx->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "the caller left");
    }
  } slow;
  const auto start = std::chrono::steady_clock::now();
  NodeOutcome r = RunNode(slow, {"--timeout-ms", "3000", "swap", "--version", "0.2.0"});
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the wait ended after --timeout-ms 3000"));
  // Each call with 3 s of its own would end 5 s after the start.
  EXPECT_LT(took, std::chrono::milliseconds(4500));
}

// No agent listening: nothing can have started, so exit 3 ("ask again"),
// naming the id under which asking again is safe anyway.
TEST(NodeCommandsTest, ARefusedConnectionIsAskAgainUnderTheSameId) {
  int port = 0;
  {
    // A port that was just free: bound, then closed again.
    FakeAgent unused(/*answer=*/true);
    std::unique_ptr<grpc::Server> gone = ServeOnLoopback(unused, port);
    ASSERT_NE(gone, nullptr);
    gone->Shutdown(std::chrono::system_clock::now());
  }
  CLI::App app{"kmsfleetctl"};
  NodeFlags flags;
  CLI::App* node = AddNodeCommands(app, flags);
  const std::string agent = "127.0.0.1:" + std::to_string(port);
  const char* argv[] = {"kmsfleetctl", "node", "--agent",        agent.c_str(), "--insecure",
                        "--timeout-ms", "5000", "swap", "--version", "0.2.0",
                        "--operation-id", "op-mine"};
  ASSERT_FALSE(ParseCommandLine(app, 12, argv));
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = RunNodeCommand(*node, flags);
  std::cout.flush();
  const std::string err = ::testing::internal::GetCapturedStderr();
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(code, 3) << err;
  EXPECT_THAT(err, HasSubstr("[AGENT_UNREACHABLE]"));
  EXPECT_THAT(err, HasSubstr("ask again with --operation-id op-mine"));
  EXPECT_THAT(err, Not(HasSubstr("may have started")));
  EXPECT_EQ(out, "");
}

// An answer, even a refusal, is not silence: no guess about a start.
TEST(NodeCommandsTest, ARefusedStartNamesNoOperation) {
  class RefusingAgent final : public v1::Agent::Service {
    grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest*, v1::Operation*) override {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no swaps here");
    }
  } refusing;
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(refusing, port);
  ASSERT_NE(server, nullptr);
  CLI::App app{"kmsfleetctl"};
  NodeFlags flags;
  CLI::App* node = AddNodeCommands(app, flags);
  const std::string agent = "127.0.0.1:" + std::to_string(port);
  const char* argv[] = {"kmsfleetctl", "node", "--agent", agent.c_str(), "--insecure",
                        "swap",        "--version", "0.2.0"};
  ASSERT_FALSE(ParseCommandLine(app, 8, argv));
  ::testing::internal::CaptureStderr();
  const int code = RunNodeCommand(*node, flags);
  const std::string err = ::testing::internal::GetCapturedStderr();
  server->Shutdown(std::chrono::system_clock::now());
  EXPECT_EQ(code, 3) << err;
  EXPECT_THAT(err, HasSubstr("[AGENT_CALL_FAILED]"));
  EXPECT_THAT(err, Not(HasSubstr("may have started")));
}

}  // namespace
}  // namespace kmsfleet
