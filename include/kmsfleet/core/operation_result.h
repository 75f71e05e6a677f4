// How a finished node operation reads as a plan result. The coordinator
// (src/cluster/fleet_actions.cc) fills results with it from the agents'
// answers, and the simulator and explorer (tests/sim) from their simulated
// agents, so the plan machine is checked against what it is really given.
#ifndef KMSFLEET_CORE_OPERATION_RESULT_H_
#define KMSFLEET_CORE_OPERATION_RESULT_H_

#include <string>

#include "absl/status/status.h"

#include "kmsfleet/core/plan_types.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

// How a journal's phase ends an operation for the plan (kNotFound while
// it runs).
OperationOutcome OutcomeOfPhase(const std::string& phase);

// Fills `r` from an operation that is done. One that ended before it
// stopped the provider (Idle, Staged, Preflighted: a doctor failure, a
// full disk, AGENT_STOPPING or AGENT_RESTARTED) failed with the provider
// untouched: a FailedPrecondition carrying the operation's reason, as a
// refused command is. (Read as kNotFound it was sent again under the same
// id and answered the same, forever: the plan hung in Rolling.) One closed
// at any other phase without an ending reads as kRollbackFailed: its
// provider's state is unknown.
void SetOperationResult(const v1::Operation& operation, ActionResult& r);

// How an agent's refusal of a swap, rollback or kube-apiserver restart
// reads for the plan. Some refusals say nothing about the command asked:
// OPERATION_IN_PROGRESS (another operation holds the node, or this very
// command is still being admitted after a call that timed out), a caller
// the agent does not let in (UNKNOWN_CALLER, VOTER_ONLY, ...: checked
// before the agent looks the operation id up), and an unreadable journal
// of that id (JOURNAL_CORRUPT). Each may answer a command sent again under
// an id the node already admitted. They come back Unavailable, keeping
// their reason (asked again later), where a refusal as it came would fail
// the node's step while its operation runs or after it ended Stable.
// Any other refusal is returned unchanged.
absl::Status CommandRefusalForPlan(absl::Status refusal);

// Fills `r` (kHandOff) from the coordinator's hand-off query. Only the
// holder's own answer that it keeps its slot (NOT_RELEASABLE: its last
// operation left the provider down or unknown) is a result, `released`
// false, and it leads to break-glass. Anything else that is not OK (still
// running, unreachable, a fence whose record has not committed yet, a term
// that moved on) says nothing of the node: Unavailable, asked again.
void SetHandOffResult(const absl::Status& asked, ActionResult& r);

// Whether the plan sends the action of `r` again as soon as it has it: a
// "not now" (Unavailable: an agent down, starting or busy, no record of
// the term yet), or an operation its node does not know (sent follow-only
// while a peer is unhealthy, it is asked for again each round). Either
// may come back within a millisecond; the shell paces them to a tick. (A
// paused plan acts on an unknown operation, giving the slot back: that
// waits the same tick, which changes nothing.)
// Found in review: an unknown operation was asked for back to back, each
// time with an observation round of every voter.
bool AsksAgainAtOnce(const ActionResult& r);

// How a WatchOperation stream that closed before its operation was done
// reads. A transient end (the stream's own deadline, the caller's cancel,
// an agent restarting or out of reach) opens it again; an agent that does
// not know the operation makes it kNotFound, so the plan sends the command
// again (it is idempotent under its id); any other end (a refused caller,
// an unreadable journal) will not change by opening it again: kFailed,
// which SetFollowFailed turns into the result.
enum class WatchEnd { kOpenAgain, kNotFound, kFailed };
WatchEnd ReadWatchEnd(absl::StatusCode code);

// Transient ends in a row that brought no word from the node (an agent
// answers a watch with the operation at once) before the node counts as
// unreachable: a few seconds for a refused connection, 15 s for a host
// that is gone. Found in review: a node whose host died mid-swap was
// followed in silence until the term ended, the plan showing no reason.
inline constexpr int kSilentWatchesBeforeUnreachable = 3;

// What a follow does once a stream closed before its operation was done:
// watch again, send the command again (kNotFound), or stop and fill the
// result with SetFollowFailed (kFailed, and the kSilentWatchesBeforeUnreachable-th
// silent end in a row). `heard` says the stream brought any operation
// state; `silent_in_a_row` carries the count from one stream to the next.
WatchEnd NextFollowStep(absl::StatusCode end, bool heard, int& silent_in_a_row);

// Fills `r` from a watch of the operation `operation_id` that cannot go on
// (it ended kFailed with `why`, or the node stayed silent). The operation
// runs, or ran, whatever the watch said: Unavailable, keeping the agent's
// reason for the plan's "waiting for" line, so the plan asks again under
// the same id. (A refusal as it came read as "refused before anything
// ran": a swap that ended Stable failed the node, and --auto-rollback
// walked the fleet back.)
void SetFollowFailed(const absl::Status& why, const std::string& operation_id,
                     ActionResult& r);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_OPERATION_RESULT_H_
