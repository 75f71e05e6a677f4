#include "kmsfleet/core/capture_retention.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace kmsfleet {
namespace {

// A copy the agent made, where it makes them.
bool HoldsCapture(const SwapJournal& j, const std::string& operations_dir) {
  if (j.evidence_dir != operations_dir + "/" + j.operation_id) return false;
  return j.previous_binary == j.evidence_dir + "/previous-binary" ||
         j.previous_binary == j.evidence_dir + "/previous-manifest.yaml";
}

// The journals whose copies, and what they install from, a recovery or an
// operator restoring by hand may read.
bool Unfinished(const SwapJournal& j) {
  return j.open || j.phase == SwapPhase::kRollbackFailed;
}

std::set<std::string> ReadByUnfinished(const std::vector<SwapJournal>& journals) {
  std::set<std::string> read;
  for (const SwapJournal& j : journals) {
    if (!Unfinished(j)) continue;
    read.insert(j.previous_binary);
    read.insert(j.target_binary);
  }
  read.erase("");
  return read;
}

// The Stable operations that `rollback_steps` rollbacks in a row, from
// what is installed now, may undo: each installed what is installed at
// that step; undoing it installs what it replaced, the next step's.
std::set<std::string> OnRollbackChain(const std::vector<SwapJournal>& journals,
                                      const std::string& installed, size_t rollback_steps) {
  std::set<std::string> ids, seen = {installed}, step = {installed};
  for (size_t i = 0; i < rollback_steps && !step.empty(); ++i) {
    std::set<std::string> next;
    for (const SwapJournal& j : journals) {
      if (j.phase != SwapPhase::kStable || step.count(j.target_sha256) == 0) continue;
      ids.insert(j.operation_id);
      if (seen.insert(j.previous_sha256).second) next.insert(j.previous_sha256);
    }
    step = std::move(next);
  }
  return ids;
}

}  // namespace

std::vector<std::string> CapturesToPrune(const std::vector<SwapJournal>& journals,
                                         const std::optional<std::string>& installed_sha256,
                                         size_t rollback_steps,
                                         const std::string& operations_dir) {
  const std::set<std::string> read = ReadByUnfinished(journals);
  const std::set<std::string> chain =
      installed_sha256 ? OnRollbackChain(journals, *installed_sha256, rollback_steps)
                       : std::set<std::string>();
  std::vector<const SwapJournal*> prune;
  for (const SwapJournal& j : journals) {
    // An unfinished operation's own copy is in `read`.
    if (!HoldsCapture(j, operations_dir) || read.count(j.previous_binary)) {
      continue;
    }
    if (j.phase == SwapPhase::kStable && (!installed_sha256 || chain.count(j.operation_id))) {
      continue;
    }
    prune.push_back(&j);
  }
  std::sort(prune.begin(), prune.end(), [](const SwapJournal* a, const SwapJournal* b) {
    return std::tie(a->started_unix_ms, a->operation_id) <
           std::tie(b->started_unix_ms, b->operation_id);
  });
  std::vector<std::string> ids;
  for (const SwapJournal* j : prune) ids.push_back(j->operation_id);
  return ids;
}

}  // namespace kmsfleet
