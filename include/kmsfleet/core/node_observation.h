// Turns what the probe adapters fetched from a provider into a NodeState
// (architecture.md §4 "Verify"; reference §3, §4.1). Pure: the adapters do
// the I/O and hand over raw results, including their failures, and every
// failure becomes a named condition in the NodeState.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_NODE_OBSERVATION_H_
#define KMSFLEET_CORE_NODE_OBSERVATION_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "k8s/kms/v2/api.pb.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

// One HTTP exchange as the adapter saw it: a transport error, or a status
// code and body.
struct HttpResult {
  absl::Status transport;
  int status = 0;
  std::string body;
};

struct RawObservation {
  std::string node;
  int64_t observed_at_unix_ms = 0;
  HttpResult metrics;
  HttpResult ready;
  HttpResult live;
  absl::StatusOr<v2::StatusResponse> kms_status = absl::UnknownError("not run");
  // SHA-256 hash of kms_status->key_id(), computed by the adapter (hashing
  // needs OpenSSL, which the core does not link). Empty if no key_id.
  std::string kms_key_id_hash;
};

// Builds the NodeState. Conditions (reasons.h) name each thing that could
// not be observed or is wrong: METRICS_UNREACHABLE, HEALTH_UNREACHABLE,
// NOT_LIVE, NOT_READY (with the /ready reasons), KMS_SOCKET_UNREACHABLE,
// KMS_UNHEALTHY, KEY_ID_HASH_MISSING, KEY_ID_HASH_AMBIGUOUS,
// KEY_ID_HASH_MISMATCH (metric and socket disagree), ROTATION_IN_PROGRESS,
// MALFORMED_* for bodies that do not parse.
v1::NodeState AssembleNodeState(const RawObservation& raw);

// Why `state` holds no facts from /metrics: its first condition that says
// the scrape failed or could not be read (METRICS_UNREACHABLE,
// MALFORMED_EXPOSITION, DUPLICATE_SERIES, INPUT_TOO_LARGE), as
// "[REASON] message"; "" when there is none. A guard or verification that
// finds no key_id hash names this cause instead of only the missing hash.
std::string WhyNoMetrics(const v1::NodeState& state);

// True when the provider version is still unknown after AssembleNodeState,
// i.e. the scrape had no openbao_kms_build_info (pre-preview.3 providers),
// so the caller should ask the binary with `version`.
bool NeedsVersionCommand(const v1::NodeState& state);

// Records the outcome of `<binary> version`: the parsed version, or a
// VERSION_COMMAND_FAILED condition naming the exit code or parse error.
void ApplyVersionCommand(const absl::StatusOr<std::string>& stdout_text,
                         v1::NodeState& state);

// Records in `state` what the agent read of the provider's key registry at
// `path` (NodeState.registry_*): `text` is the file's content, or the read
// error. Content: its schema and removed count (ParseRegistryFacts), or,
// unparsable, unknown with MALFORMED_REGISTRY. NotFound: known, with an
// empty schema and 0 removed (the provider has written no state yet). Any
// other error: unknown, with its reason (e.g. INPUT_TOO_LARGE) or
// REGISTRY_UNREADABLE, naming `path`. An empty `path` (none configured) is
// unknown with REGISTRY_UNREADABLE.
void ApplyRegistryRead(const absl::StatusOr<std::string>& text, std::string_view path,
                       v1::NodeState& state);

// The registry facts `state` carries for NodeView.registry: nullopt when
// the agent could not read them or did not report them.
std::optional<RegistryFacts> RegistryFactsOf(const v1::NodeState& state);

// Adds a condition with `reason` and `message` to `state`.
void AddCondition(v1::NodeState& state, std::string_view reason,
                  std::string_view message);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_NODE_OBSERVATION_H_
