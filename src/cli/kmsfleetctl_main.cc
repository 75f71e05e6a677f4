// kmsfleetctl: the operator's command line for kmsfleet agents.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <future>
#include <iostream>

#include "kmsfleet/fleet_status.h"
#include "kmsfleet/node_commands.h"

namespace kmsfleet {
namespace {

constexpr char kDefaultAgent[] = "unix:/run/kmsfleet/agent.sock";

struct StatusFlags {
  std::vector<std::string> agents;
  std::string output = "table";
  int timeout_ms = 10000;
};

// Exit codes: 0 every node answered, is ready and in parity; 1 otherwise
// (the output says why); 2 usage errors (CLI11).
int RunStatus(const StatusFlags& flags) {
  std::vector<std::string> agents = flags.agents;
  if (agents.empty()) agents.push_back(kDefaultAgent);
  std::vector<std::future<StatusRow>> pending;
  for (const std::string& agent : agents) {
    pending.push_back(std::async(std::launch::async, [&flags, agent] {
      auto channel = grpc::CreateChannel(AgentTarget(agent),
                                         grpc::InsecureChannelCredentials());
      auto stub = v1::Agent::NewStub(channel);
      return QueryAgent(*stub, agent, std::chrono::milliseconds(flags.timeout_ms));
    }));
  }
  std::vector<StatusRow> rows;
  for (auto& f : pending) rows.push_back(f.get());
  FleetStatus fleet = SummariseFleet(std::move(rows));
  std::cout << (flags.output == "json" ? RenderStatusJson(fleet)
                                       : RenderStatusTable(fleet));
  return fleet.healthy ? 0 : 1;
}

int Main(int argc, char** argv) {
  CLI::App app{"kmsfleetctl: drive and inspect kmsfleet agents"};
  app.require_subcommand(1);
  StatusFlags status_flags;
  CLI::App* status = app.add_subcommand(
      "status", "show each node's provider and key_id hash parity");
  status->add_option("--agent", status_flags.agents,
                     "agent address: unix:/path or host:port (repeatable; "
                     "default " + std::string(kDefaultAgent) + ")");
  status->add_option("--output,-o", status_flags.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  status->add_option("--timeout-ms", status_flags.timeout_ms,
                     "deadline for each agent's answer")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  NodeFlags node_flags;
  CLI::App* node = AddNodeCommands(app, node_flags);
  CLI11_PARSE(app, argc, argv);
  if (status->parsed()) return RunStatus(status_flags);
  if (node->parsed()) return RunNodeCommand(*node, node_flags);
  return 2;
}

}  // namespace
}  // namespace kmsfleet

int main(int argc, char** argv) { return kmsfleet::Main(argc, argv); }
