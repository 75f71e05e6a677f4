// Guards over versions and release notes (architecture.md §5, issue 9):
// the version policy, release compatibility (policy facts, changelog notes,
// acknowledgements, API server restart), and rollback safety. Pure.
//
// Every guard returns OK (pass) or an error whose ErrorInfo holds a stable
// reason (reasons.h), metadata `nodes` and `remedy`, and whose message names
// the nodes and observed values and then says what to do. Refusals are
// FailedPrecondition; a target that is not SemVer is InvalidArgument.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_RELEASE_GUARDS_H_
#define KMSFLEET_CORE_RELEASE_GUARDS_H_

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/core/changelog.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

enum class PlanDirection { kUpgrade, kRollback };

struct NodeVersion {
  std::string node;
  std::string version;  // NodeState.provider_version; "" when unknown
};

struct VersionPolicyInput {
  PlanDirection direction = PlanDirection::kUpgrade;
  std::string target;
  std::vector<NodeVersion> running;
  // Rollback: the version every node ran before the plan ("" = no plan).
  std::string recorded_before;
};

// Strict SemVer everywhere. An upgrade goes up: every node runs the same
// version, below the target (a plan records one version to return to). A
// rollback returns only to `recorded_before`, from versions at or above it.
// Errors: InvalidArgument INVALID_SEMVER (target); FailedPrecondition
// VERSION_UNKNOWN (a node's version missing or not SemVer),
// ALREADY_AT_TARGET (every node runs the target: a no-op that says so),
// VERSION_NOT_HIGHER (a node runs a higher version than an upgrade's
// target, or a lower one than a rollback's), FLEET_VERSIONS_MIXED (an
// upgrade from more than one version),
// NO_PLAN (rollback with nothing recorded), ROLLBACK_TARGET_MISMATCH.
absl::Status CheckVersionPolicy(const VersionPolicyInput& input);

struct CompatInput {
  v1::CompatFacts facts;  // FactsCrossed(policy, installed, target)
  std::vector<ChangelogFlag> changelog;  // FlagsCrossed(...)
  std::vector<std::string> acknowledgements;  // --acknowledge codes
  // The voters whose agents have no apiserver.restart method (NodeState
  // apiserver_restart_configured false), in voter order.
  std::vector<std::string> apiserver_restart_unconfigured;
};

// The voters of `views` whose agents report no apiserver.restart method.
std::vector<std::string> ApiServerRestartUnconfigured(const std::vector<std::string>& voters,
                                                      const std::vector<NodeView>& views);

// The acknowledgement codes the facts and changelog notes require, sorted
// and unique: ONE_WAY_UPGRADE (policy one-way), WIRE_FORMAT_CHANGE (policy
// wire-format change with a planned migration), and every changelog code.
std::vector<std::string> RequiredAcknowledgements(const CompatInput& input);

// InvalidArgument INVALID_ARGUMENT naming the value when an operator's
// --acknowledge is not one of the codes an upgrade can require: a typo
// would otherwise be stored in the plan and satisfy nothing, and the codes
// known are few, which keeps the plan's record bounded (found in review:
// thousands of long values passed at the start left a plan that committed
// once and then could not commit any change, abort included).
absl::Status CheckAcknowledgementCodes(const std::vector<std::string>& given);
// `given` sorted, each code once, as a plan records them.
std::vector<std::string> UniqueAcknowledgements(const std::vector<std::string>& given);
// Whether `given` (a plan's or an upgrade request's acknowledgements)
// holds `code`.
template <typename Codes>
bool Acknowledged(const Codes& given, std::string_view code) {
  return std::find(given.begin(), given.end(), code) != given.end();
}

// Refusals: INVALID_ARGUMENT (CheckAcknowledgementCodes), then
// FRESH_INSTALL_REQUIRED (never acknowledgeable: reference §7.4),
// WIRE_FORMAT_UNPLANNED (a wire-format change without a planned
// migration), ACKNOWLEDGEMENT_REQUIRED (naming each missing code with the
// release and changelog line; metadata `missing`),
// APISERVER_RESTART_UNCONFIGURED (the release needs an API server restart
// and a voter's agent has no method configured; metadata `nodes`).
absl::Status CheckCompatibility(const CompatInput& input);

struct RollbackSafetyInput {
  // The facts of the releases the rollback would undo.
  v1::CompatFacts facts;
  // Recorded when the plan started.
  std::vector<v1::NodeBaseline> baseline;
  // Now.
  std::vector<NodeView> views;
};

// Refusals, in this order: ROLLBACK_REFUSED_ONE_WAY,
// ROLLBACK_REFUSED_WIRE_FORMAT, AGENT_UNREACHABLE (no state to judge by),
// ROLLBACK_REFUSED_KEY_ROTATED (a node's key_id hash differs from its
// baseline), ROLLBACK_REFUSED_PENDING_ROTATION (any node pending),
// REGISTRY_UNKNOWN (a node reported no registry facts),
// ROLLBACK_REFUSED_REMOVED_RECORDS (more `removed` records than at start),
// ROLLBACK_REFUSED_SCHEMA_CHANGED (another registry schema than at start).
absl::Status CheckRollbackSafety(const RollbackSafetyInput& input);

// The first refusal of CheckRollbackSafety, which `facts` alone decide:
// ROLLBACK_REFUSED_ONE_WAY when the policy calls the upgrade one-way or the
// release notes' one-way or fresh-installation words were acknowledged at
// plan start; ROLLBACK_REFUSED_WIRE_FORMAT for a wire-format change (the
// policy's, or acknowledged from the notes). OK when neither applies.
absl::Status CheckRollbackAcrossRelease(const v1::CompatFacts& facts);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_RELEASE_GUARDS_H_
