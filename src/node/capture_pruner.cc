// Deleting the copies of replaced releases that no rollback can use any
// more (capture_retention.h decides which).
#include <cerrno>
#include <cstring>
#include <map>

#include <unistd.h>

#include "kmsfleet/core/capture_retention.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {

// Runs as `ending` is about to close, in its worker (no other operation
// can start meanwhile). Its end says what is installed, so nothing is
// hashed on the way to the node's hand-off; an end that does not say
// (RollbackFailed) prunes nothing.
void Executor::PruneCapturesAtEnd(const SwapJournal& ending) {
  std::optional<std::string> installed;
  if (ending.phase == SwapPhase::kStable) {
    installed = ending.target_sha256;
  } else if (ending.phase == SwapPhase::kRolledBack) {
    installed = ending.previous_sha256;
  } else {
    return;
  }
  JournalStore::Scan scan = seams_.journals.LoadAll();
  // An unreadable journal may be an open rollback reading another
  // operation's copy.
  if (!scan.unreadable.empty()) return;
  for (SwapJournal& j : scan.journals) {
    if (j.operation_id == ending.operation_id) j = ending;  // still open on disk
  }
  PruneCaptures(std::move(scan.journals), installed);
}

// At start-up, every journal readable and closed: the copies an older
// agent left behind go before a swap can be refused for the space they
// take.
void Executor::PruneCapturesAtStart(std::vector<SwapJournal> closed) {
  absl::StatusOr<std::string> installed = seams_.installer.Observe();
  PruneCaptures(std::move(closed),
                installed.ok() ? std::optional<std::string>(*installed) : std::nullopt);
}

void Executor::PruneCaptures(std::vector<SwapJournal> journals,
                             const std::optional<std::string>& installed_sha256) {
  const std::vector<std::string> ids =
      CapturesToPrune(journals, installed_sha256, options_.keep_latest_captures);
  if (ids.empty()) return;
  std::map<std::string, const SwapJournal*> by_id;
  for (const SwapJournal& j : journals) by_id[j.operation_id] = &j;
  for (const std::string& id : ids) {
    const std::string& path = by_id.at(id)->previous_binary;
    if (::unlink(path.c_str()) == 0) {
      Log(LogLevel::kInfo, "copy of a replaced release deleted: no rollback can use it",
          {{"node", options_.node}, {"operation", id}, {"file", path}});
    } else if (errno != ENOENT) {
      Log(LogLevel::kWarn, "cannot delete the copy of a replaced release",
          {{"node", options_.node}, {"operation", id}, {"file", path},
           {"error", std::strerror(errno)}});
    }
  }
}

}  // namespace kmsfleet
