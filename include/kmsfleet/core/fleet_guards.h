// Guards over what the fleet reports now (architecture.md §5, issue 9):
// fleet health, key_id parity (once and stable over N observations),
// OpenBao health, rotation, doctor with the new binary, and rollback
// readiness. Pure: the shell gathers the observations and passes them in.
//
// Every guard returns OK (pass) or FailedPrecondition whose ErrorInfo holds
// a stable reason (reasons.h), metadata `nodes` (comma-separated) and
// `remedy`, and whose message names the nodes and observed values and then
// says what to do.
//
// Thread-safe: free functions over values; ParityStreak is a value.
#ifndef KMSFLEET_CORE_FLEET_GUARDS_H_
#define KMSFLEET_CORE_FLEET_GUARDS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

// What the coordinator last heard from one node's agent.
struct NodeView {
  std::string node;
  // The newest NodeState the agent returned; nullopt if it never answered.
  std::optional<v1::NodeState> state;
  // > 0 while the agent does not answer: when it first failed to.
  int64_t unreachable_since_unix_ms = 0;
  // The provider's key-registry.json facts, when the agent reported them.
  std::optional<RegistryFacts> registry;
  // How long the agent took to answer in its round, when timed (0: not),
  // so that a round too old to start on names its slowest voter.
  int64_t answered_in_ms = 0;
};

// The view of `node` in `views`, or null when there is none.
const NodeView* FindView(const std::vector<NodeView>& views, const std::string& node);

// Every voter's agent answers and its provider is live and ready. Refusals:
// AGENT_UNREACHABLE (names each node and since when, or "never answered";
// a voter absent from `views` counts as never answered), PROVIDER_NOT_LIVE,
// PROVIDER_NOT_READY (with the /ready reasons).
absl::Status CheckFleetHealth(const std::vector<std::string>& voters,
                              const std::vector<NodeView>& views,
                              int64_t now_unix_ms);

// One observation of parity: every node reports exactly one key_id hash
// series, its KMS socket agrees, and all nodes report the same hash.
// Refusals: AGENT_UNREACHABLE (no state), KEY_ID_HASH_MISSING,
// KEY_ID_HASH_AMBIGUOUS (two series, or metric and socket disagree),
// FLEET_PARITY_MISMATCH (names each node with its hash).
absl::Status CheckParityOnce(const std::vector<NodeView>& views);

// The kmsfleet_fleet_key_id_parity gauge: every node in `views` answered
// the round and CheckParityOnce passes on them, as the plan's parity guard
// reads them (a node whose metric and KMS socket disagree is not in parity).
bool FleetInParity(const std::vector<NodeView>& views);

// Counts consecutive observation rounds in which CheckParityOnce passed with
// the same hash. A round is counted only when every node's observed_at
// differs from the last counted round's, so re-reading the same states does
// not make parity look stable. (Differs, not newer: an agent's clock may
// step back.)
class ParityStreak {
 public:
  void Observe(const std::vector<NodeView>& views);
  // Starts counting again from zero (e.g. after a node was swapped). Rounds
  // already counted stay counted, so the next round must be another.
  void Reset() {
    consecutive_ = 0;
    hash_.clear();
  }
  // Starts counting again with `views` as the first round, even if it was
  // counted already: the caller asked every node for them after the event
  // that ends the old streak (a node's operation ended). A view kept from
  // an earlier round (its node did not answer this one) predates that
  // event, so then nothing counts until a newer round.
  void RestartWith(const std::vector<NodeView>& views);
  int consecutive() const { return consecutive_; }
  const std::string& hash() const { return hash_; }
  // Why the last round failed; OK when it passed or none was seen.
  const absl::Status& last_problem() const { return last_problem_; }

 private:
  bool IsNewRound(const std::vector<NodeView>& views) const;

  int consecutive_ = 0;
  std::string hash_;
  absl::Status last_problem_;
  std::map<std::string, int64_t> last_counted_ms_;
};

// Default number of consecutive observations parity must hold for.
inline constexpr int kDefaultParityObservations = 3;

// Passes when `streak` has held for at least `required` rounds. Otherwise
// the last round's refusal, or PARITY_NOT_STABLE naming the hash and the
// count ("held for 1 of 3 consecutive observations").
absl::Status CheckParityStable(const ParityStreak& streak, int required);

// ---- OpenBao (GET <openbao.address>/v1/sys/health) ----

// Bodies larger than this are refused; real ones are a few hundred bytes.
inline constexpr size_t kMaxOpenBaoHealthBytes = 64 << 10;

struct OpenBaoProbe {
  std::string address;       // for messages
  // Non-OK: no answer (reason INPUT_TOO_LARGE: an answer over the bound).
  absl::Status transport;
  int status = 0;            // HTTP status code
  std::string body;
};

// Passes when OpenBao answers initialized, unsealed and not standby
// (`initialized`, `sealed`, `standby` from the JSON body; when the body lacks
// them, the status code: 200 active, 429/472/473 standby, 501 uninitialized,
// 503 sealed). Refusals: OPENBAO_UNREACHABLE (transport error or another
// status), OPENBAO_UNINITIALIZED, OPENBAO_SEALED, OPENBAO_STANDBY,
// MALFORMED_OPENBAO_HEALTH (not JSON, wrong types, or a transport error
// with reason INPUT_TOO_LARGE: the prober refused a body over the bound),
// INPUT_TOO_LARGE (`body` itself over the bound).
absl::Status CheckOpenBaoHealth(const OpenBaoProbe& probe);

// ---- Rotation (reference §2.6, §10 gate 2-3) ----

struct NodeRotation {
  std::string node;
  int exit_code = 0;  // of `rotation-plan --output json`
  absl::StatusOr<RotationReport> report = absl::UnknownError("not run");
  // openbao_kms_rotation_state with value 1 (NodeState.rotation_state).
  std::string metric_state;
};

// Passes when on every node rotation-plan exited 0 with
// transitMetadataStatus pass, rotationState active, no pending key, and the
// metric says active too. Refusals: ROTATION_PLAN_UNTRUSTED (exit code,
// unparsable report, transitMetadataStatus not pass), ROTATION_IN_PROGRESS
// (rotationState not active or a pending key), STATE_CHECKPOINT_NOT_CURRENT
// (a stateCheckpointStatus other than current, unless the plan
// acknowledged it), ROTATION_METRIC_DISAGREES.
absl::Status CheckRotation(const std::vector<NodeRotation>& nodes,
                           bool checkpoint_acknowledged = false);

// `node`'s rotation as its agent's Preflight answer tells it, with the
// metric state the coordinator observed. An answer without a report (the
// command failed or printed none) carries the agent's reason, which
// makes the report untrusted; otherwise the report's fields that
// CheckRotation judges, Transit versions included (found in review: they
// were dropped, so a latest version above the active one, which the agent
// itself refuses, passed the plan's guard).
NodeRotation RotationOfPreflight(const std::string& node, const std::string& metric_state,
                                 const v1::PreflightResponse& response);

// Passes when every node's openbao_kms_rotation_state is active (the gate
// between nodes; rotation-plan itself runs at preflight). Refusal:
// ROTATION_IN_PROGRESS naming each node and its state.
absl::Status CheckRotationMetric(const std::vector<NodeView>& views);

// ---- Before the first swap ----

struct NodeDoctor {
  std::string node;
  bool ran = false;     // a result exists for the new binary
  bool passed = false;  // no `fail` check
  std::string failed_checks;  // ids of failing checks, for the message
};

// Passes when the new binary's doctor ran and passed on every node.
// Refusal: DOCTOR_FAILED naming each node and its failing checks (or "not
// run").
absl::Status CheckDoctor(const std::vector<NodeDoctor>& nodes);

struct NodeArtifact {
  std::string node;
  std::string previous_version;
  bool present_and_verified = false;
};

// Passes when every node holds the previous release's verified artifact.
// Refusal: ROLLBACK_ARTIFACT_MISSING naming each node and version.
absl::Status CheckRollbackReadiness(const std::vector<NodeArtifact>& nodes);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_FLEET_GUARDS_H_
