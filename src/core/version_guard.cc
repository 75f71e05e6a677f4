// The version policy guard (release_guards.h): strict SemVer, upgrades go
// up, rollbacks return only to the version recorded before the plan.
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

using internal::NodeList;
using internal::Refuse;
using internal::ValueOrNone;

struct Parsed {
  std::string node;
  SemVer version;
};

absl::StatusOr<std::vector<Parsed>> ParseRunning(
    const std::vector<NodeVersion>& running) {
  std::vector<Parsed> parsed;
  std::vector<std::string> bad, text;
  for (const NodeVersion& nv : running) {
    absl::StatusOr<SemVer> v = SemVer::Parse(nv.version);
    if (!v.ok()) {
      bad.push_back(nv.node);
      text.push_back(absl::StrCat(nv.node, " (", ValueOrNone(nv.version), ")"));
      continue;
    }
    parsed.push_back({nv.node, *v});
  }
  if (!bad.empty()) {
    return Refuse(reason::kVersionUnknown,
                  absl::StrCat("The provider version is unknown or not SemVer "
                               "on ", NodeList(text), "."),
                  "Make the provider export openbao_kms_build_info or answer "
                  "`version`, then retry.",
                  bad);
  }
  return parsed;
}

// The nodes whose version compares to `target` as `wrong` says.
template <typename Wrong>
std::vector<std::string> NodesWhere(const std::vector<Parsed>& nodes,
                                    const SemVer& target, Wrong wrong,
                                    std::vector<std::string>* text) {
  std::vector<std::string> out;
  for (const Parsed& p : nodes) {
    if (!wrong(p.version, target)) continue;
    out.push_back(p.node);
    text->push_back(absl::StrCat(p.node, " (", p.version.ToString(), ")"));
  }
  return out;
}

absl::Status CheckUpgrade(const std::vector<Parsed>& nodes,
                          const SemVer& target) {
  std::vector<std::string> text;
  // Equal precedence is not higher either: 0.2.0+rebuild.1 over 0.2.0 (build
  // metadata does not order versions) would swap every node for nothing.
  std::vector<std::string> higher = NodesWhere(
      nodes, target,
      [](auto& v, auto& t) { return v > t || (v == t && v.ToString() != t.ToString()); },
      &text);
  if (!higher.empty()) {
    return Refuse(reason::kVersionNotHigher,
                  absl::StrCat("Target ", target.ToString(),
                               " is not higher than the version on ",
                               NodeList(text), "."),
                  "Upgrade only to a higher version; use `rollback` to go "
                  "back to the version recorded before a plan.",
                  higher);
  }
  std::set<std::string> versions;
  std::vector<std::string> version_text, names;
  for (const Parsed& p : nodes) {
    versions.insert(p.version.ToString());
    version_text.push_back(absl::StrCat(p.node, " (", p.version.ToString(), ")"));
    names.push_back(p.node);
  }
  if (versions.size() == 1 && *versions.begin() == target.ToString()) {
    return Refuse(reason::kAlreadyAtTarget,
                  absl::StrCat("Every node already runs ", target.ToString(),
                               "; there is nothing to do."),
                  "No action needed.", {});
  }
  // A plan records one version to roll back to, so it starts from one.
  if (versions.size() > 1) {
    return Refuse(reason::kFleetVersionsMixed,
                  absl::StrCat("Nodes run different versions: ",
                               NodeList(version_text), "."),
                  "Resume or roll back the plan that left the fleet mixed "
                  "before starting another.",
                  names);
  }
  return absl::OkStatus();
}

absl::Status CheckRollback(const std::vector<Parsed>& nodes,
                           const SemVer& target, const std::string& before) {
  if (before.empty()) {
    return Refuse(reason::kNoPlan,
                  "No plan recorded a version to roll back to.",
                  "Roll back only a plan that upgraded this fleet.", {});
  }
  absl::StatusOr<SemVer> recorded = SemVer::Parse(before);
  if (!recorded.ok() || !(*recorded == target)) {
    return Refuse(reason::kRollbackTargetMismatch,
                  absl::StrCat("Rollback target ", target.ToString(),
                               " is not the version recorded before the "
                               "plan, ", before, "."),
                  absl::StrCat("Roll back to ", before, " only."), {});
  }
  std::vector<std::string> text;
  std::vector<std::string> lower = NodesWhere(
      nodes, target, [](auto& v, auto& t) { return v < t; }, &text);
  if (!lower.empty()) {
    return Refuse(reason::kVersionNotHigher,
                  absl::StrCat("Rollback target ", target.ToString(),
                               " is above the version on ", NodeList(text),
                               "."),
                  "Investigate how those nodes got an older release.", lower);
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckVersionPolicy(const VersionPolicyInput& input) {
  KMSFLEET_ASSIGN_OR_RETURN(SemVer target, SemVer::Parse(input.target));
  KMSFLEET_ASSIGN_OR_RETURN(std::vector<Parsed> nodes,
                            ParseRunning(input.running));
  if (input.direction == PlanDirection::kUpgrade) {
    return CheckUpgrade(nodes, target);
  }
  return CheckRollback(nodes, target, input.recorded_before);
}

}  // namespace kmsfleet
