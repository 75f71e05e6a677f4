// `kmsfleetctl plan commit`: asks the coordinator to commit a plan record
// naming one node as in flight, and prints the fence that the node's swap
// and rollback must then carry (architecture.md §6, docs/cli.md).
// Thread-compatible.
#ifndef KMSFLEET_CLI_PLAN_COMMANDS_H_
#define KMSFLEET_CLI_PLAN_COMMANDS_H_

#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace CLI {
class App;
}

namespace kmsfleet {

// How kmsfleetctl reaches an agent: a unix socket needs nothing; a TCP
// address (the cluster listener) needs the fleet CA and an operator
// certificate, and is never dialled in plain text unless --insecure says so
// (for an agent's loopback listen.tcp with listen.insecure: true).
struct FleetTls {
  std::string ca{}, cert{}, key{};  // PEM paths; "" for a unix socket
  std::string server_name{};  // the node name the agent's certificate carries
  bool insecure = false;      // plain TCP, explicitly asked for
};

// Adds --ca, --cert, --key, --server-name and --insecure to `command`.
void AddTlsFlags(CLI::App& command, FleetTls& tls);

// A channel to `agent` (unix:/path or host:port). Errors: INVALID_CONFIG
// naming the missing flag (--ca, --cert or --key for a TCP address) or the
// PEM file that cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> FleetChannel(const std::string& agent,
                                                            const FleetTls& tls);

// The outcome of a call to `agent`: the agent's refusal keeps its code,
// reason and metadata. A call with no ErrorInfo is, when nothing answered
// (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED), Unavailable AGENT_UNREACHABLE; any
// other gRPC code keeps that code with AGENT_CALL_FAILED. Both name the
// agent and the gRPC code.
absl::Status FromAgentCall(const grpc::Status& status, const std::string& agent);

// Whether `s` is an agent's refusal that FromAgentCall passed on (its
// INVALID_CONFIG is the agent's configuration, not the operator's flags).
bool AgentAnswered(const absl::Status& s);

// What a command that changes the plan exits with when its answer did not
// say: it may have taken effect (docs/cli.md).
inline constexpr int kExitMayHaveChanged = 4;

// The exit code of a failed call (docs/cli.md): 2 for the operator's own
// flags and files; 3 to ask again (no agent answered, the command was
// withdrawn unread, no coordinator can take it yet); for a call that
// `changes_the_plan`, kExitMayHaveChanged when it may have taken effect
// all the same (past its deadline, cut by the agent's shutdown, or
// PLAN_CHANGE_PENDING); else 1.
int ExitCodeOf(const absl::Status& s, bool changes_the_plan);

// `m` as indented JSON with proto field names, for --output json.
std::string ProtoJson(const google::protobuf::Message& m);
// The same on one line: what a stream of views (`--watch -o json`) prints,
// one object per line.
std::string ProtoJsonLine(const google::protobuf::Message& m);

// Parses the fence "TERM/INDEX/NODE" that `plan commit` prints. Errors name
// the flag and the value.
absl::StatusOr<v1::Fence> ParseFence(const std::string& text);
std::string FormatFence(const v1::Fence& fence);

struct PlanCommitFlags {
  std::string agent = "unix:/run/kmsfleet/agent.sock";
  FleetTls tls;
  std::string output = "table";  // table: the fence alone; json: an object
  std::string in_flight;
  std::string payload;
  int timeout_ms = 10000;
};

// Adds `plan` (whose own flags AddFleetCommands adds) and `plan commit` to
// `app`; returns `commit`. `plan commit` also takes --agent, --output and
// the TLS flags before `commit`: ResolvePlanCommitFlags (fleet_commands.h)
// brings those in.
CLI::App* AddPlanCommands(CLI::App& app, PlanCommitFlags& flags);

// Calls Fleet.ProposePlan on `stub` (the agent at `agent`). The agent's
// refusal keeps its reason and metadata (a follower's NOT_LEADER names the
// leader and its address); a call without a reason code is as
// FromAgentCall says (AGENT_UNREACHABLE or AGENT_CALL_FAILED).
absl::StatusOr<v1::Fence> CommitPlan(v1::Fleet::StubInterface& stub,
                                     const std::string& agent,
                                     const std::string& in_flight,
                                     const std::string& payload,
                                     std::chrono::milliseconds timeout);

// The fence as --output json prints it: an object with the fence as
// --fence takes it, its parts and the agent that committed it.
std::string RenderFenceJson(const v1::Fence& fence, const std::string& agent);

// Exit codes: 0 committed (the fence on stdout); 1 refused (stderr:
// "[REASON] message", with where the coordinator is); 2 usage (a missing
// TLS flag, an unreadable PEM file); 3 the agent could not be reached.
// Text from the agent is escaped for the terminal (terminal_text.h).
int RunPlanCommit(const PlanCommitFlags& flags);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_PLAN_COMMANDS_H_
