// kmsfleetd's /metrics (issue 11): a running agent is scraped and the
// exposition is checked by Prometheus's own promtool.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "fleet.h"
#include "kmsfleet/node/subprocess.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

// The port the agent logged for its metrics listener, or 0.
int MetricsPort(const std::string& log) {
  std::smatch m;
  static const std::regex kPort("msg=\"metrics serving\".*metrics_port=([0-9]+)");
  return std::regex_search(log, m, kPort) ? std::stoi(m[1]) : 0;
}

std::string Shell(const std::string& script) {
  absl::StatusOr<SubprocessResult> r = RunSubprocess({"/bin/sh", "-c", script}, {});
  if (!r.ok()) return "";
  return r->exit_code == 0 ? r->stdout_text : "exit " + std::to_string(r->exit_code) +
                                                  ": " + r->stdout_text + r->stderr_text;
}

class MetricsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure() && node_ && node_->agent()) {
      std::cerr << "agent log:\n" << node_->agent()->Output();
    }
  }
  // Starts cp-1's provider and an agent serving /metrics on a free port;
  // returns its URL, or "" when the agent never said where it serves.
  std::string StartAgentWithMetrics() {
    node_ = std::make_unique<TestNode>(
        dir_, NodeOptions{.name = "cp-1", .extra_config = "metrics:\n  listen: 127.0.0.1:0\n"});
    node_->StartProvider();
    node_->StartAgent();
    int port = 0;
    if (!WaitUntil([&] { return (port = MetricsPort(node_->agent()->Output())) > 0; },
                   std::chrono::seconds(20))) {
      return "";
    }
    return "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  }

  TempDir dir_;
  std::unique_ptr<TestNode> node_;
};

TEST_F(MetricsTest, AScrapeOfARunningAgentPassesPromtool) {
  const std::string url = StartAgentWithMetrics();
  ASSERT_FALSE(url.empty());
  std::string body;
  ASSERT_TRUE(WaitUntil(
      [&] {
        body = Shell("curl -sf " + url);
        return body.find("kmsfleet_node_ready{node=\"cp-1\"} 1") != std::string::npos;
      },
      std::chrono::seconds(20)))
      << body;
  EXPECT_THAT(body, HasSubstr("kmsfleet_provider_version_info{node=\"cp-1\",version=\""));
  EXPECT_THAT(body, HasSubstr("kmsfleet_provider_key_id_hash_info{node=\"cp-1\",hash=\""));
  // A standalone agent takes part in no election: no election series.
  EXPECT_THAT(body, ::testing::Not(HasSubstr("kmsfleet_election_term")));
  std::string file = dir_.File("scrape.prom");
  std::ofstream(file) << body;
  EXPECT_EQ(Shell("promtool check metrics < " + file + " 2>&1; echo promtool=$?"),
            "promtool=0\n");
}

// kmsfleet_guard_refusals_total: a swap this agent refuses (no cluster:
// section and not standalone) is counted under its reason code.
TEST_F(MetricsTest, ARefusedSwapIsCountedByItsReason) {
  const std::string url = StartAgentWithMetrics();
  ASSERT_FALSE(url.empty());
  const std::string counted =
      "kmsfleet_guard_refusals_total{reason=\"STANDALONE_NOT_CONFIGURED\"} ";
  EXPECT_THAT(Shell("curl -sf " + url), ::testing::Not(HasSubstr(counted)));
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<SubprocessResult> r =
        RunCtl({"node", "--agent", "unix:" + node_->agent_socket(), "--timeout-ms", "10000",
                "swap", "--version", "0.2.0"});
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_THAT(r->stderr_text, HasSubstr("[STANDALONE_NOT_CONFIGURED]"));
  }
  const std::string body = Shell("curl -sf " + url);
  EXPECT_THAT(body, HasSubstr(counted + "2"));
  std::string file = dir_.File("scrape.prom");
  std::ofstream(file) << body;
  EXPECT_EQ(Shell("promtool check metrics < " + file + " 2>&1; echo promtool=$?"),
            "promtool=0\n");
}

// A kube-apiserver restart that was admitted and failed is the restart's
// outcome, not a guard's refusal. Found in review: it was counted as one,
// and again for each retry of the same restart_id.
TEST_F(MetricsTest, AFailedApiServerRestartIsNotCountedAsARefusal) {
  node_ = std::make_unique<TestNode>(
      dir_, NodeOptions{.name = "cp-1",
                        .extra_config = "metrics:\n  listen: 127.0.0.1:0\nstandalone: true\n"
                                        "apiserver:\n  restart: command:/bin/false\n"
                                        "  readyz_url: http://127.0.0.1:1/readyz\n"});
  node_->StartProvider();
  node_->StartAgent();
  int port = 0;
  ASSERT_TRUE(WaitUntil([&] { return (port = MetricsPort(node_->agent()->Output())) > 0; },
                        std::chrono::seconds(20)));
  auto stub = v1::Agent::NewStub(
      grpc::CreateChannel("unix:" + node_->agent_socket(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::RestartApiServerRequest request;
    request.set_restart_id("restart-1");
    v1::RestartApiServerResponse response;
    grpc::Status s = stub->RestartApiServer(&context, request, &response);
    ASSERT_FALSE(s.ok());
    ASSERT_THAT(s.error_message(), HasSubstr("/bin/false"));
  }
  const std::string body = Shell("curl -sf http://127.0.0.1:" + std::to_string(port) + "/metrics");
  EXPECT_THAT(body, HasSubstr("kmsfleet_node_ready"));
  EXPECT_THAT(body, ::testing::Not(HasSubstr("APISERVER_RESTART_FAILED")));
}

TEST_F(MetricsTest, AMetricsAddressThatCannotBeBoundStopsTheAgentNamingTheKey) {
  HeldPort taken;  // an address that parses but cannot be bound
  ASSERT_NE(taken.port(), 0);
  node_ = std::make_unique<TestNode>(
      dir_, NodeOptions{.name = "cp-1",
                        .extra_config = "metrics:\n  listen: 127.0.0.1:" +
                                        std::to_string(taken.port()) + "\n"});
  node_->StartProvider();
  node_->StartAgent();
  ASSERT_TRUE(WaitUntil(
      [&] { return node_->agent()->Output().find("metrics.listen") != std::string::npos; },
      std::chrono::seconds(20)));
  EXPECT_THAT(node_->agent()->Output(), HasSubstr("cannot serve /metrics"));
}

}  // namespace
}  // namespace kmsfleet::testing
