#include "cli/plan_render.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>
#include <sstream>

#include "cli/terminal_text.h"
#include "kmsfleet/core/plan_dry_run.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"

namespace kmsfleet {
namespace {

constexpr int kBarWidth = 24;

std::string StageName(v1::PlanStepStage stage) {
  switch (stage) {
    case v1::PLAN_STEP_STAGE_SWAPPING: return "swapping";
    case v1::PLAN_STEP_STAGE_RESTARTING_APISERVER: return "restarting kube-apiserver";
    case v1::PLAN_STEP_STAGE_HANDING_OFF: return "handing off";
    default: return "";
  }
}

// One row of a rendering, ended: an agent's text in it (a guard's message,
// a manual step, an audit entry) may hold a newline, which would print a
// row of its own, one that could pass for a guard's "pass" (found in
// review). Escaped, it stays in its row as \n.
std::string Row(const std::string& text) { return ForTerminal(text, /*keep_newlines=*/false) + "\n"; }

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

// How far the plan's current walk is: an upgrade counts nodes Done (or
// RolledBack, an earlier walk's), a rollback only the nodes it walked back,
// out of those it walks back, paused or halted on the way included (found
// in review: during a rollback the upgraded nodes counted as done, and the
// ETA never shrank). `since` is when the walk began; `last_done` when its
// last node finished.
struct WalkProgress {
  int done = 0, total = 0;
  int64_t since = 0, last_done = 0;
};

bool RollingBack(const v1::FleetPlan& plan) {
  return plan.phase() == v1::PLAN_PHASE_ROLLING_BACK ||
         plan.phase() == v1::PLAN_PHASE_ROLLED_BACK;
}

// Walking its nodes back, or stopped on the way (paused, halted, in
// break-glass, to resume RollingBack). A rolled-back upgrade keeps its
// kind: only the phases tell.
bool WalkingBack(const v1::FleetPlan& plan) {
  return plan.kind() == v1::PLAN_KIND_ROLLBACK || RollingBack(plan) ||
         plan.resume_phase() == v1::PLAN_PHASE_ROLLING_BACK;
}

WalkProgress ProgressOf(const v1::FleetPlan& plan) {
  WalkProgress p;
  p.since = plan.created_unix_ms();
  if (!WalkingBack(plan)) {
    p.total = plan.nodes_size();
    for (const v1::PlanNode& n : plan.nodes()) {
      if (n.phase() != v1::PLAN_NODE_PHASE_DONE && n.phase() != v1::PLAN_NODE_PHASE_ROLLED_BACK) {
        continue;
      }
      ++p.done;
      p.last_done = std::max(p.last_done, n.done_unix_ms());
    }
    return p;
  }
  for (const v1::AuditEntry& a : plan.audit()) {
    if (a.what() == "rollback") p.since = a.at_unix_ms();  // the newest
  }
  for (const v1::PlanNode& n : plan.nodes()) {
    switch (n.phase()) {
      case v1::PLAN_NODE_PHASE_ROLLED_BACK:
        ++p.done;
        p.last_done = std::max(p.last_done, n.phase_since_unix_ms());
        [[fallthrough]];
      case v1::PLAN_NODE_PHASE_DONE:
      case v1::PLAN_NODE_PHASE_IN_FLIGHT:
        ++p.total;
        break;
      default:
        break;
    }
  }
  return p;
}

std::string NodeLine(const v1::PlanNode& n, int64_t now) {
  std::string phase(PlanNodePhaseName(n.phase()));
  std::string stage = StageName(n.stage());
  if (!stage.empty()) phase += " (" + stage + ")";
  std::string line = "  " + Pad(n.node(), 14) + Pad(phase, 36);
  if (n.phase_since_unix_ms() > 0 && now >= n.phase_since_unix_ms()) {
    line += FormatDuration(now - n.phase_since_unix_ms());
  }
  // A finished step: how long it took, from the slot to its end.
  const bool ended =
      n.phase() == v1::PLAN_NODE_PHASE_DONE || n.phase() == v1::PLAN_NODE_PHASE_ROLLED_BACK;
  if (ended && n.in_flight_since_unix_ms() > 0 && n.done_unix_ms() >= n.in_flight_since_unix_ms()) {
    line += "  (its step took " + FormatDuration(n.done_unix_ms() - n.in_flight_since_unix_ms()) +
            ")";
  }
  if (!n.reason().empty()) {
    line += "  [" + n.reason() + "] " + n.message();
  } else if (ended && !n.apiserver_restart().empty()) {
    line += "  kube-apiserver: " + n.apiserver_restart();
  } else if (n.stage() != v1::PLAN_STEP_STAGE_UNSPECIFIED && !n.message().empty()) {
    // In its step with no failure: sent again, or giving its slot back,
    // after its agent stopped.
    line += "  " + n.message();
  }
  return line;
}

std::string Bar(const v1::FleetPlan& plan, int64_t now) {
  const WalkProgress walk = ProgressOf(plan);
  const int total = walk.total;
  const int done = walk.done;
  const int filled = total == 0 ? 0 : done * kBarWidth / total;
  std::string bar = "  [" + std::string(filled, '#') + std::string(kBarWidth - filled, '.') +
                    "] " + std::to_string(done) + "/" + std::to_string(total) + " nodes  " +
                    std::string(PlanPhaseName(plan.phase()));
  if (plan.created_unix_ms() > 0 && now > plan.created_unix_ms()) {
    bar += "  elapsed " + FormatDuration(now - plan.created_unix_ms());
  }
  if (done > 0 && done < total && !IsFinished(plan.phase()) && walk.last_done > walk.since) {
    // The mean time per node so far, preflight included: a rough ETA.
    const int64_t per_node = (walk.last_done - walk.since) / done;
    bar += "  ETA ~" + FormatDuration(per_node * (total - done));
  }
  return bar;
}

}  // namespace

std::string FormatUnixMs(int64_t ms) {
  if (ms <= 0) return "-";
  const time_t seconds = static_cast<time_t>(ms / 1000);
  struct tm utc {};
  if (gmtime_r(&seconds, &utc) == nullptr) return std::to_string(ms);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &utc);
  return buf;
}

std::string FormatDuration(int64_t ms) {
  int64_t s = std::max<int64_t>(0, ms) / 1000;
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s % 3600 / 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  }
  return buf;
}

std::vector<std::string> RenderProgress(const v1::PlanView& view) {
  std::vector<std::string> lines;
  if (!view.has_plan()) {
    lines.push_back("no plan has been committed yet");
    return lines;
  }
  const v1::FleetPlan& plan = view.plan();
  lines.push_back("plan " + plan.plan_id() + ": " +
                  (WalkingBack(plan) ? "rollback to " + plan.version_before()
                                     : "upgrade to " + plan.target_version()));
  for (const v1::PlanNode& n : plan.nodes()) lines.push_back(NodeLine(n, view.now_unix_ms()));
  lines.push_back(Bar(plan, view.now_unix_ms()));
  if (!plan.halt().reason().empty()) {
    lines.push_back("  halted: [" + plan.halt().reason() + "] " + plan.halt().message());
  }
  if (plan.phase() == v1::PLAN_PHASE_BREAK_GLASS) {
    lines.push_back("  BREAK-GLASS on " + plan.break_glass().node() + ": [" +
                    plan.break_glass().reason() + "] " + plan.break_glass().failure());
    lines.push_back("  after the manual steps (kmsfleetctl plan): kmsfleetctl ack-break-glass " +
                    plan.break_glass().nonce());
  }
  if (!view.blocked_reason().empty() && !IsFinished(plan.phase())) {
    lines.push_back("  waiting: [" + view.blocked_reason() + "] " + view.blocked_message());
  }
  // One screen line each: watch redraws by counting them.
  for (std::string& line : lines) line = ForTerminal(line, /*keep_newlines=*/false);
  return lines;
}

std::vector<std::string> FitToWidth(std::vector<std::string> lines, size_t columns) {
  if (columns < 4) return lines;
  for (std::string& line : lines) {
    // Cut on a character boundary: never inside a UTF-8 sequence.
    if (line.size() < columns) continue;
    size_t cut = columns - 4;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
    line = line.substr(0, cut) + "...";
  }
  return lines;
}

std::vector<std::string> WatchLog::Next(const v1::PlanView& view) {
  // A line is new when it says something new, not when only its elapsed
  // time moved on: lines are compared without times and printed with them
  // (the same lines, in the same order, either way).
  v1::PlanView timeless = view;
  timeless.set_now_unix_ms(0);
  std::vector<std::string> timed = RenderProgress(view);
  std::vector<std::string> untimed = RenderProgress(timeless);
  std::vector<std::string> fresh, keys;
  for (size_t i = 0; i < untimed.size(); ++i) {
    const std::string& line = untimed[i];
    // A wait is the same line whatever its message says this time.
    std::string key = line.rfind("  waiting: [", 0) == 0 ? line.substr(0, line.find(']')) : line;
    if (std::find(previous_.begin(), previous_.end(), key) == previous_.end()) {
      fresh.push_back(i < timed.size() ? timed[i] : line);
    }
    keys.push_back(std::move(key));
  }
  previous_ = std::move(keys);
  return fresh;
}

std::string RenderPlan(const v1::PlanView& view) {
  if (!view.has_plan()) return "no plan has been committed yet\n";
  const v1::FleetPlan& plan = view.plan();
  std::ostringstream out;
  for (const std::string& line : RenderProgress(view)) out << line << "\n";
  out << Row("  from " + plan.version_before() + ", revision " +
             std::to_string(plan.revision()) + ", coordinator " + view.coordinator() +
             ", in flight " + (plan.in_flight().empty() ? "none" : plan.in_flight()));
  if (plan.abort_requested()) out << "  abort requested: stops before the next node\n";
  // What the releases crossed ask of the operator beyond this plan (the
  // catalog's "upgrade every node before the next rotation", say): shown
  // while the plan lasts, not only in a refusal.
  if (plan.compat().notes_size() > 0) {
    out << "release notes of the versions crossed:\n";
    for (const std::string& note : plan.compat().notes()) out << Row("  - " + note);
  }
  if (plan.phase() == v1::PLAN_PHASE_BREAK_GLASS) {
    out << "  manual steps:\n";
    for (const std::string& step : plan.break_glass().manual_steps()) {
      out << Row("    - " + step);
    }
  }
  out << "guards:\n";
  for (const v1::GuardRecord& g : plan.guards()) {
    out << Row("  " + Pad(g.guard(), 20) +
               (g.reason().empty() ? "pass" : "[" + g.reason() + "] " + g.message()));
  }
  out << "audit:\n";
  if (plan.audit_dropped() > 0) out << "  (" << plan.audit_dropped() << " older entries dropped)\n";
  for (const v1::AuditEntry& a : plan.audit()) {
    std::string row = "  " + FormatUnixMs(a.at_unix_ms()) + "  " + Pad(a.who(), 24) + a.what();
    for (const std::string& ack : a.acknowledgements()) row += "  ack:" + ack;
    out << Row(row);
  }
  return ForTerminal(out.str());
}

namespace {

// A rollback's dry run leads with the command's own guard.
bool IsRollbackDryRun(const v1::PlanView& view) {
  return view.dry_run_size() > 0 && view.dry_run(0).guard() == "rollback";
}

// The closing line of a refused dry run: refused now, or started and then
// held by the guards that refuse.
std::string RefusedDryRunEnding(const v1::PlanView& view) {
  const bool rollback = IsRollbackDryRun(view);
  bool at_start = false;
  for (const v1::GuardResult& g : view.dry_run()) {
    const bool refuses = rollback ? RefusesTheRollback(g.guard()) : RefusesTheStart(g.guard());
    at_start = at_start || (!g.reason().empty() && g.reason() != "NOT_EVALUATED" && refuses);
  }
  if (at_start) return "a real run would be refused now\n";
  // A plan's start checks only some; the others hold it, committed, in its
  // Preflight phase (a rollback: before its first node) until they pass
  // (fleet-plan.md).
  if (!rollback) {
    return "a real run would start, then wait before the first swap until the guards that "
           "refuse above pass\n";
  }
  if (view.dry_run_order_size() == 0) {
    return "a real rollback would be accepted, then wait until the guards that refuse above "
           "pass, and end the plan RolledBack\n";
  }
  return "a real rollback would start, then wait before its first node until the guards "
         "that refuse above pass\n";
}

// A rollback's dry run from a coordinator older than the gates' rows: the
// rollback's own row alone, and no order with it.
bool WithoutGateRows(const v1::PlanView& view) { return view.dry_run_size() == 1; }

// A rollback's dry run whose command would be accepted: the walk-back
// order, or why there is none.
std::string WalkBackLine(const v1::PlanView& view) {
  if (WithoutGateRows(view)) return "walk-back order: not reported by this coordinator";
  if (view.dry_run_order_size() == 0) {
    return "walk-back order: none (no node to walk back)";
  }
  std::string order = "walk-back order:";
  for (const std::string& n : view.dry_run_order()) order += " " + n;
  return order;
}

// The closing line of a rollback's dry run that no guard refuses.
std::string UnrefusedRollbackEnding(const v1::PlanView& view) {
  if (WithoutGateRows(view)) {
    return "a real run would start now (this coordinator's kmsfleetd does not report the "
           "gates: they are checked before each node of the walk back)\n";
  }
  if (view.dry_run_order_size() == 0) {
    return view.dry_run_would_start()
               ? "a real rollback would end the plan RolledBack now\n"
               : "no guard refuses: a real rollback would be accepted, and end the plan "
                 "RolledBack once parity's rounds come (PARITY_NOT_STABLE)\n";
  }
  if (!view.dry_run_would_start()) {
    return "no guard refuses: a real rollback would start, and wait for parity's rounds "
           "(PARITY_NOT_STABLE) or the soak (SOAK_IN_PROGRESS) before its first node\n";
  }
  return "a real run would start now\n";
}

}  // namespace

std::string RenderDryRun(const v1::PlanView& view) {
  std::ostringstream out;
  const bool rollback = IsRollbackDryRun(view);
  const bool accepted = rollback && view.dry_run(0).reason().empty();
  if (accepted) {
    out << Row(WalkBackLine(view));
  } else if (!rollback && view.dry_run_order_size() > 0) {
    std::string order = "node order:";
    for (const std::string& n : view.dry_run_order()) order += " " + n;
    out << Row(order);
  }
  out << "guards (as a real run evaluates them; nothing was changed):\n";
  for (const v1::GuardResult& g : view.dry_run()) {
    // A pass may carry a note (the release notes crossed).
    const std::string pass = g.message().empty() ? "pass" : "pass; " + g.message();
    out << Row("  " + Pad(g.guard(), 20) +
               (g.reason().empty() ? pass : "[" + g.reason() + "] " + g.message()));
  }
  if (DryRunNothingToDo(view)) {
    out << "nothing to do: every node already runs the target; a real run would change "
           "nothing\n";
  } else if (DryRunRefused(view)) {
    out << RefusedDryRunEnding(view);
  } else if (rollback) {
    out << UnrefusedRollbackEnding(view);
  } else if (!view.dry_run_would_start()) {
    out << "no guard refuses: a real run would start, and check the guards marked "
           "NOT_EVALUATED (and wait for parity's rounds, when PARITY_NOT_STABLE) in its "
           "Preflight phase, before any swap\n";
  } else {
    out << "a real run would start now\n";
  }
  return ForTerminal(out.str());
}

bool DryRunRefused(const v1::PlanView& view) {
  if (DryRunNothingToDo(view)) return false;
  for (const v1::GuardResult& g : view.dry_run()) {
    // Not refusals: a guard left to the real run, parity held for fewer
    // rounds than the plan asks (it comes by itself, a round a tick), and
    // a rollback's wait for the soak. ALREADY_AT_TARGET is either the
    // no-op above or comes after a guard that refused.
    if (!g.reason().empty() && g.reason() != "NOT_EVALUATED" &&
        g.reason() != reason::kParityNotStable && g.reason() != reason::kSoakInProgress) {
      return true;
    }
  }
  return false;
}

bool DryRunNothingToDo(const v1::PlanView& view) {
  // In the start's order (the dry run lists the guards so): a refusal
  // before the version policy's answers first; after it, none is asked.
  // Found in review: a fleet on the target with OpenBao down read as
  // refused, exit 1, though a real run says nothing to do.
  for (const v1::GuardResult& g : view.dry_run()) {
    if (g.reason() == reason::kAlreadyAtTarget) return true;
    if (g.guard() == "version policy") return false;
    if (!g.reason().empty() && g.reason() != "NOT_EVALUATED") return false;
  }
  return false;
}

namespace {

// The operator commands a finished plan took after its start (pause,
// resume, abort, rollback, ack-break-glass), one indented row each: who,
// when, and the acknowledgement. The coordinator's own entries stay in
// `plan`.
std::string OperatorCommandsAfterTheStart(const v1::FleetPlan& plan) {
  static const std::set<std::string> kCommands = {"pause", "resume", "abort", "rollback",
                                                  "ack-break-glass"};
  std::string rows;
  for (int i = 1; i < plan.audit_size(); ++i) {
    const v1::AuditEntry& a = plan.audit(i);
    if (!kCommands.contains(a.what())) continue;
    std::string row = "    " + FormatUnixMs(a.at_unix_ms()) + "  " + Pad(a.what(), 16) + "by " +
                      a.who();
    for (const std::string& ack : a.acknowledgements()) row += "  ack:" + ack;
    rows += Row(row);
  }
  return rows;
}

}  // namespace

std::string RenderHistory(const v1::PlanHistory& history) {
  if (history.plans().empty()) return "no finished plan yet\n";
  std::ostringstream out;
  for (const v1::FleetPlan& p : history.plans()) {
    std::string row = Pad(p.plan_id(), 28) + Pad(std::string(PlanPhaseName(p.phase())), 12) +
                      p.version_before() + " -> " + p.target_version() + "  " +
                      FormatUnixMs(p.created_unix_ms()) + "  " +
                      FormatDuration(p.updated_unix_ms() - p.created_unix_ms());
    if (!p.audit().empty()) row += "  by " + p.audit(0).who();
    // The first entry is the start, with the acknowledgements it needed.
    if (!p.audit().empty()) {
      for (const std::string& ack : p.audit(0).acknowledgements()) row += " ack:" + ack;
    }
    // A rollback goes on under the upgrade's id: who asked for it too.
    for (int i = p.audit_size() - 1; i > 0; --i) {
      if (p.audit(i).what() == "rollback") {
        row += ", rollback by " + p.audit(i).who();
        break;
      }
    }
    if (!p.halt().reason().empty()) row += "  [" + p.halt().reason() + "]";
    out << Row(row);
    out << OperatorCommandsAfterTheStart(p);
  }
  return ForTerminal(out.str());
}

bool PlanSettled(const v1::FleetPlan& plan, bool* ok) {
  const v1::PlanPhase phase = plan.phase();
  *ok = phase == v1::PLAN_PHASE_COMPLETED || phase == v1::PLAN_PHASE_ROLLED_BACK;
  return IsFinished(phase) || phase == v1::PLAN_PHASE_HALTED ||
         phase == v1::PLAN_PHASE_BREAK_GLASS;
}

bool WatchEnds(const v1::FleetPlan& plan, v1::PlanPhase wanted, bool* ok) {
  if (wanted != v1::PLAN_PHASE_UNSPECIFIED && plan.phase() == wanted) {
    *ok = true;
    return true;
  }
  // An abort of a Halted plan whose node is still in flight (after an
  // acknowledged break-glass) takes effect at that node's hand-off; until
  // then the plan stays Halted with the abort recorded.
  if (wanted == v1::PLAN_PHASE_ABORTED && plan.phase() == v1::PLAN_PHASE_HALTED &&
      plan.abort_requested()) {
    return false;
  }
  return PlanSettled(plan, ok);
}

}  // namespace kmsfleet
