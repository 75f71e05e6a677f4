#include "kmsfleet/core/plan_history.h"

#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet {

std::optional<v1::PlanHistory> RecordFinishedPlan(const v1::PlanHistory& history,
                                                  const v1::FleetPlan& plan, int max_plans) {
  if (!IsFinished(plan.phase())) return std::nullopt;
  for (const v1::FleetPlan& p : history.plans()) {
    if (p.plan_id() == plan.plan_id() && p.revision() >= plan.revision()) return std::nullopt;
  }
  v1::PlanHistory next;
  *next.add_plans() = plan;
  for (const v1::FleetPlan& p : history.plans()) {
    if (next.plans_size() >= max_plans) break;
    if (p.plan_id() != plan.plan_id()) *next.add_plans() = p;
  }
  return next;
}

}  // namespace kmsfleet
