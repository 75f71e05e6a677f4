// `kmsfleetctl status`: querying agents, parity across rows, rendering.
#include "cli/fleet_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

#include <boost/json.hpp>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/v1/agent_mock.grpc.pb.h"

namespace kmsfleet {
namespace {

using ::testing::_;
using ::testing::DoAll;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Return;
using ::testing::SetArgPointee;

const std::string kHashA = "uKq0-dTbTrV9r_gC3wJvhVSy9Hq2bb7nn2uR6Sx1ZkE";
const std::string kHashB = "Zx9_3PmYtV0wH2q-EaR1cBnLrS4uJ8dKfG7iO6hQ5yM";

StatusRow Row(const std::string& node, const std::string& hash,
              bool ready = true) {
  v1::NodeState s;
  s.set_node(node);
  s.set_provider_version("0.1.0-preview.3");
  s.set_live(true);
  s.set_ready(ready);
  s.set_key_id_hash_metric(hash);
  s.set_rotation_state("active");
  StatusRow row;
  row.agent = "unix:/run/" + node + ".sock";
  row.state = s;
  return row;
}

TEST(FleetStatusTest, QueryAgentReturnsTheNodeState) {
  v1::MockAgentStub stub;
  v1::NodeState state;
  state.set_node("cp-1");
  EXPECT_CALL(stub, GetNodeState(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(state), Return(grpc::Status::OK)));
  StatusRow row =
      QueryAgent(stub, "unix:/a.sock", std::chrono::milliseconds(100));
  ASSERT_TRUE(row.state.ok());
  EXPECT_EQ(row.state->node(), "cp-1");
}

TEST(FleetStatusTest, AnUnreachableAgentBecomesANamedError) {
  v1::MockAgentStub stub;
  EXPECT_CALL(stub, GetNodeState(_, _, _))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "connect failed")));
  StatusRow row =
      QueryAgent(stub, "10.0.0.9:7443", std::chrono::milliseconds(100));
  ASSERT_FALSE(row.state.ok());
  EXPECT_EQ(ReasonOf(row.state.status()), reason::kAgentUnreachable);
  EXPECT_THAT(std::string(row.state.status().message()),
              HasSubstr("10.0.0.9:7443"));
}

TEST(FleetStatusTest, AllMatchingAndReadyIsHealthy) {
  FleetStatus f = SummariseFleet(
      {Row("cp-1", kHashA), Row("cp-2", kHashA), Row("cp-3", kHashA)});
  EXPECT_TRUE(f.healthy);
  EXPECT_EQ(f.majority_hash, kHashA);
  std::string table = RenderStatusTable(f);
  EXPECT_THAT(table,
              HasSubstr("key_id hash parity: all 3 nodes report " + kHashA));
  EXPECT_THAT(table, Not(HasSubstr("MISMATCH")));
}

// The provider's words reach root's terminal: an OSC 52 in a /ready
// reason sets the clipboard, a CSI clears the screen. They are shown.
bool HasControlBytesButNewlines(const std::string& text) {
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if ((byte < 0x20 && c != '\n') || byte == 0x7F) return true;
  }
  return text.find("\xC2\x9B") != std::string::npos;
}

TEST(FleetStatusTest, ProviderTextCannotSendEscapeSequencesToTheTerminal) {
  StatusRow row = Row("cp-1", kHashA, false);
  row.state->set_rotation_state("\x1b]52;c;cm0gLXJmIH4K\x07");
  row.state->set_provider_version("0.2.0\xC2\x9B" "2J");
  v1::Condition* c = row.state->add_conditions();
  c->set_reason("PROVIDER_NOT_READY");
  c->set_message("/ready says: \x1b[2J\x1b[Hall good\nreally");
  std::string table = RenderStatusTable(SummariseFleet({row, Row("cp-2", kHashA)}));
  EXPECT_FALSE(HasControlBytesButNewlines(table)) << table;
  EXPECT_THAT(table, HasSubstr("\\x1B]52;c;cm0gLXJmIH4K\\x07"));
  EXPECT_THAT(table, HasSubstr("\\x1B[2J\\x1B[Hall good\\nreally"));
  EXPECT_THAT(table, HasSubstr("0.2.0\\x9B2J"));
  // One line per node still: the header, two nodes, a blank, the summary.
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 5) << table;
}

TEST(FleetStatusTest, TheMismatchingNodeIsNamed) {
  FleetStatus f = SummariseFleet(
      {Row("cp-1", kHashA), Row("cp-2", kHashB), Row("cp-3", kHashA)});
  EXPECT_FALSE(f.healthy);
  EXPECT_EQ(f.rows[1].parity, Parity::kMismatch);
  std::string table = RenderStatusTable(f);
  EXPECT_THAT(table, HasSubstr("key_id hash MISMATCH: cp-2 reports " + kHashB +
                               ", the other nodes " + kHashA));
  // Short hashes in the table, full ones in the summary line.
  EXPECT_THAT(table, HasSubstr(kHashB.substr(0, 12) + " "));
}

TEST(FleetStatusTest, AnUnreadyNodeMakesTheFleetUnhealthyEvenInParity) {
  FleetStatus f =
      SummariseFleet({Row("cp-1", kHashA), Row("cp-2", kHashA, false)});
  EXPECT_FALSE(f.healthy);
  EXPECT_EQ(f.rows[1].parity, Parity::kMatch);
}

TEST(FleetStatusTest, AnUnreachableAgentIsUnknownAndShownByAddress) {
  StatusRow down;
  down.agent = "127.0.0.1:9";
  down.state =
      MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                "agent 127.0.0.1:9: connection refused");
  FleetStatus f = SummariseFleet({Row("cp-1", kHashA), down});
  EXPECT_FALSE(f.healthy);
  EXPECT_EQ(f.rows[1].parity, Parity::kUnknown);
  std::string table = RenderStatusTable(f);
  EXPECT_THAT(table, HasSubstr("127.0.0.1:9"));
  EXPECT_THAT(table, HasSubstr("AGENT_UNREACHABLE"));
}

TEST(FleetStatusTest, JsonCarriesFullHashesParityAndConditions) {
  StatusRow odd = Row("cp-2", kHashB);
  v1::Condition* c = odd.state->add_conditions();
  c->set_reason(reason::kNotReady);
  c->set_message("/ready answered HTTP 503");
  FleetStatus f =
      SummariseFleet({Row("cp-1", kHashA), odd, Row("cp-3", kHashA)});
  boost::json::value v = boost::json::parse(RenderStatusJson(f));
  EXPECT_EQ(v.at("healthy").as_bool(), false);
  EXPECT_EQ(v.at("majority_key_id_hash").as_string(), kHashA);
  const auto& nodes = v.at("nodes").as_array();
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_EQ(nodes[1].at("node").as_string(), "cp-2");
  EXPECT_EQ(nodes[1].at("key_id_hash").as_string(), kHashB);
  EXPECT_EQ(nodes[1].at("parity").as_string(), "MISMATCH");
  EXPECT_EQ(nodes[1].at("conditions").as_array()[0].at("reason").as_string(),
            "NOT_READY");
}

TEST(FleetStatusTest, JsonPrintsWholeCountersAsIntegers) {
  StatusRow row = Row("cp-1", kHashA);
  row.state->set_decrypt_key_id_errors_total(0);
  row.state->set_aad_validation_errors_total(3);
  std::string json = RenderStatusJson(SummariseFleet({row}));
  EXPECT_THAT(json, HasSubstr("\"decrypt_key_id_errors_total\":0,"));
  EXPECT_THAT(json, HasSubstr("\"aad_validation_errors_total\":3,"));
  EXPECT_THAT(json, Not(HasSubstr("E0")));
}

TEST(FleetStatusTest, TableAndJsonShowHowEachAgentAdmitsDisruption) {
  StatusRow refusing = Row("cp-1", kHashA);
  refusing.state->set_agent_mode("refusing");
  StatusRow member = Row("cp-2", kHashA);
  member.state->set_agent_mode("cluster member");
  FleetStatus f = SummariseFleet({refusing, member});
  std::string table = RenderStatusTable(f);
  EXPECT_THAT(table, HasSubstr("MODE"));
  EXPECT_THAT(table, HasSubstr("cp-1  refusing "));
  EXPECT_THAT(table, HasSubstr("cp-2  cluster member "));
  boost::json::value v = boost::json::parse(RenderStatusJson(f));
  EXPECT_EQ(v.at("nodes").as_array()[0].at("agent_mode").as_string(), "refusing");
}

TEST(FleetStatusTest, AgentTargetAcceptsPathsAndAddresses) {
  EXPECT_EQ(AgentTarget("/run/kmsfleet/agent.sock"),
            "unix:/run/kmsfleet/agent.sock");
  EXPECT_EQ(AgentTarget("unix:/x.sock"), "unix:/x.sock");
  EXPECT_EQ(AgentTarget("10.0.0.1:7443"), "10.0.0.1:7443");
}

}  // namespace
}  // namespace kmsfleet
