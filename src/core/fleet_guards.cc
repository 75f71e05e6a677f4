// Guards over the fleet's current observations (fleet_guards.h).
#include "kmsfleet/core/fleet_guards.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "guard_util.h"
#include "kmsfleet/core/node_observation.h"
#include "kmsfleet/core/reasons.h"

namespace kmsfleet {
namespace {

using internal::NodeList;
using internal::Refuse;
using internal::ValueOrNone;

// "b (since 1700000000000, 12 s ago)" or "b (never answered)".
std::string UnreachableText(const NodeView* view, const std::string& node,
                            int64_t now_unix_ms) {
  if (view == nullptr || (!view->state && view->unreachable_since_unix_ms == 0)) {
    return absl::StrCat(node, " (never answered)");
  }
  const int64_t since = view->unreachable_since_unix_ms;
  return absl::StrCat(node, " (since unix_ms ", since, ", ",
                      std::max<int64_t>(0, now_unix_ms - since) / 1000,
                      " s ago)");
}

bool Unreachable(const NodeView* view) {
  return view == nullptr || !view->state || view->unreachable_since_unix_ms > 0;
}

}  // namespace

const NodeView* FindView(const std::vector<NodeView>& views, const std::string& node) {
  for (const NodeView& view : views) {
    if (view.node == node) return &view;
  }
  return nullptr;
}

absl::Status CheckFleetHealth(const std::vector<std::string>& voters,
                              const std::vector<NodeView>& views,
                              int64_t now_unix_ms) {
  std::vector<std::string> down, down_text, not_live, not_ready, ready_text;
  for (const std::string& voter : voters) {
    const NodeView* view = FindView(views, voter);
    if (Unreachable(view)) {
      down.push_back(voter);
      down_text.push_back(UnreachableText(view, voter, now_unix_ms));
    } else if (!view->state->live()) {
      not_live.push_back(voter);
    } else if (!view->state->ready()) {
      not_ready.push_back(voter);
      ready_text.push_back(absl::StrCat(
          voter, " (reasons: ",
          ValueOrNone(absl::StrJoin(view->state->ready_reasons(), ",")), ")"));
    }
  }
  if (!down.empty()) {
    return Refuse(reason::kAgentUnreachable,
                  absl::StrCat("The agent on ", NodeList(down_text),
                               " does not answer; the plan waits for it."),
                  "Check kmsfleetd and the network path to it; the plan "
                  "continues once it answers.",
                  down);
  }
  if (!not_live.empty()) {
    return Refuse(reason::kProviderNotLive,
                  absl::StrCat("The provider on ", NodeList(not_live),
                               " is not live (/live not 200)."),
                  "Inspect the provider's unit and logs on that node.",
                  not_live);
  }
  if (!not_ready.empty()) {
    return Refuse(reason::kProviderNotReady,
                  absl::StrCat("The provider on ", NodeList(ready_text),
                               " is not ready (/ready not 200)."),
                  "Fix what /ready reports (OpenBao reachability, status "
                  "staleness) before continuing.",
                  not_ready);
  }
  return absl::OkStatus();
}

namespace {

// The one hash a node reports, or the refusal saying why it has none.
absl::Status NodeHash(const NodeView& view, std::string* hash) {
  if (!view.state) {
    return Refuse(reason::kAgentUnreachable,
                  absl::StrCat("No state from ", view.node,
                               " to compare its key_id hash."),
                  "Wait until its agent answers.", {view.node});
  }
  const v1::NodeState& s = *view.state;
  for (const v1::Condition& c : s.conditions()) {
    if (c.reason() == reason::kKeyIdHashAmbiguous) {
      return Refuse(reason::kKeyIdHashAmbiguous,
                    absl::StrCat(view.node, " exports more than one key_id "
                                 "hash series: ", c.message()),
                    "Wait for its rotation to converge, or restart its "
                    "provider if the series stay split.",
                    {view.node});
    }
  }
  if (s.key_id_hash_metric().empty()) {
    const std::string why = WhyNoMetrics(s);
    return Refuse(reason::kKeyIdHashMissing,
                  why.empty() ? absl::StrCat(view.node, " reports no key_id hash metric.")
                              : absl::StrCat(view.node, " reports no key_id hash metric: its "
                                             "/metrics could not be read: ", why),
                  "Check its /metrics endpoint.", {view.node});
  }
  if (!s.key_id_hash_socket().empty() &&
      s.key_id_hash_socket() != s.key_id_hash_metric()) {
    return Refuse(reason::kKeyIdHashAmbiguous,
                  absl::StrCat(view.node, " reports key_id hash ",
                               s.key_id_hash_metric(), " in metrics but ",
                               s.key_id_hash_socket(), " on its KMS socket."),
                  "Wait for the provider's status cache to refresh.",
                  {view.node});
  }
  *hash = s.key_id_hash_metric();
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckParityOnce(const std::vector<NodeView>& views) {
  std::set<std::string> distinct;
  std::vector<std::string> nodes, pairs;
  for (const NodeView& view : views) {
    std::string hash;
    if (absl::Status s = NodeHash(view, &hash); !s.ok()) return s;
    distinct.insert(hash);
    nodes.push_back(view.node);
    pairs.push_back(absl::StrCat(view.node, "=", hash));
  }
  if (distinct.size() > 1) {
    return Refuse(reason::kFleetParityMismatch,
                  absl::StrCat("Nodes report different key_id hashes: ",
                               absl::StrJoin(pairs, ", "), "."),
                  "Wait for rotation to converge on every node; do not "
                  "upgrade or roll back a split fleet.",
                  nodes);
  }
  return absl::OkStatus();
}

bool FleetInParity(const std::vector<NodeView>& views) {
  if (views.empty()) return false;
  for (const NodeView& view : views) {
    if (!view.state || view.unreachable_since_unix_ms != 0) return false;
  }
  return CheckParityOnce(views).ok();
}

bool ParityStreak::IsNewRound(const std::vector<NodeView>& views) const {
  for (const NodeView& view : views) {
    if (!view.state) return true;  // a failing round always counts
    // The same observation read again, not an older clock: an agent whose
    // clock stepped back observes afresh with smaller times, and a streak
    // that waited for them to pass the old ones would stall for as long.
    auto it = last_counted_ms_.find(view.node);
    if (it != last_counted_ms_.end() && view.state->observed_at_unix_ms() == it->second) {
      return false;
    }
  }
  return true;
}

void ParityStreak::Observe(const std::vector<NodeView>& views) {
  // A node that did not answer keeps its last state, which would neither
  // count nor break the streak: found in review, parity "held" across an
  // agent's outage by one round after it came back. A round it missed is
  // a failed observation.
  for (const NodeView& view : views) {
    if (view.unreachable_since_unix_ms == 0) continue;
    last_problem_ = Refuse(reason::kAgentUnreachable,
                           absl::StrCat(view.node, " did not answer this round (unreachable since ",
                                        view.unreachable_since_unix_ms,
                                        " ms after the epoch), so parity is observed again."),
                           "Wait until its agent answers.", {view.node});
    Reset();
    return;
  }
  if (!IsNewRound(views)) return;
  for (const NodeView& view : views) {
    if (view.state) last_counted_ms_[view.node] = view.state->observed_at_unix_ms();
  }
  last_problem_ = CheckParityOnce(views);
  if (!last_problem_.ok() || views.empty()) {
    consecutive_ = 0;
    hash_.clear();
    return;
  }
  const std::string& hash = views.front().state->key_id_hash_metric();
  consecutive_ = hash == hash_ ? consecutive_ + 1 : 1;
  hash_ = hash;
}

void ParityStreak::RestartWith(const std::vector<NodeView>& views) {
  Reset();
  for (const NodeView& view : views) {
    if (view.unreachable_since_unix_ms != 0) return;
  }
  last_counted_ms_.clear();
  Observe(views);
}

absl::Status CheckParityStable(const ParityStreak& streak, int required) {
  if (streak.consecutive() >= required) return absl::OkStatus();
  if (!streak.last_problem().ok()) return streak.last_problem();
  return Refuse(reason::kParityNotStable,
                absl::StrCat("Parity on key_id hash ",
                             ValueOrNone(streak.hash()), " held for ",
                             streak.consecutive(), " of ", required,
                             " consecutive observations."),
                "Wait for further observations; the plan continues when "
                "parity is stable.",
                {});
}

absl::Status CheckDoctor(const std::vector<NodeDoctor>& nodes) {
  std::vector<std::string> failed, text;
  for (const NodeDoctor& d : nodes) {
    if (d.ran && d.passed) continue;
    failed.push_back(d.node);
    text.push_back(absl::StrCat(
        d.node, " (", d.ran ? "failing: " + ValueOrNone(d.failed_checks)
                            : std::string("not run"), ")"));
  }
  if (failed.empty()) return absl::OkStatus();
  return Refuse(reason::kDoctorFailed,
                absl::StrCat("doctor with the new binary did not pass on ",
                             NodeList(text), "."),
                "Resolve the failing checks on those nodes, then resume.",
                failed);
}

absl::Status CheckRollbackReadiness(const std::vector<NodeArtifact>& nodes) {
  std::vector<std::string> missing, text;
  for (const NodeArtifact& a : nodes) {
    if (a.present_and_verified) continue;
    missing.push_back(a.node);
    text.push_back(absl::StrCat(a.node, " (", ValueOrNone(a.previous_version),
                                ")"));
  }
  if (missing.empty()) return absl::OkStatus();
  return Refuse(reason::kRollbackArtifactMissing,
                absl::StrCat("The previous release's verified artifact is "
                             "missing on ", NodeList(text), "."),
                "A rollback restores what runs now: on a systemd node "
                "put back, executable, the installed provider binary "
                "(provider.binary) of the version the provider runs (kmsfleetd "
                "logs the version it found instead); on a static-pod node pull "
                "the image its live manifest names (crictl pull). Then resume.",
                missing);
}

}  // namespace kmsfleet
