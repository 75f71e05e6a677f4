// kmsfleetctl health: asks one agent's gRPC health service
// (grpc.health.v1.Health/Check, service "") whether it serves. The static
// pod's liveness and readiness probes run it on the local socket
// (static-pod/kmsfleetd.yaml): the kubelet's own grpc probe speaks plain
// TCP to the pod's IP, and the agent serves plain gRPC only on its unix
// socket.
#ifndef KMSFLEET_CLI_HEALTH_COMMAND_H_
#define KMSFLEET_CLI_HEALTH_COMMAND_H_

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "cli/plan_commands.h"

namespace kmsfleet {

struct HealthFlags {
  std::string agent = "unix:/run/kmsfleet/agent.sock";
  int timeout_ms = 2000;
  std::string output = "table";  // table: "ADDR: SERVING"; json: RenderHealthJson
  FleetTls tls;
};

CLI::App* AddHealthCommand(CLI::App& app, HealthFlags& flags);

// Exit codes: 0 the agent answered SERVING; 1 it answered anything else
// (stderr names the health status) or could not be asked (stderr gives the
// reason code, e.g. AGENT_UNREACHABLE); 2 usage. With --output json, an
// answer, whatever it is, is printed on stdout as RenderHealthJson.
int RunHealth(const HealthFlags& flags);

// The agent's answer `status` (as ParseHealthStatus reads it) as one JSON
// object: {"agent": ..., "status": "SERVING", "code": 1, "serving": true}.
std::string RenderHealthJson(const std::string& agent, int status);

// The `status` field (1, an enum) of a serialized
// grpc.health.v1.HealthCheckResponse: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING,
// 3 SERVICE_UNKNOWN. Errors: InvalidArgument, MALFORMED_MESSAGE, when the
// bytes (at most 1 KiB) are not such a message.
absl::StatusOr<int> ParseHealthStatus(std::string_view response);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_HEALTH_COMMAND_H_
