// The history of finished plans every agent keeps from the committed
// records it sees (`kmsfleetctl history`): newest first, one entry per
// plan, at most a given number of plans.
#ifndef KMSFLEET_CORE_PLAN_HISTORY_H_
#define KMSFLEET_CORE_PLAN_HISTORY_H_

#include <optional>

#include "kmsfleet/v1/fleet.pb.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

// `history` with `plan` recorded, or nullopt when nothing changes: the plan
// is not finished, or its entry already holds this revision or a newer
// one. A plan that finishes again under the same id (a Completed upgrade
// later rolled back ends RolledBack) replaces its entry and moves to the
// front, so the history shows how the plan ended last. Keeps the newest
// `max_plans`.
std::optional<v1::PlanHistory> RecordFinishedPlan(const v1::PlanHistory& history,
                                                  const v1::FleetPlan& plan, int max_plans);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PLAN_HISTORY_H_
