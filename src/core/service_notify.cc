#include "kmsfleet/core/service_notify.h"

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxPlanIdInStatus = 64;

std::string RoleText(const v1::LeaderView& view) {
  const std::string term = absl::StrCat(" term ", view.term());
  if (view.role() == "Leader") return "coordinator" + term;
  if (view.role() == "Follower") {
    if (view.leader().empty()) return "follower" + term + ", no coordinator";
    return "follower of " + view.leader() + term;
  }
  if (view.role() == "Candidate" || view.role() == "PreCandidate") {
    return "candidate" + term + ", no coordinator";
  }
  return "election role " + view.role() + term;
}

std::string PlanText(const v1::PlanRecord& committed) {
  if (committed.payload().empty()) return "no plan";
  // A raw record (`kmsfleetctl plan commit --payload`) is allowed.
  std::optional<v1::FleetPlan> plan = FleetPlanIn(committed.payload());
  if (!plan) return "raw record, no fleet plan";
  int done = 0;
  for (const v1::PlanNode& n : plan->nodes()) {
    done += n.phase() == v1::PLAN_NODE_PHASE_DONE || n.phase() == v1::PLAN_NODE_PHASE_ROLLED_BACK;
  }
  return absl::StrCat("plan ", plan->plan_id().substr(0, kMaxPlanIdInStatus), " ",
                      std::string(PlanPhaseName(plan->phase())), " ", done, "/", plan->nodes_size());
}

}  // namespace

WatchdogDecision DecideWatchdogPing(int64_t now_ms, int64_t watchdog_interval_ms,
                                    std::span<const LoopProgress> loops) {
  if (watchdog_interval_ms <= 0) return {false, "watchdog off"};
  const int64_t limit = watchdog_interval_ms / 2;
  WatchdogDecision d{true, ""};
  for (const LoopProgress& loop : loops) {
    std::string behind;
    if (loop.last_progress_ms <= 0) {
      behind = std::string(loop.name) + ": no progress yet";
    } else if (now_ms - loop.last_progress_ms > limit) {
      behind = absl::StrCat(std::string(loop.name), ": no progress for ", now_ms - loop.last_progress_ms,
                            " ms (limit ", limit, " ms)");
    }
    if (behind.empty()) continue;
    d.ping = false;
    d.why += (d.why.empty() ? "" : "; ") + behind;
  }
  return d;
}

std::string ServiceStatusText(std::string_view mode, const std::optional<v1::LeaderView>& election,
                              bool election_answered) {
  if (!election) return std::string(mode) + "; no cluster";
  if (!election_answered) return "election not answering";
  return RoleText(*election) + "; " + PlanText(election->committed());
}

}  // namespace kmsfleet
