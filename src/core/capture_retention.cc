#include "kmsfleet/core/capture_retention.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace kmsfleet {
namespace {

bool HoldsCapture(const SwapJournal& j) {
  return !j.previous_binary.empty() && IsCaptureInside(j.previous_binary, j.evidence_dir);
}

// Newest first: started later, then the larger id (ids of one start are
// unique, so the order is total and the same on every call).
bool Newer(const SwapJournal* a, const SwapJournal* b) {
  return std::tie(a->started_unix_ms, a->operation_id) >
         std::tie(b->started_unix_ms, b->operation_id);
}

// The files open operations read or may restore: their own copies and
// what they install.
std::set<std::string> InUse(const std::vector<SwapJournal>& journals) {
  std::set<std::string> used;
  for (const SwapJournal& j : journals) {
    if (!j.open) continue;
    used.insert(j.previous_binary);
    used.insert(j.target_binary);
  }
  used.erase("");
  return used;
}

}  // namespace

bool IsCaptureInside(const std::string& path, const std::string& dir) {
  if (dir.empty() || dir.back() == '/' || path.size() <= dir.size() + 1) return false;
  if (path.compare(0, dir.size(), dir) != 0 || path[dir.size()] != '/') return false;
  const std::string name = path.substr(dir.size() + 1);
  return name.find('/') == std::string::npos && name != "." && name != "..";
}

std::vector<std::string> CapturesToPrune(const std::vector<SwapJournal>& journals,
                                         const std::optional<std::string>& installed_sha256,
                                         size_t keep_latest) {
  std::vector<const SwapJournal*> holding;
  for (const SwapJournal& j : journals) {
    if (HoldsCapture(j)) holding.push_back(&j);
  }
  std::sort(holding.begin(), holding.end(), Newer);
  const std::set<std::string> in_use = InUse(journals);
  std::vector<const SwapJournal*> prune;
  for (size_t i = keep_latest; i < holding.size(); ++i) {
    const SwapJournal& j = *holding[i];
    if (j.open || in_use.count(j.previous_binary) > 0) continue;
    if (j.phase == SwapPhase::kRollbackFailed) continue;
    if (j.phase == SwapPhase::kStable &&
        (!installed_sha256 || *installed_sha256 == j.target_sha256)) {
      continue;
    }
    prune.push_back(&j);
  }
  std::vector<std::string> ids;
  for (auto it = prune.rbegin(); it != prune.rend(); ++it) ids.push_back((*it)->operation_id);
  return ids;
}

}  // namespace kmsfleet
