// `kmsfleetctl leader`: which coordinator the agents' views agree on.
#include "cli/leader_status.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

LeaderRow Row(const std::string& node, const std::string& role, uint64_t term,
              const std::string& leader) {
  v1::LeaderView v;
  v.set_node(node);
  v.set_role(role);
  v.set_term(term);
  v.set_leader(leader);
  v.mutable_committed()->set_term(term);
  v.mutable_committed()->set_index(7);
  v.mutable_committed()->set_in_flight("cp-1");
  return LeaderRow{.agent = node + ".sock", .view = v};
}

TEST(LeaderStatusTest, AllAgentsNamingTheLeaderAgree) {
  LeaderSummary s = SummariseLeader({Row("cp-1", "Follower", 3, "cp-2"),
                                     Row("cp-2", "Leader", 3, "cp-2"),
                                     Row("cp-3", "Follower", 3, "cp-2")});
  EXPECT_TRUE(s.agreed);
  EXPECT_EQ(s.coordinator, "cp-2");
  EXPECT_EQ(s.term, 3u);
  std::string table = RenderLeaderTable(s);
  EXPECT_NE(table.find("coordinator cp-2  term 3  commit 3/7  in_flight cp-1"),
            std::string::npos)
      << table;
}

// Found in review: the table kept an agent's newlines, so a node or
// leader name holding one printed a row of its own.
TEST(LeaderStatusTest, AnAgentsNewlineStaysInItsRow) {
  LeaderSummary s = SummariseLeader({Row("cp-1\ncp-9", "Leader", 3, "cp-1\ncp-9")});
  const std::string table = RenderLeaderTable(s);
  EXPECT_NE(table.find("cp-1\\ncp-9"), std::string::npos) << table;
  EXPECT_EQ(table.find("\ncp-9"), std::string::npos) << table;
}

TEST(LeaderStatusTest, LongSocketPathsKeepTheirColumnApart) {
  LeaderRow row = Row("cp-1", "Leader", 3, "cp-1");
  row.agent = "unix:/tmp/kmsfleet-demo.T3GznI/cp-1/agent.sock";
  std::string table = RenderLeaderTable(SummariseLeader({row}));
  EXPECT_NE(table.find("agent.sock  cp-1"), std::string::npos) << table;
}

TEST(LeaderStatusTest, DeposedLeaderStillClaimingOlderTermIsOutvotedAndFlagged) {
  LeaderSummary s = SummariseLeader({Row("cp-1", "Leader", 2, "cp-1"),
                                     Row("cp-2", "Leader", 3, "cp-2"),
                                     Row("cp-3", "Follower", 3, "cp-2")});
  EXPECT_EQ(s.coordinator, "cp-2");
  EXPECT_FALSE(s.agreed) << "cp-1 still believes it leads term 2";
  EXPECT_NE(RenderLeaderTable(s).find("peers disagree"), std::string::npos);
}

TEST(LeaderStatusTest, UnreachableAgentMeansNoAgreementAndIsNamed) {
  LeaderRow down{.agent = "cp-3.sock",
                 .view = MakeError(absl::StatusCode::kUnavailable,
                                   reason::kAgentUnreachable, "agent cp-3.sock: timeout")};
  LeaderSummary s = SummariseLeader({Row("cp-1", "Follower", 3, "cp-2"),
                                     Row("cp-2", "Leader", 3, "cp-2"), down});
  EXPECT_FALSE(s.agreed);
  std::string json = RenderLeaderJson(s);
  EXPECT_NE(json.find("\"AGENT_UNREACHABLE\""), std::string::npos) << json;
}

// A committed payload is a serialised FleetPlan: bytes, not text. Written
// into a JSON string as they were, they made the output invalid UTF-8.
TEST(LeaderStatusTest, JsonCarriesTheCommittedPayloadAsBase64url) {
  LeaderRow row = Row("cp-1", "Leader", 3, "cp-1");
  const std::string payload("\x0a\x06plan-1\x10\xff\xfe\x80\x01", 13);
  row.view->mutable_committed()->set_payload(payload);
  std::string json = RenderLeaderJson(SummariseLeader({row}));
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json, ec);
  ASSERT_FALSE(ec) << ec.message() << ": " << json;
  const boost::json::object& commit = v.at("peers").at(0).at("commit").as_object();
  EXPECT_EQ(commit.at("payload_base64url").as_string(), "CgZwbGFuLTEQ__6AAQ");
  EXPECT_FALSE(commit.contains("payload"));
}

TEST(LeaderStatusTest, OneFollowerAskedAloneNamesTheCoordinator) {
  LeaderSummary s = SummariseLeader({Row("cp-1", "Follower", 4, "cp-3")});
  EXPECT_TRUE(s.agreed);
  EXPECT_EQ(s.coordinator, "cp-3");
  EXPECT_EQ(s.term, 4u);
}

TEST(LeaderStatusTest, AgentWithoutLeaderBreaksAgreement) {
  LeaderSummary s = SummariseLeader({Row("cp-1", "Candidate", 5, ""),
                                     Row("cp-2", "Leader", 4, "cp-2")});
  EXPECT_EQ(s.coordinator, "cp-2");
  EXPECT_FALSE(s.agreed);
}

}  // namespace
}  // namespace kmsfleet
