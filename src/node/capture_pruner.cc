// Deleting the copies of replaced releases that no rollback can use any
// more (capture_retention.h decides which).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "kmsfleet/core/capture_retention.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/log.h"

namespace kmsfleet {
namespace {

// A crash between the capture and the phase that records it leaves the
// copy without its journal naming it; the journal's operation ended before
// the stop, so the copy is of no use, and found here it can go.
void NameUnrecordedCapture(SwapJournal& j, const std::string& operations_dir) {
  if (!j.previous_binary.empty() || j.open || IsAfterStop(j.phase)) return;
  const std::string dir = operations_dir + "/" + j.operation_id;
  struct stat st {};
  if (::lstat((dir + "/previous-binary").c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
  j.evidence_dir = dir;
  j.previous_binary = dir + "/previous-binary";
}

}  // namespace

// Runs as `ending` is about to close, in its worker (no other operation
// can start meanwhile). Its end says what is installed, so nothing is
// hashed on the way to the node's hand-off. A recovered operation is
// pruned for after the recovery, from the disk: what its journal says may
// be older than a change made by hand while the agent was down.
void Executor::PruneCapturesAtEnd(const SwapJournal& ending) {
  if (recovering_) return;
  std::optional<std::string> installed;
  if (ending.phase == SwapPhase::kStable) {
    installed = ending.target_sha256;
  } else if (ending.phase == SwapPhase::kRolledBack) {
    installed = ending.previous_sha256;
  } else if (ending.phase <= SwapPhase::kPreflighted && !ending.previous_sha256.empty()) {
    // Refused at or after its capture, before the stop: what it captured
    // is installed still. Found in review: a plan resumed again and again
    // onto such a refusal (ACTIVE_KEY_NOT_EXPECTED) left a copy of the
    // binary each time until an operation ended otherwise.
    installed = ending.previous_sha256;
  } else {
    return;  // RollbackFailed: the operator decides what stays
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

// At start-up and after a recovery, every journal readable and closed: the
// copies an older agent left behind go before a swap can be refused for
// the space they take.
void Executor::PruneCapturesFromDisk() {
  if (options_.static_pod) return;  // PruneCaptures keeps a manifest's copies
  JournalStore::Scan scan = seams_.journals.LoadAll();
  if (!scan.unreadable.empty()) return;
  for (const SwapJournal& j : scan.journals) {
    if (j.open) return;
  }
  absl::StatusOr<std::string> installed = seams_.installer.Observe();
  PruneCaptures(std::move(scan.journals),
                installed.ok() ? std::optional<std::string>(*installed) : std::nullopt);
}

// A static pod's copy is its manifest, a few KB: kept, since an edit of
// the manifest by hand would otherwise count as a release nobody can roll
// back to.
void Executor::PruneCaptures(std::vector<SwapJournal> journals,
                             const std::optional<std::string>& installed_sha256) {
  if (options_.static_pod) return;
  const std::string operations_dir = options_.state_dir + "/operations";
  for (SwapJournal& j : journals) NameUnrecordedCapture(j, operations_dir);
  const std::vector<std::string> ids = CapturesToPrune(
      journals, installed_sha256, options_.rollback_steps, operations_dir);
  std::map<std::string, const SwapJournal*> by_id;
  for (const SwapJournal& j : journals) by_id[j.operation_id] = &j;
  for (const std::string& id : ids) {
    const SwapJournal& j = *by_id.at(id);
    const std::string name = j.previous_binary.substr(j.evidence_dir.size() + 1);
    // Through the directory, not following a link put in its place.
    const int dir = ::open(j.evidence_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    const int removed = dir < 0 ? -1 : ::unlinkat(dir, name.c_str(), 0);
    const int err = errno;
    if (dir >= 0) ::close(dir);
    if (removed == 0) {
      Log(LogLevel::kInfo, "copy of a replaced release deleted: no rollback can use it",
          {{"node", options_.node}, {"operation", id}, {"file", j.previous_binary}});
    } else if (err != ENOENT) {
      Log(LogLevel::kWarn, "cannot delete the copy of a replaced release",
          {{"node", options_.node}, {"operation", id}, {"file", j.previous_binary},
           {"error", std::strerror(err)}});
    }
  }
}

}  // namespace kmsfleet
