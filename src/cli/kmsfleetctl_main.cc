// kmsfleetctl: the operator's command line for kmsfleet agents.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <future>
#include <iostream>

#include "cli/fleet_commands.h"
#include "cli/fleet_status.h"
#include "cli/health_command.h"
#include "cli/leader_status.h"
#include "cli/node_commands.h"
#include "cli/plan_commands.h"
#include "cli/usage_exit.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr char kDefaultAgent[] = "unix:/run/kmsfleet/agent.sock";

struct StatusFlags {
  std::vector<std::string> agents;
  std::string output = "table";
  int timeout_ms = 10000;
  FleetTls tls;
};

// One channel per agent, or false after printing why one cannot be made: a
// usage error (a TCP agent without TLS flags) stops before any call.
bool OpenChannels(const std::vector<std::string>& agents, const FleetTls& tls,
                  std::vector<std::shared_ptr<grpc::Channel>>& channels) {
  for (const std::string& agent : agents) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = FleetChannel(agent, tls);
    if (!channel.ok()) {
      std::cerr << "kmsfleetctl: [" << ReasonOf(channel.status()) << "] "
                << channel.status().message() << "\n";
      return false;
    }
    channels.push_back(*channel);
  }
  return true;
}

// Exit codes: 0 every node answered, is ready and in parity; 1 otherwise
// (the output says why); 2 usage errors (CLI11, or a TCP agent without
// --ca/--cert/--key).
int RunStatus(const StatusFlags& flags) {
  std::vector<std::string> agents = flags.agents;
  if (agents.empty()) agents.push_back(kDefaultAgent);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  if (!OpenChannels(agents, flags.tls, channels)) return 2;
  std::vector<std::future<StatusRow>> pending;
  for (size_t i = 0; i < agents.size(); ++i) {
    pending.push_back(std::async(std::launch::async, [&flags, &agents, &channels, i] {
      auto stub = v1::Agent::NewStub(channels[i]);
      return QueryAgent(*stub, agents[i], std::chrono::milliseconds(flags.timeout_ms));
    }));
  }
  std::vector<StatusRow> rows;
  for (auto& f : pending) rows.push_back(f.get());
  FleetStatus fleet = SummariseFleet(std::move(rows));
  std::cout << (flags.output == "json" ? RenderStatusJson(fleet)
                                       : RenderStatusTable(fleet));
  return fleet.healthy ? 0 : 1;
}

struct LeaderFlags {
  std::vector<std::string> agents;
  std::string output = "table";
  int timeout_ms = 5000;
  FleetTls tls;
};

// Exit codes: 0 every agent answered and all name the same coordinator;
// 1 otherwise (the output says which agent disagrees or is unreachable);
// 2 usage errors, including a TCP agent without --ca/--cert/--key.
int RunLeader(const LeaderFlags& flags) {
  std::vector<std::string> agents = flags.agents;
  if (agents.empty()) agents.push_back(kDefaultAgent);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  if (!OpenChannels(agents, flags.tls, channels)) return 2;
  std::vector<std::future<LeaderRow>> pending;
  for (size_t i = 0; i < agents.size(); ++i) {
    pending.push_back(std::async(std::launch::async, [&flags, &agents, &channels, i] {
      auto stub = v1::Fleet::NewStub(channels[i]);
      return QueryLeader(*stub, agents[i], std::chrono::milliseconds(flags.timeout_ms));
    }));
  }
  std::vector<LeaderRow> rows;
  for (auto& f : pending) rows.push_back(f.get());
  LeaderSummary summary = SummariseLeader(std::move(rows));
  std::cout << (flags.output == "json" ? RenderLeaderJson(summary)
                                       : RenderLeaderTable(summary));
  return summary.agreed ? 0 : 1;
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
  AddTlsFlags(*status, status_flags.tls);
  status->footer(
      "Example:\n"
      "  kmsfleetctl status --agent cp-1:7443 --agent cp-2:7443 --agent cp-3:7443 \\\n"
      "    --ca ca.pem --cert operator.pem --key operator.key --output json\n"
      "(each agent's certificate is checked against the host in --agent, or against\n"
      "--server-name, which applies to every agent)");
  NodeFlags node_flags;
  CLI::App* node = AddNodeCommands(app, node_flags);
  LeaderFlags leader_flags;
  CLI::App* leader = app.add_subcommand(
      "leader", "show the coordinator, its term and commit, and each peer's view");
  leader->add_option("--agent", leader_flags.agents,
                     "agent address: unix:/path or host:port of its cluster "
                     "listener (repeatable)");
  leader->add_option("--output,-o", leader_flags.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  leader->add_option("--timeout-ms", leader_flags.timeout_ms, "deadline per agent")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  AddTlsFlags(*leader, leader_flags.tls);
  leader->footer(
      "Example:\n"
      "  kmsfleetctl leader --agent unix:/run/kmsfleet/agent.sock --agent 10.0.0.2:7443 \\\n"
      "    --ca ca.pem --cert operator.pem --key operator.key --server-name cp-2");
  PlanCommitFlags plan_flags;
  CLI::App* commit = AddPlanCommands(app, plan_flags);
  FleetFlags fleet_flags;
  std::vector<CLI::App*> fleet_commands = AddFleetCommands(app, fleet_flags);
  HealthFlags health_flags;
  CLI::App* health = AddHealthCommand(app, health_flags);
  app.set_version_flag("--version", std::string("kmsfleetctl ") + KMSFLEET_VERSION);
  if (std::optional<int> exit = ParseCommandLine(app, argc, argv)) return *exit;
  if (status->parsed()) return RunStatus(status_flags);
  if (node->parsed()) return RunNodeCommand(*node, node_flags);
  if (leader->parsed()) return RunLeader(leader_flags);
  if (commit->parsed()) {
    // `plan --agent X commit` is `plan commit --agent X`.
    absl::Status flags = ResolvePlanCommitFlags(*commit->get_parent(), fleet_flags, plan_flags);
    if (!flags.ok()) {
      std::cerr << "kmsfleetctl: plan commit: [" << ReasonOf(flags) << "] " << flags.message()
                << "\n";
      return 2;
    }
    return RunPlanCommit(plan_flags);
  }
  if (health->parsed()) return RunHealth(health_flags);
  for (CLI::App* command : fleet_commands) {
    if (command->parsed()) return RunFleetCommand(*command, fleet_flags);
  }
  return 2;
}

}  // namespace
}  // namespace kmsfleet

int main(int argc, char** argv) { return kmsfleet::Main(argc, argv); }
