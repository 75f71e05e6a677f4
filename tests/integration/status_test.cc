// End to end: fake providers, kmsfleetd agents and kmsfleetctl status on
// loopback (issue: "kmsfleetctl status against three agents shows correct
// parity and names a mismatching node").
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "fleet.h"
#include "kmsfleet/node/key_id_hash.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

constexpr auto kSettle = std::chrono::seconds(20);

boost::json::value StatusJson(const std::vector<TestNode*>& nodes) {
  absl::StatusOr<SubprocessResult> r = Status(nodes);
  if (!r.ok() || r->stdout_text.empty()) return nullptr;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(r->stdout_text, ec);
  return ec ? boost::json::value(nullptr) : v;
}

bool AllReady(const std::vector<TestNode*>& nodes) {
  boost::json::value v = StatusJson(nodes);
  if (!v.is_object()) return false;
  for (const auto& n : v.at("nodes").as_array()) {
    if (!n.as_object().contains("ready") || !n.at("ready").as_bool()) return false;
  }
  return true;
}

class StatusTest : public ::testing::Test {
 protected:
  std::vector<TestNode*> StartFleet(int count) {
    for (int i = 1; i <= count; ++i) {
      nodes_.push_back(std::make_unique<TestNode>(
          dir_, NodeOptions{.name = "cp-" + std::to_string(i)}));
    }
    std::vector<TestNode*> out;
    for (auto& node : nodes_) {
      node->StartProvider();
      node->StartAgent();
      out.push_back(node.get());
    }
    return out;
  }

  // One node, `options`, with its provider and agent started (nodes_[0]
  // in a test that starts only it).
  void StartOne(NodeOptions options) {
    nodes_.push_back(std::make_unique<TestNode>(dir_, std::move(options)));
    nodes_.back()->StartProvider();
    nodes_.back()->StartAgent();
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& node : nodes_) {
        if (node->agent()) std::cerr << node->name() << " agent log:\n" << node->agent()->Output();
        if (node->provider()) std::cerr << node->name() << " provider log:\n" << node->provider()->Output();
      }
    }
  }

  TempDir dir_;
  std::vector<std::unique_ptr<TestNode>> nodes_;
};

TEST_F(StatusTest, ThreeHealthyNodesAreInParity) {
  std::vector<TestNode*> fleet = StartFleet(3);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));

  absl::StatusOr<SubprocessResult> r = Status(fleet);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stdout_text << r->stderr_text;
  boost::json::value v = boost::json::parse(r->stdout_text);
  EXPECT_TRUE(v.at("healthy").as_bool());
  std::string majority(v.at("majority_key_id_hash").as_string());
  EXPECT_EQ(majority.size(), 43u);
  for (const auto& n : v.at("nodes").as_array()) {
    EXPECT_EQ(n.at("parity").as_string(), "match");
    EXPECT_EQ(n.at("key_id_hash").as_string(), majority);
    // The socket's Status key_id hashes to the same value as the metric.
    EXPECT_EQ(n.at("key_id_hash_socket").as_string(), majority);
    EXPECT_EQ(n.at("version").as_string(), "0.1.0-preview.3");
    EXPECT_EQ(n.at("version_source").as_string(), "build_info");
    EXPECT_EQ(n.at("rotation_state").as_string(), "active");
    EXPECT_TRUE(n.at("conditions").as_array().empty()) << n;
  }

  absl::StatusOr<SubprocessResult> table = Status(fleet, "table");
  ASSERT_TRUE(table.ok());
  EXPECT_THAT(table->stdout_text, HasSubstr("key_id hash parity: all 3 nodes report " + majority));
}

TEST_F(StatusTest, ChangedKeyIdOnOneNodeIsDetectedAndNamed) {
  std::vector<TestNode*> fleet = StartFleet(3);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));

  fleet[1]->SetScenario("key_seed: some-other-lineage\n");
  ASSERT_TRUE(WaitUntil(
      [&] {
        boost::json::value v = StatusJson(fleet);
        return v.is_object() &&
               v.at("nodes").as_array()[1].at("parity").as_string() == "MISMATCH";
      },
      kSettle));

  absl::StatusOr<SubprocessResult> r = Status(fleet, "table");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(r->stdout_text, HasSubstr("key_id hash MISMATCH: cp-2 reports"));
  boost::json::value v = StatusJson(fleet);
  EXPECT_FALSE(v.at("healthy").as_bool());
  EXPECT_EQ(v.at("nodes").as_array()[0].at("parity").as_string(), "match");
  EXPECT_EQ(v.at("nodes").as_array()[2].at("parity").as_string(), "match");
}

TEST_F(StatusTest, UnreadyProviderIsReportedWithItsReasons) {
  StartOne({.name = "cp-1",
            .scenario = "key_seed: k\nready: false\n"
                        "ready_reasons: [metadata_read_failed]\n"});
  std::vector<TestNode*> fleet = {nodes_[0].get()};
  boost::json::value node;
  ASSERT_TRUE(WaitUntil(
      [&] {
        boost::json::value v = StatusJson(fleet);
        if (!v.is_object()) return false;
        node = v.at("nodes").as_array()[0];
        return node.as_object().contains("live") && node.at("live").as_bool();
      },
      kSettle));
  EXPECT_FALSE(node.at("ready").as_bool());
  EXPECT_EQ(node.at("ready_reasons").as_array()[0].as_string(), "metadata_read_failed");
  EXPECT_EQ(node.at("conditions").as_array()[0].at("reason").as_string(), "NOT_READY");
  EXPECT_EQ(Status(fleet)->exit_code, 1);
}

TEST_F(StatusTest, ProviderInItsStartUpDelayIsUnreachableThenReady) {
  StartOne({.name = "cp-1", .scenario = "key_seed: k\nstartup_delay_ms: 5000\n"});
  std::vector<TestNode*> fleet = {nodes_[0].get()};
  boost::json::value early;
  ASSERT_TRUE(WaitUntil(
      [&] {
        // Until the agent listens, kmsfleetctl shows an AGENT_UNREACHABLE row.
        early = StatusJson(fleet);
        return early.is_object() &&
               early.at("nodes").as_array()[0].as_object().contains("conditions");
      },
      kSettle));
  std::string reasons = boost::json::serialize(early.at("nodes").as_array()[0].at("conditions"));
  EXPECT_THAT(reasons, HasSubstr("HEALTH_UNREACHABLE"));
  EXPECT_THAT(reasons, HasSubstr("KMS_SOCKET_UNREACHABLE"));
  EXPECT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
}

TEST_F(StatusTest, OlderProviderWithoutBuildInfoIsVersionedByItsBinary) {
  std::string old_binary = dir_.File("bao-kms-provider-preview2");
  StampedProviderCopy(old_binary, "0.1.0-preview.2");
  StartOne({.name = "cp-1", .provider_binary = old_binary});
  std::vector<TestNode*> fleet = {nodes_[0].get()};
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
  boost::json::value node = StatusJson(fleet).at("nodes").as_array()[0];
  EXPECT_EQ(node.at("version").as_string(), "0.1.0-preview.2");
  EXPECT_EQ(node.at("version_source").as_string(), "version_command");
}

TEST_F(StatusTest, UnreachableAgentIsNamedByAddress) {
  std::vector<TestNode*> fleet = StartFleet(1);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
  std::string missing = dir_.File("nobody.sock");
  absl::StatusOr<SubprocessResult> r =
      RunCtl({"status", "--timeout-ms", "2000", "--agent", "unix:" + fleet[0]->agent_socket(),
              "--agent", "unix:" + missing});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(r->stdout_text, HasSubstr("unix:" + missing));
  EXPECT_THAT(r->stdout_text, HasSubstr("AGENT_UNREACHABLE"));
}

// Without a cluster: section nothing can check a fence, so a fenced
// command is refused rather than run as if it had been checked.
TEST_F(StatusTest, AgentWithoutElectionRefusesFencedCommands) {
  std::vector<TestNode*> fleet = StartFleet(1);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
  auto swap_under = [&](const std::string& fence) {
    return RunCtl({"node", "--agent", "unix:" + fleet[0]->agent_socket(), "swap",
                   "--version", "0.2.0", "--fence", fence});
  };
  absl::StatusOr<SubprocessResult> r = swap_under("3/7/cp-1");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_THAT(r->stderr_text, HasSubstr("[NO_ELECTION] node cp-1 runs no election"));
  absl::StatusOr<SubprocessResult> bad = swap_under("3/cp-1");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->exit_code, 2);
  EXPECT_THAT(bad->stderr_text, HasSubstr("--fence \"3/cp-1\""));
}

TEST_F(StatusTest, AgentStopsCleanlyOnSigtermAndRemovesItsSocket) {
  std::vector<TestNode*> fleet = StartFleet(1);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
  fleet[0]->agent()->Signal(SIGTERM);
  std::optional<int> status = fleet[0]->agent()->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
  EXPECT_NE(access(fleet[0]->agent_socket().c_str(), F_OK), 0);
  EXPECT_THAT(fleet[0]->agent()->Output(), HasSubstr("msg=stopped"));
}

TEST_F(StatusTest, AgentServesTheStandardHealthService) {
  std::vector<TestNode*> fleet = StartFleet(1);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(fleet); }, kSettle));
  auto channel = grpc::CreateChannel("unix:" + fleet[0]->agent_socket(),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  // An empty HealthCheckRequest (service "") serialises to no bytes; a
  // ByteBuffer must still hold one (empty) slice to be a valid message.
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = s;
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse{status: SERVING (1)}: field 1, varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// GetNodeState straight from the agent's unix socket.
absl::StatusOr<v1::NodeState> GetNodeState(const std::string& socket) {
  auto stub = v1::Agent::NewStub(
      grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::NodeState state;
  grpc::Status s = stub->GetNodeState(&context, v1::GetNodeStateRequest(), &state);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return state;
}

// The fleet plan's rollback guard needs each node's key-registry facts:
// every GetNodeState reads the registry afresh, and says why when it cannot.
TEST_F(StatusTest, NodeStateReportsTheRegistryFactsOrWhyNot) {
  const std::string registry = dir_.File("cp-1-key-registry.json");
  WriteFile(registry,
            R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1","snapshots":[)"
            R"({"state":"active"},{"state":"removed"}]})");
  StartOne({.name = "cp-1", .extra_config = "executor:\n  registry_path: " + registry + "\n"});
  absl::StatusOr<v1::NodeState> state;
  ASSERT_TRUE(WaitUntil([&] { return (state = GetNodeState(nodes_[0]->agent_socket())).ok(); },
                        kSettle))
      << state.status();
  EXPECT_TRUE(state->registry_known());
  EXPECT_EQ(state->registry_schema_version(), "keyregistry.openbao-kms/v1alpha1");
  EXPECT_EQ(state->registry_removed_records(), 1);
  EXPECT_FALSE(state->has_registry());

  // A directory where the file should be cannot be read.
  std::filesystem::remove(registry);
  std::filesystem::create_directory(registry);
  state = GetNodeState(nodes_[0]->agent_socket());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->registry_known());
  EXPECT_EQ(state->registry().reason(), "REGISTRY_UNREADABLE");
  EXPECT_THAT(state->registry().message(), HasSubstr(registry));

  std::filesystem::remove(registry);
  WriteFile(registry, "{not json");
  state = GetNodeState(nodes_[0]->agent_socket());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->registry_known());
  EXPECT_EQ(state->registry().reason(), "MALFORMED_REGISTRY");

  // No registry yet is a fact too: known, empty.
  std::filesystem::remove(registry);
  state = GetNodeState(nodes_[0]->agent_socket());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->registry_known());
  EXPECT_EQ(state->registry_schema_version(), "");
  EXPECT_EQ(state->registry_removed_records(), 0);
}

// The coordinator gives each node's long calls what that node's own
// config allows: every GetNodeState says how long.
TEST_F(StatusTest, NodeStateReportsHowLongTheCoordinatorsCallsMayTake) {
  StartOne({.name = "cp-1",
            .extra_config = "executor:\n  doctor_timeout_ms: 250000\n"
                            "  download_timeout_ms: 900000\n"});
  absl::StatusOr<v1::NodeState> state;
  ASSERT_TRUE(WaitUntil([&] { return (state = GetNodeState(nodes_[0]->agent_socket())).ok(); },
                        kSettle))
      << state.status();
  EXPECT_EQ(state->call_bounds().preflight_ms(), 2 * 250000 + 60000);
  EXPECT_EQ(state->call_bounds().stage_ms(), 900000 + 60000);
}

class CheckConfigTest : public ::testing::Test {
 protected:
  absl::StatusOr<SubprocessResult> CheckConfig(const std::string& yaml) {
    std::string path = dir_.File("config.yaml");
    WriteFile(path, yaml);
    return RunSubprocess({KMSFLEETD_PATH, "--config", path, "--check-config"}, {});
  }
  TempDir dir_;
};

TEST_F(CheckConfigTest, ValidConfigPasses) {
  absl::StatusOr<SubprocessResult> r = CheckConfig("node: cp-1\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 0) << r->stderr_text;
  EXPECT_THAT(r->stdout_text, HasSubstr("ok (node cp-1)"));
}

TEST_F(CheckConfigTest, UnknownKeyFailsNamingFileLineAndKey) {
  absl::StatusOr<SubprocessResult> r =
      CheckConfig("node: cp-1\nlisten:\n  tpc: 127.0.0.1:7443\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text,
              HasSubstr(dir_.File("config.yaml") + ":3: listen.tpc: unknown key"));
}

TEST_F(CheckConfigTest, AgentWithBadConfigDoesNotStart) {
  std::string path = dir_.File("config.yaml");
  WriteFile(path, "node: cp-1\nlisten:\n  unix: " + dir_.File("a.sock") +
                      "\nprovider:\n  kms_timeout_ms: -5\n");
  absl::StatusOr<SubprocessResult> r = RunSubprocess({KMSFLEETD_PATH, "--config", path}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 2);
  EXPECT_THAT(r->stderr_text, HasSubstr("provider.kms_timeout_ms"));
  EXPECT_NE(access(dir_.File("a.sock").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace kmsfleet::testing
