#include "cli/fleet_status.h"

#include <boost/json.hpp>
#include <cmath>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <iomanip>
#include <sstream>

#include "cli/plan_commands.h"
#include "cli/terminal_text.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

// Enough of the 43-character hash to tell nodes apart at a glance.
constexpr size_t kShortHashChars = 12;
constexpr size_t kMaxErrorChars = 70;

std::string Clip(std::string text, size_t max) {
  if (text.size() > max) text = text.substr(0, max - 3) + "...";
  return text;
}

std::string YesNo(bool value) { return value ? "yes" : "no"; }

std::string LastError(const StatusRow& row) {
  if (!row.state.ok()) {
    return ReasonOf(row.state.status()) + ": " +
           std::string(row.state.status().message());
  }
  if (row.state->conditions().empty()) return "-";
  const v1::Condition& c = row.state->conditions(0);
  return c.reason() + ": " + c.message();
}

// Prometheus counters arrive as doubles; Boost.JSON prints 0.0 as "0E0",
// which scripts comparing with 0 trip over. Whole values print as integers.
boost::json::value CounterJson(double value) {
  constexpr double kExactIntegerLimit = 9007199254740992.0;  // 2^53
  if (std::trunc(value) == value && std::fabs(value) < kExactIntegerLimit) {
    return static_cast<int64_t>(value);
  }
  return value;
}

boost::json::object RowJson(const StatusRow& row) {
  boost::json::object o;
  o["agent"] = row.agent;
  o["parity"] = ParityName(row.parity);
  if (!row.state.ok()) {
    o["error"] = {{"reason", ReasonOf(row.state.status())},
                  {"message", std::string(row.state.status().message())}};
    return o;
  }
  const v1::NodeState& s = *row.state;
  o["node"] = s.node();
  o["version"] = s.provider_version();
  o["version_source"] = s.provider_version_source();
  o["live"] = s.live();
  o["ready"] = s.ready();
  boost::json::array reasons;
  for (const std::string& r : s.ready_reasons()) reasons.emplace_back(r);
  o["ready_reasons"] = std::move(reasons);
  o["key_id_hash"] = s.key_id_hash_metric();
  o["key_id_hash_socket"] = s.key_id_hash_socket();
  o["kms_healthz"] = s.kms_healthz();
  o["rotation_state"] = s.rotation_state();
  o["agent_mode"] = s.agent_mode();
  o["provider_mode"] = s.provider_mode();
  if (s.has_key_version()) o["key_version"] = s.key_version();
  if (s.has_decrypt_key_id_errors_total()) {
    o["decrypt_key_id_errors_total"] = CounterJson(s.decrypt_key_id_errors_total());
  }
  if (s.has_aad_validation_errors_total()) {
    o["aad_validation_errors_total"] = CounterJson(s.aad_validation_errors_total());
  }
  o["observed_at_unix_ms"] = s.observed_at_unix_ms();
  boost::json::array conditions;
  for (const v1::Condition& c : s.conditions()) {
    conditions.push_back({{"reason", c.reason()}, {"message", c.message()}});
  }
  o["conditions"] = std::move(conditions);
  return o;
}

std::string NodeName(const StatusRow& row) {
  return row.state.ok() ? row.state->node() : row.agent;
}

// One or more lines under the table that say in words what is wrong, naming
// every node that disagrees with the majority.
std::string ParitySummary(const FleetStatus& status) {
  std::string out;
  for (const StatusRow& row : status.rows) {
    if (row.parity == Parity::kMismatch) {
      out += "key_id hash MISMATCH: " + NodeName(row) + " reports " +
             row.state->key_id_hash_metric() + ", the other nodes " +
             status.majority_hash + "\n";
    } else if (row.parity == Parity::kSplit) {
      out += "key_id hash split: " + NodeName(row) + " reports " +
             row.state->key_id_hash_metric() + " and no hash has a majority\n";
    } else if (row.parity == Parity::kUnknown) {
      out += "key_id hash unknown on " + NodeName(row) + "\n";
    }
  }
  if (out.empty() && !status.majority_hash.empty()) {
    out = "key_id hash parity: all " + std::to_string(status.rows.size()) +
          " nodes report " + status.majority_hash + "\n";
  }
  return out;
}

}  // namespace

std::string AgentTarget(const std::string& agent) {
  if (agent.rfind("unix:", 0) == 0) return agent;
  if (!agent.empty() && agent.front() == '/') return "unix:" + agent;
  return agent;
}

StatusRow QueryAgent(v1::Agent::StubInterface& stub, const std::string& agent,
                     std::chrono::milliseconds timeout) {
  StatusRow row;
  row.agent = agent;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::NodeState state;
  grpc::Status status = stub.GetNodeState(&context, v1::GetNodeStateRequest(), &state);
  if (status.ok()) {
    row.state = std::move(state);
  } else {
    row.state = FromAgentCall(status, agent);
  }
  return row;
}

FleetStatus SummariseFleet(std::vector<StatusRow> rows) {
  std::vector<std::string> hashes;
  for (const StatusRow& row : rows) {
    hashes.push_back(row.state.ok() ? row.state->key_id_hash_metric() : "");
  }
  ParityResult parity = ComputeParity(hashes);
  FleetStatus fleet;
  fleet.majority_hash = parity.majority_hash;
  fleet.healthy = parity.all_match;
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].parity = parity.per_node[i];
    if (!rows[i].state.ok() || !rows[i].state->ready()) fleet.healthy = false;
  }
  fleet.rows = std::move(rows);
  return fleet;
}

std::string RenderStatusTable(const FleetStatus& status) {
  std::vector<std::vector<std::string>> cells = {
      {"NODE", "MODE", "PROVIDER", "VERSION", "LIVE", "READY", "KEY_ID_HASH", "PARITY", "ROTATION",
       "LAST_ERROR"}};
  for (const StatusRow& row : status.rows) {
    if (!row.state.ok()) {
      cells.push_back({row.agent, "-", "-", "-", "-", "-", "-", std::string(ParityName(row.parity)),
                       "-", Clip(LastError(row), kMaxErrorChars)});
      continue;
    }
    const v1::NodeState& s = *row.state;
    std::string hash = s.key_id_hash_metric().substr(0, kShortHashChars);
    cells.push_back({s.node(), s.agent_mode().empty() ? "?" : s.agent_mode(),
                     s.provider_mode().empty() ? "?" : s.provider_mode(),
                     s.provider_version().empty() ? "?" : s.provider_version(),
                     YesNo(s.live()), YesNo(s.ready()), hash.empty() ? "-" : hash,
                     std::string(ParityName(row.parity)),
                     s.rotation_state().empty() ? "-" : s.rotation_state(),
                     Clip(LastError(row), kMaxErrorChars)});
  }
  // Versions, rotation states and messages come from the providers.
  for (auto& line : cells) {
    for (std::string& cell : line) cell = ForTerminal(cell, /*keep_newlines=*/false);
  }
  std::vector<size_t> widths(cells[0].size(), 0);
  for (const auto& line : cells) {
    for (size_t i = 0; i < line.size(); ++i) widths[i] = std::max(widths[i], line[i].size());
  }
  std::ostringstream out;
  for (const auto& line : cells) {
    for (size_t i = 0; i < line.size(); ++i) {
      out << std::left << std::setw(i + 1 < line.size() ? static_cast<int>(widths[i]) + 2 : 0)
          << line[i];
    }
    out << "\n";
  }
  out << "\n" << ForTerminal(ParitySummary(status));
  return out.str();
}

std::string RenderStatusJson(const FleetStatus& status) {
  boost::json::array nodes;
  for (const StatusRow& row : status.rows) nodes.push_back(RowJson(row));
  boost::json::object root;
  root["nodes"] = std::move(nodes);
  root["majority_key_id_hash"] = status.majority_hash;
  root["healthy"] = status.healthy;
  return boost::json::serialize(root) + "\n";
}

}  // namespace kmsfleet
