#include "cli/leader_status.h"

#include <boost/json.hpp>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <iomanip>
#include <map>
#include <sstream>

#include "cli/plan_commands.h"
#include "cli/terminal_text.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet {
namespace {

std::string Commit(const v1::PlanRecord& r) {
  return std::to_string(r.term()) + "/" + std::to_string(r.index());
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

LeaderRow QueryLeader(v1::Fleet::StubInterface& stub, const std::string& agent,
                      std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::LeaderView view;
  grpc::Status status = stub.GetLeader(&context, v1::GetLeaderRequest(), &view);
  LeaderRow row{.agent = agent};
  if (status.ok()) {
    row.view = view;
  } else {
    // An agent's own refusal (UNKNOWN_CALLER, ...) keeps its reason; only
    // an agent that did not answer is AGENT_UNREACHABLE.
    row.view = FromAgentCall(status, agent);
  }
  return row;
}

LeaderSummary SummariseLeader(std::vector<LeaderRow> rows) {
  LeaderSummary s;
  s.rows = std::move(rows);
  // The newest term anyone reports decides; older views are stale. At that
  // term the leader's own view wins over a follower's, whose commit may lag.
  bool from_leader = false;
  for (const LeaderRow& r : s.rows) {
    if (!r.view.ok() || r.view->leader().empty()) continue;
    bool is_leader = r.view->role() == "Leader";
    if (r.view->term() > s.term || (r.view->term() == s.term && is_leader && !from_leader)) {
      s.term = r.view->term();
      s.coordinator = r.view->leader();
      s.committed = r.view->committed();
      from_leader = is_leader;
    }
  }
  bool all = !s.coordinator.empty();
  for (const LeaderRow& r : s.rows) {
    all = all && r.view.ok() && r.view->leader() == s.coordinator &&
          r.view->term() == s.term &&
          (r.view->node() != s.coordinator || r.view->role() == "Leader");
  }
  s.agreed = all;
  return s;
}

std::string RenderLeaderTable(const LeaderSummary& s) {
  // Each cell escaped on its own: an agent's newline stays in its row.
  auto cell = [](std::string_view text) { return ForTerminal(text, /*keep_newlines=*/false); };
  std::ostringstream out;
  out << "coordinator " << cell(OrDash(s.coordinator)) << "  term " << s.term << "  commit "
      << cell(Commit(s.committed)) << "  in_flight " << cell(OrDash(s.committed.in_flight()))
      << (s.agreed ? "" : "  (peers disagree or did not answer)") << "\n";
  // Socket paths can be long: the first column is as wide as they are.
  size_t agent_width = std::string("AGENT").size();
  for (const LeaderRow& r : s.rows) agent_width = std::max(agent_width, r.agent.size());
  int agent_column = static_cast<int>(agent_width) + 2;
  out << std::left << std::setw(agent_column) << "AGENT" << std::setw(12) << "NODE"
      << std::setw(14) << "ROLE" << std::setw(7) << "TERM" << std::setw(12) << "LEADER"
      << "COMMIT\n";
  for (const LeaderRow& r : s.rows) {
    out << std::setw(agent_column) << cell(r.agent);
    if (!r.view.ok()) {
      out << cell(ReasonOf(r.view.status()) + ": " + std::string(r.view.status().message()))
          << "\n";
      continue;
    }
    const v1::LeaderView& v = *r.view;
    out << std::setw(12) << cell(v.node()) << std::setw(14) << cell(v.role()) << std::setw(7)
        << v.term() << std::setw(12) << cell(OrDash(v.leader())) << cell(Commit(v.committed()))
        << "\n";
  }
  return ForTerminal(out.str());
}

std::string RenderLeaderJson(const LeaderSummary& s) {
  boost::json::object o;
  o["coordinator"] = s.coordinator;
  o["term"] = s.term;
  o["commit"] = {{"term", s.committed.term()}, {"index", s.committed.index()},
                 {"in_flight", s.committed.in_flight()}};
  o["agreed"] = s.agreed;
  boost::json::array peers;
  for (const LeaderRow& r : s.rows) {
    boost::json::object p;
    p["agent"] = r.agent;
    if (!r.view.ok()) {
      p["error"] = {{"reason", ReasonOf(r.view.status())},
                    {"message", std::string(r.view.status().message())}};
    } else {
      const v1::LeaderView& v = *r.view;
      p["node"] = v.node();
      p["role"] = v.role();
      p["term"] = v.term();
      p["leader"] = v.leader();
      p["leader_address"] = v.leader_address();
      p["commit"] = {{"term", v.committed().term()}, {"index", v.committed().index()},
                     {"in_flight", v.committed().in_flight()},
                     // Bytes (a serialised plan): as they are, they
                     // would make the JSON invalid UTF-8.
                     {"payload_base64url", Base64UrlNoPad(v.committed().payload())}};
      p["highest_fence_term"] = v.highest_fence_term();
    }
    peers.push_back(std::move(p));
  }
  o["peers"] = std::move(peers);
  return boost::json::serialize(o) + "\n";
}

}  // namespace kmsfleet
