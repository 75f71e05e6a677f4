// The inputs and outputs of the fleet plan machine (plan_machine.h;
// architecture.md §5, docs/fleet-plan.md): what the shell observed, what
// came back from the actions it carried out, what an operator asked for,
// and the actions the machine asks for in return.
//
// Thread-safe: plain values.
#ifndef KMSFLEET_CORE_PLAN_TYPES_H_
#define KMSFLEET_CORE_PLAN_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/core/changelog.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

// What `kmsfleetctl upgrade` asks for.
struct PlanRequest {
  std::string target_version;
  // Node order; empty = sorted by name with the coordinator's node last.
  std::vector<std::string> order;
  // soak_ms, stabilization_ms, parity_observations (0 = 3), auto_rollback,
  // apiserver_restart_method, artifact sources.
  v1::PlanSettings settings;
  // From the policy (FactsCrossed) and the changelog (FlagsCrossed) for the
  // installed version and the target, computed by the shell.
  v1::CompatFacts facts;
  std::vector<ChangelogFlag> changelog;
  std::vector<std::string> acknowledgements;
};

enum class CommandKind { kStart, kPause, kResume, kAbort, kRollback, kAckBreakGlass };

struct OperatorCommand {
  CommandKind kind = CommandKind::kStart;
  // Operator certificate identity, or "local root" over the unix socket.
  std::string who;
  PlanRequest request;  // kStart
  std::string nonce;    // kAckBreakGlass
};

enum class ResultKind { kStaged, kPreflighted, kOperation, kApiServerRestarted, kHandOff };

// How a swap or rollback operation on a node ended (Agent.GetOperation).
enum class OperationOutcome { kNotFound, kStable, kRolledBack, kRollbackFailed };

// The result of one action. `status` non-OK means the action failed: with
// code Unavailable (could not reach the node) it is retried; otherwise its
// reason is the failure.
struct ActionResult {
  ResultKind kind = ResultKind::kStaged;
  std::string node;
  // PlanAction.revision of the action answered (0 = unknown).
  uint64_t revision = 0;
  absl::Status status;
  bool previous_artifact_verified = false;  // kStaged
  std::string staged_digest;                // kStaged
  NodeDoctor doctor;                        // kPreflighted
  NodeRotation rotation;                    // kPreflighted
  std::string operation_id;                 // kOperation
  OperationOutcome outcome = OperationOutcome::kNotFound;  // kOperation
  std::string outcome_reason, outcome_message;             // kOperation
  bool released = false;                    // kHandOff
  std::string apiserver_restart{};          // kApiServerRestarted: "<method>: <done>"
  // kHandOff, released: ReleaseReply.last_operation_id and _phase.
  std::string last_operation_id{}, last_operation_phase{};
};

struct PlanInput {
  int64_t now_unix_ms = 0;
  // The shell's monotonic clock (milliseconds from any origin; steady, so
  // a wall-clock step moves neither): now, and when the round in `views`
  // was asked for. A view may be as old as its round's asking, and a swap,
  // rollback or kube-apiserver restart is started only on a round asked
  // for at most kMaxViewsAgeAtSendMs ago.
  int64_t now_mono_ms = 0;
  int64_t views_asked_mono_ms = 0;
  // The newest observation of every node (voters absent count as never
  // answered).
  std::vector<NodeView> views;
  std::optional<OpenBaoProbe> openbao;  // nullopt = not probed yet
  // Results received before `views` were asked for: a round in `views` is
  // newer than every result here, so it may open the parity streak that
  // follows a node's operation. Unless `views_fresh` is false: then `views`
  // is the last round again, asked for before some results arrived, and
  // the machine takes the Step only if it reads no view (PlanMachine::Step).
  std::vector<ActionResult> results;
  bool views_fresh = true;
  std::optional<OperatorCommand> command;
  // Fresh randomness (break-glass nonces, plan ids).
  uint64_t random = 0;
};

enum class ActionKind {
  kStage,             // stage `version` on `node`
  kPreflight,         // doctor (new binary) + rotation-plan on `node`
  kSwap,              // swap `node` to `version` under plan `revision`
  kRollbackNode,      // roll `node` back (of_operation_id) under `revision`
  kRestartApiServer,  // restart kube-apiserver on `node` and await /readyz
  kHandOff,           // ask `node` whether its operation is finished
  kHalt,              // report: the plan halted (`why`)
  kBreakGlass,        // report: break-glass entered (`why`, nonce in plan)
};

std::string_view ActionKindName(ActionKind kind);
// The kind of result that answers an action of `kind` (kHalt and
// kBreakGlass are reports no node answers: kOperation).
ResultKind ResultKindOf(ActionKind kind);

struct PlanAction {
  ActionKind kind = ActionKind::kStage;
  std::string node;
  // The committed plan revision that authorises this action; the shell
  // sends the fence of the election record holding it.
  uint64_t revision = 0;
  std::string version;
  // kSwap, kRollbackNode; kRestartApiServer: the swap it follows.
  std::string operation_id;
  std::string of_operation_id;  // kRollbackNode: the swap to undo
  std::string expected_key_id_hash;
  std::string expected_staged_digest;  // kSwap: the node's staged digest, "" = any
  int64_t stabilization_ms = 0;
  // kSwap, kRollbackNode: false while the fleet gates do not hold: the
  // operation is followed if the node already runs it (or ran it), and
  // answered kNotFound, starting nothing, if it does not.
  bool start_allowed = true;
  std::string method;  // kRestartApiServer
  absl::Status why;    // kHalt, kBreakGlass
};

// Whether one of `actions` is carried out and answered with a result
// (kHalt and kBreakGlass are reports): the shell's next decision then
// waits for that result rather than for a round of its own.
bool SendsAnAction(const std::vector<PlanAction>& actions);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PLAN_TYPES_H_
