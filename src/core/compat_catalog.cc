// The catalog of upstream bao-kms-provider releases known when this
// kmsfleet was built (reference §7.4). It is written in the operator's
// policy format (docs/reference/compatibility-policy.md) and read by the
// same parser, so the documented format is the one kmsfleet itself uses.
#include <cassert>

#include "kmsfleet/core/compat_policy.h"

namespace kmsfleet {
namespace {

constexpr char kBuiltinCatalog[] = R"yaml(
apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - version: 0.1.0-preview.1
    notes: first preview release.
  - version: 0.1.0-preview.2
    notes: no documented upgrade boundary from preview.1.
  # Reference §7.4: in-place upgrades from earlier previews are unsupported;
  # the provider rejects the older registry schema, and a downgrade of
  # preview.3 state is not qualified.
  - version: 0.1.0-preview.3
    freshInstallOnly: true
    oneWay: true
    notes: >-
      requires a fresh disposable installation with a new Transit key and
      provider identity; the older registry schema is rejected without
      being rewritten; auth.jwt.source is a breaking configuration change.
  # The CHANGELOG's Unreleased line: the CLI exit-code correction (usage 2,
  # config 3 where older binaries exit 1) and the rotation corrections
  # (upgrade every node before the next rotation; never roll a node back
  # while a peer may have encrypted with a pending version). Neither
  # changes key IDs, AAD, annotations or the state schema.
  - above: 0.1.0-preview.3
    notes: >-
      CLI exit codes corrected (usage 2, configuration 3); rotation
      corrections: upgrade every node and confirm one active key_id before
      the next rotation; never roll back while a rotation is pending.
)yaml";

}  // namespace

CompatPolicy BuiltinCompatPolicy() {
  absl::StatusOr<CompatPolicy> policy =
      ParseCompatPolicy(kBuiltinCatalog, "builtin");
  // The catalog is a constant checked by compat_policy_test.
  assert(policy.ok());
  if (!policy.ok()) return {};
  for (ReleaseCompat& r : policy->releases) r.source = "builtin";
  return *policy;
}

}  // namespace kmsfleet
