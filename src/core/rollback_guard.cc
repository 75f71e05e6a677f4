// The rollback safety guard (release_guards.h). An older binary must be
// able to read everything the newer one left behind (reference §8.1 "Roll
// back only if the older release can read the current registry schema and
// every key_id ... now in etcd"; §7.4 pending versions; §2.7 removed
// records).
#include <initializer_list>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"

namespace kmsfleet {
namespace {

using internal::NodeList;
using internal::NotesSentence;
using internal::Refuse;
using internal::ValueOrNone;

const v1::NodeBaseline* BaselineOf(const RollbackSafetyInput& in,
                                   const std::string& node) {
  for (const v1::NodeBaseline& b : in.baseline) {
    if (b.node() == node) return &b;
  }
  return nullptr;
}

bool Pending(const v1::NodeState& s) {
  if (s.rotation_state() == "pending") return true;
  for (const v1::Condition& c : s.conditions()) {
    if (c.reason() == reason::kRotationInProgress) return true;
  }
  return false;
}

// One refusal category: the nodes it names and their observed values.
struct Offenders {
  std::vector<std::string> nodes, text;
  void Add(const std::string& node, std::string observed) {
    nodes.push_back(node);
    text.push_back(absl::StrCat(node, " (", observed, ")"));
  }
};

// The first of `codes` the plan required acknowledged at its start (from
// the policy or the release notes), or "".
std::string RequiredAtStart(const v1::CompatFacts& f, std::initializer_list<std::string_view> codes) {
  for (std::string_view code : codes) {
    for (const std::string& required : f.required_acknowledgements()) {
      if (required == code) return required;
    }
  }
  return "";
}

}  // namespace

absl::Status CheckRollbackAcrossRelease(const v1::CompatFacts& f) {
  const std::string releases = absl::StrJoin(f.releases(), ", ");
  if (f.one_way()) {
    return Refuse(reason::kRollbackRefusedOneWay,
                  absl::StrCat("The policy calls the upgrade one-way (", releases, ")."),
                  absl::StrCat("Fix forward with a patch release instead.",
                               NotesSentence(f.notes())),
                  {});
  }
  if (f.wire_format_change()) {
    return Refuse(reason::kRollbackRefusedWireFormat,
                  absl::StrCat("The newer release may have written a new wire "
                               "format (", releases, ")."),
                  absl::StrCat("Fix forward with a patch release instead.",
                               NotesSentence(f.notes())),
                  {});
  }
  // The release notes' own words, acknowledged at the start, count as
  // much as the policy's (reference §8.1).
  if (std::string code = RequiredAtStart(
          f, {reason::kAckOneWayUpgrade, reason::kAckFreshInstallation});
      !code.empty()) {
    return Refuse(reason::kRollbackRefusedOneWay,
                  absl::StrCat("The release notes call the upgrade one-way or a fresh "
                               "installation (acknowledged at plan start as ", code, ")."),
                  "Fix forward with a patch release instead.", {});
  }
  if (std::string code = RequiredAtStart(f, {reason::kAckWireFormatChange}); !code.empty()) {
    return Refuse(reason::kRollbackRefusedWireFormat,
                  absl::StrCat("The release notes speak of a wire-format change "
                               "(acknowledged at plan start as ", code, ")."),
                  "Fix forward with a patch release instead.", {});
  }
  return absl::OkStatus();
}

namespace {

struct NodeFindings {
  Offenders down, unrecorded, unobserved, rotated, pending, unknown, removed, schema;
};

// What the plan did not record of `node` at its start, or "": without it
// nothing can be compared, and "" is no value to compare with (a real
// registry always names its schema).
std::string UnrecordedWhy(const v1::NodeBaseline* base) {
  if (base == nullptr) return "no facts recorded at plan start";
  if (base->key_id_hash().empty()) return "no key_id hash recorded at plan start";
  if (base->registry_schema().empty()) return "no registry facts recorded at plan start";
  return "";
}

// Compares each node now with its baseline.
NodeFindings Collect(const RollbackSafetyInput& in) {
  NodeFindings f;
  auto& [down, unrecorded, unobserved, rotated, pending, unknown, removed, schema] = f;
  for (const NodeView& view : in.views) {
    if (!view.state) {
      down.Add(view.node, "no state");
      continue;
    }
    const v1::NodeBaseline* base = BaselineOf(in, view.node);
    if (std::string why = UnrecordedWhy(base); !why.empty()) {
      unrecorded.Add(view.node, why);
      base = nullptr;  // compare nothing with it
    }
    const std::string& hash = view.state->key_id_hash_metric();
    if (base != nullptr && hash.empty()) {
      // A provider that is down shows no hash: that is not a rotation, and
      // nothing can be judged until it shows one again (chaos seed 90039).
      unobserved.Add(view.node, "no key_id hash observed, provider ready=" +
                                    std::string(view.state->ready() ? "true" : "false"));
    } else if (base != nullptr && hash != base->key_id_hash()) {
      rotated.Add(view.node, absl::StrCat("key_id hash ", ValueOrNone(hash),
                                          ", at plan start ",
                                          ValueOrNone(base->key_id_hash())));
    }
    if (Pending(*view.state)) {
      pending.Add(view.node, "rotation pending");
    } else if (view.state->rotation_state() == "unknown") {
      // The provider cannot tell whether a key version is pending.
      pending.Add(view.node, "rotation state unknown");
    }
    if (!view.registry) {
      unknown.Add(view.node, "no registry facts");
    } else if (base != nullptr) {
      if (view.registry->removed_records > base->removed_records()) {
        removed.Add(view.node,
                    absl::StrCat(view.registry->removed_records,
                                 " removed records, at plan start ",
                                 base->removed_records()));
      }
      if (view.registry->schema_version != base->registry_schema()) {
        schema.Add(view.node,
                   absl::StrCat("schema ",
                                ValueOrNone(view.registry->schema_version),
                                ", at plan start ",
                                ValueOrNone(base->registry_schema())));
      }
    }
  }
  return f;
}

absl::Status CheckNodeFacts(const RollbackSafetyInput& in) {
  const auto [down, unrecorded, unobserved, rotated, pending, unknown, removed, schema] =
      Collect(in);
  const std::string fix = "Fix forward with a patch release instead.";
  if (!down.nodes.empty()) {
    return Refuse(reason::kAgentUnreachable,
                  absl::StrCat("Cannot judge rollback safety without state "
                               "from ", NodeList(down.text), "."),
                  "Wait until every agent answers.", down.nodes);
  }
  if (!unrecorded.nodes.empty()) {
    return Refuse(reason::kRegistryUnknown,
                  absl::StrCat("Cannot judge rollback safety against a start the plan did "
                               "not record: ", NodeList(unrecorded.text), "."),
                  "Fix forward with a patch release: this plan cannot prove a "
                  "rollback safe (docs/runbooks/rollback.md, section 6).",
                  unrecorded.nodes);
  }
  if (!unobserved.nodes.empty()) {
    return Refuse(reason::kKeyIdHashMissing,
                  absl::StrCat("Cannot tell whether a rotation was promoted "
                               "while a provider shows no key_id hash: ",
                               NodeList(unobserved.text), "."),
                  "Wait until that provider serves again, then retry.", unobserved.nodes);
  }
  if (!rotated.nodes.empty()) {
    return Refuse(reason::kRollbackRefusedKeyRotated,
                  absl::StrCat("A rotation was promoted since the plan "
                               "started: ", NodeList(rotated.text), "."),
                  fix, rotated.nodes);
  }
  if (!pending.nodes.empty()) {
    return Refuse(reason::kRollbackRefusedPendingRotation,
                  absl::StrCat("An older binary ignores pending versions, and "
                               "a rotation is pending on ",
                               NodeList(pending.text), "."),
                  "Wait for the rotation to promote everywhere, then fix "
                  "forward.",
                  pending.nodes);
  }
  if (!unknown.nodes.empty()) {
    return Refuse(reason::kRegistryUnknown,
                  absl::StrCat("Registry facts are unknown on ",
                               NodeList(unknown.text), "."),
                  "Wait until those agents report key-registry.json facts.",
                  unknown.nodes);
  }
  if (!removed.nodes.empty()) {
    return Refuse(reason::kRollbackRefusedRemoved,
                  absl::StrCat("Older binaries reject removed records, and "
                               "the registry gained some on ",
                               NodeList(removed.text), "."),
                  fix, removed.nodes);
  }
  if (!schema.nodes.empty()) {
    return Refuse(reason::kRollbackRefusedSchema,
                  absl::StrCat("The registry schema changed since the plan "
                               "started on ", NodeList(schema.text), "."),
                  fix, schema.nodes);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRollbackSafety(const RollbackSafetyInput& input) {
  if (absl::Status s = CheckRollbackAcrossRelease(input.facts); !s.ok()) return s;
  return CheckNodeFacts(input);
}

}  // namespace kmsfleet
