// The release compatibility policy (architecture.md §5 "Wire format /
// one-way"; reference §7.4): per upstream release, whether it needs a fresh
// installation, is one-way, changes the wire format (and whether that
// migration is planned), or needs the API server restarted. kmsfleet ships
// a catalog of the releases known today (BuiltinCompatPolicy); an operator
// extends it with a YAML file in the same format
// (docs/reference/compatibility-policy.md).
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_COMPAT_POLICY_H_
#define KMSFLEET_CORE_COMPAT_POLICY_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/v1/plan.pb.h"

namespace kmsfleet {

// Policy files larger than this are refused; real ones are a few KiB.
inline constexpr size_t kMaxPolicyBytes = 256 << 10;

struct ReleaseCompat {
  // Exactly one of the two is set. `version` names a release; `above` names
  // the first release after that version, for a line upstream has not
  // numbered yet (the CHANGELOG's "Unreleased").
  std::string version;
  std::string above;
  bool fresh_install_only = false;
  bool one_way = false;
  bool wire_format_change = false;
  bool migration_planned = false;
  bool apiserver_restart_required = false;
  std::string notes;
  std::string source;  // "builtin" or the policy file, for messages
};

struct CompatPolicy {
  std::vector<ReleaseCompat> releases;
};

// Parses a policy document; `what` names the file in messages.
// Errors (kInvalidArgument), nothing returned:
//   INPUT_TOO_LARGE: more than kMaxPolicyBytes;
//   MALFORMED_POLICY: invalid YAML (naming line and column), a wrong
//     apiVersion/kind, an unknown key, a value of the wrong type, a version
//     that is not strict SemVer, an entry with both or neither of
//     version/above, or the same release twice. The message names `what`,
//     the line, the key path (e.g. releases[2].oneWay) and the value;
//     metadata {file, line, key}.
absl::StatusOr<CompatPolicy> ParseCompatPolicy(std::string_view yaml,
                                               std::string_view what);

// The catalog of upstream releases known when this kmsfleet was built.
CompatPolicy BuiltinCompatPolicy();

// `base` with `overlay` applied: an overlay entry extends the base entry
// for the same release (same version, or same above): a flag either sets
// is set, and the notes of both are kept; other entries are added.
CompatPolicy MergePolicies(const CompatPolicy& base,
                           const CompatPolicy& overlay);

// The facts of every release crossed when moving between `from` and `to`
// (either direction): entries with version in (min, max], and entries
// above A with min <= A < max. Flags are ORed; `releases` lists the
// contributing entries (version, or ">A") in ascending order.
v1::CompatFacts FactsCrossed(const CompatPolicy& policy, const SemVer& from,
                             const SemVer& to);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_COMPAT_POLICY_H_
