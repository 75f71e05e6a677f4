// How kmsfleetctl shows a fleet plan: `plan` (the whole record), `watch`
// (one line per node, a bar and an ETA), dry runs and `history`. Pure:
// every function renders the view it is given at the time it is given.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CLI_PLAN_RENDER_H_
#define KMSFLEET_CLI_PLAN_RENDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

// "1h02m", "3m05s", "12s".
std::string FormatDuration(int64_t ms);
// A wall-clock time in UTC, "2026-12-05 08:04:00Z"; "-" for none.
std::string FormatUnixMs(int64_t ms);

// `kmsfleetctl plan`: phase, target, per node phase and timings, guards,
// halt or break-glass, audit; "no plan" when none was ever committed.
std::string RenderPlan(const v1::PlanView& view);

// `kmsfleetctl watch`: the progress lines for `view` at view.now_unix_ms:
// one line per node (phase, stage, elapsed), then the fleet bar with the
// nodes done and an ETA from the mean time of the nodes done so far, then
// why the plan waits, if it does.
std::vector<std::string> RenderProgress(const v1::PlanView& view);

// `watch` on a terminal `columns` wide (0: unknown): each line cut to fit
// one screen row, since the redraw moves up one row per line drawn.
std::vector<std::string> FitToWidth(std::vector<std::string> lines, size_t columns);

// `watch` without a terminal: of each view's progress lines, those the
// previous view did not show, compared without their times and printed
// with them; a wait is one line per reason while it lasts. A state that
// comes back (Rolling after Paused) is printed again.
class WatchLog {
 public:
  std::vector<std::string> Next(const v1::PlanView& view);

 private:
  std::vector<std::string> previous_;  // the last view's line keys
};

// A dry run: the node order and every guard's result, one per line.
std::string RenderDryRun(const v1::PlanView& view);

// True when a dry run's guard refused (one that was not evaluated, such
// as doctor before anything is staged, does not count; nor does any when
// there is nothing to do).
bool DryRunRefused(const v1::PlanView& view);
// Whether the version policy found every node on the target already
// (ALREADY_AT_TARGET) with no guard before it refusing: as a real start,
// a no-op whatever the guards after it say.
bool DryRunNothingToDo(const v1::PlanView& view);

// `kmsfleetctl history`: one line per finished plan, newest first.
std::string RenderHistory(const v1::PlanHistory& history);

// True once the plan can no longer move without an operator: finished,
// Halted or BreakGlass. `ok` says whether it ended where it was meant to
// (Completed, or RolledBack after a rollback command).
bool PlanSettled(const v1::FleetPlan& plan, bool* ok);

// Whether `watch`, following the command that led to `wanted` (pause:
// Paused, abort: Aborted, ack-break-glass: Halted; UNSPECIFIED for none),
// ends at `plan`: reaching `wanted` ends it with `ok` true; otherwise as
// PlanSettled says.
bool WatchEnds(const v1::FleetPlan& plan, v1::PlanPhase wanted, bool* ok);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_PLAN_RENDER_H_
