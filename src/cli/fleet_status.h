// `kmsfleetctl status`: asks each agent for its NodeState, computes key_id
// hash parity across the answers, and renders a table or JSON.
// Thread-compatible.
#ifndef KMSFLEET_CLI_FLEET_STATUS_H_
#define KMSFLEET_CLI_FLEET_STATUS_H_

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/core/parity.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {

// One agent's answer, or why there is none.
struct StatusRow {
  std::string agent;  // the address asked
  absl::StatusOr<v1::NodeState> state = absl::UnknownError("not asked");
  Parity parity = Parity::kUnknown;
};

struct FleetStatus {
  std::vector<StatusRow> rows;
  std::string majority_hash;
  // Every agent answered, every provider is ready, and all hashes match.
  bool healthy = false;
};

// Calls GetNodeState on `stub` for `agent` within `timeout`. A failed call
// becomes an AGENT_UNREACHABLE error naming the agent.
StatusRow QueryAgent(v1::Agent::StubInterface& stub, const std::string& agent,
                     std::chrono::milliseconds timeout);

// Fills in parity and the fleet verdict over `rows`.
FleetStatus SummariseFleet(std::vector<StatusRow> rows);

// A fixed-width table, one row per agent, for a terminal.
std::string RenderStatusTable(const FleetStatus& status);

// The same facts as JSON, with full hashes and every condition.
std::string RenderStatusJson(const FleetStatus& status);

// Turns a --agent value into a gRPC target: "unix:/path" and "/path" become
// "unix:/path"; "host:port" stays as it is.
std::string AgentTarget(const std::string& agent);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_FLEET_STATUS_H_
