// `kmsfleetctl leader`: asks each agent for its view of the election
// (kmsfleet.v1.Fleet/GetLeader) and prints the coordinator, its term and
// commit, and each peer's view. Thread-compatible.
#ifndef KMSFLEET_CLI_LEADER_STATUS_H_
#define KMSFLEET_CLI_LEADER_STATUS_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {

struct LeaderRow {
  std::string agent;  // the address asked
  absl::StatusOr<v1::LeaderView> view = absl::UnknownError("not asked");
};

struct LeaderSummary {
  std::vector<LeaderRow> rows;
  std::string coordinator;  // "" when none is agreed
  uint64_t term = 0;
  v1::PlanRecord committed;
  // Every agent answered and names the same leader at the newest term,
  // and the leader, if asked, says it leads.
  bool agreed = false;
};

// Calls GetLeader on `stub` within `timeout`; a failure becomes an
// AGENT_UNREACHABLE error naming the agent.
LeaderRow QueryLeader(v1::Fleet::StubInterface& stub, const std::string& agent,
                      std::chrono::milliseconds timeout);

LeaderSummary SummariseLeader(std::vector<LeaderRow> rows);
std::string RenderLeaderTable(const LeaderSummary& summary);
std::string RenderLeaderJson(const LeaderSummary& summary);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_LEADER_STATUS_H_
