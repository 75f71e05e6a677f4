// Release compatibility and rollback safety guards (release_guards.h;
// reference §7.4, §8.1 "Never roll back when").
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

using internal::NodeList;
using internal::NotesSentence;
using internal::Refuse;
using internal::ValueOrNone;

std::string Releases(const v1::CompatFacts& facts) {
  return ValueOrNone(absl::StrJoin(facts.releases(), ", "));
}

}  // namespace

std::vector<std::string> RequiredAcknowledgements(const CompatInput& input) {
  std::set<std::string> codes;
  if (input.facts.one_way()) codes.insert(reason::kAckOneWayUpgrade);
  if (input.facts.wire_format_change()) codes.insert(reason::kAckWireFormatChange);
  for (const ChangelogFlag& flag : input.changelog) codes.insert(flag.code);
  return {codes.begin(), codes.end()};
}

namespace {

// "ONE_WAY_UPGRADE (policy: 0.2.0)" or "CHANGELOG_BREAKING (0.2.0, line
// 12: ### ⚠ BREAKING CHANGES)".
std::string WhyNeeded(const CompatInput& input, const std::string& code) {
  for (const ChangelogFlag& f : input.changelog) {
    if (f.code == code) {
      return absl::StrCat(code, " (", f.version, ", changelog line ", f.line,
                          ": ", f.excerpt, ")");
    }
  }
  return absl::StrCat(code, " (policy: releases ", Releases(input.facts), ")");
}

// Every acknowledgement the facts and notes require was given.
absl::Status CheckAcknowledged(const CompatInput& input) {
  const std::set<std::string> given(input.acknowledgements.begin(),
                                    input.acknowledgements.end());
  std::vector<std::string> missing, text;
  for (const std::string& code : RequiredAcknowledgements(input)) {
    if (given.count(code)) continue;
    missing.push_back(code);
    text.push_back(WhyNeeded(input, code));
  }
  if (!missing.empty()) {
    const std::string remedy = absl::StrCat(
        "Read them, then pass ",
        absl::StrJoin(missing, " ",
                      [](std::string* out, const std::string& c) {
                        absl::StrAppend(out, "--acknowledge ", c);
                      }),
        ".");
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kAcknowledgementRequired,
                     absl::StrCat("The release notes require acknowledging: ",
                                  absl::StrJoin(text, "; "), ". ", remedy,
                                  NotesSentence(input.facts.notes())),
                     {{"nodes", ""},
                      {"remedy", remedy},
                      {"missing", absl::StrJoin(missing, ",")}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAcknowledgementCodes(const std::vector<std::string>& given) {
  static const std::set<std::string, std::less<>> kKnown = {
      reason::kAckChangelogBreaking, reason::kAckChangelogCompatibility,
      reason::kAckOneWayUpgrade, reason::kAckWireFormatChange, reason::kAckFreshInstallation,
      reason::kAckStateCheckpointNotCurrent};
  for (const std::string& code : given) {
    if (kKnown.count(code)) continue;
    // Bounded: the value is an operator's, and its message goes to the plan.
    const std::string shown = code.size() > 64 ? code.substr(0, 64) + "..." : code;
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                     absl::StrCat("--acknowledge \"", shown,
                                  "\" is not an acknowledgement code; the codes are ",
                                  absl::StrJoin(kKnown, ", "),
                                  " (an upgrade's refusal names the ones it needs)"),
                     {{"acknowledge", shown}});
  }
  return absl::OkStatus();
}

std::vector<std::string> UniqueAcknowledgements(const std::vector<std::string>& given) {
  const std::set<std::string> unique(given.begin(), given.end());
  return {unique.begin(), unique.end()};
}

absl::Status CheckCompatibility(const CompatInput& input) {
  KMSFLEET_RETURN_IF_ERROR(CheckAcknowledgementCodes(input.acknowledgements));
  const v1::CompatFacts& f = input.facts;
  if (f.fresh_install_only()) {
    return Refuse(reason::kFreshInstallRequired,
                  absl::StrCat("The releases crossed (", Releases(f),
                               ") require a fresh installation; an in-place "
                               "upgrade is unsupported."),
                  absl::StrCat("Keep this installation on its matching release, or build "
                               "a fresh one; never erase registry state to bypass this.",
                               NotesSentence(f.notes())),
                  {});
  }
  if (f.wire_format_change() && !f.migration_planned()) {
    return Refuse(reason::kWireFormatUnplanned,
                  absl::StrCat("The releases crossed (", Releases(f),
                               ") change the wire format with no planned "
                               "migration."),
                  absl::StrCat("Plan the migration and mark it migrationPlanned in a "
                               "policy file, or stay on this release.",
                               NotesSentence(f.notes())),
                  {});
  }
  if (absl::Status s = CheckAcknowledged(input); !s.ok()) return s;
  if (f.apiserver_restart_required() && !input.apiserver_restart_unconfigured.empty()) {
    return Refuse(reason::kApiServerRestartUnconfigured,
                  absl::StrCat("The releases crossed (", Releases(f),
                               ") require restarting kube-apiserver, and no "
                               "restart method is configured on ",
                               NodeList(input.apiserver_restart_unconfigured), "."),
                  "Configure apiserver.restart (systemd:<unit> or "
                  "command:<path>) in the kmsfleetd config of those nodes, "
                  "restart their agents, then retry.",
                  input.apiserver_restart_unconfigured);
  }
  return absl::OkStatus();
}

std::vector<std::string> ApiServerRestartUnconfigured(const std::vector<std::string>& voters,
                                                      const std::vector<NodeView>& views) {
  std::vector<std::string> out;
  for (const std::string& voter : voters) {
    const auto view = std::find_if(views.begin(), views.end(),
                                   [&](const NodeView& v) { return v.node == voter; });
    if (view == views.end() || !view->state || !view->state->apiserver_restart_configured()) {
      out.push_back(voter);
    }
  }
  return out;
}

}  // namespace kmsfleet
