// Which operations' copies of the release they replaced may be deleted.
//
// Every swap copies the installed binary (or a static pod's manifest) into
// `<state_dir>/operations/<op>/` before it stops the provider
// (SwapJournal::previous_binary). A binary is tens of MB, and a node that
// is upgraded for years would fill its state directory with copies no
// rollback can use: a rollback undoes only a Stable operation whose target
// is installed now (Executor::PlanRollback). A copy is kept when
//   - its operation is open (running, or left for the next start), or an
//     open operation installs from it (a rollback of that operation);
//   - its operation ended RollbackFailed: the break-glass runbook restores
//     the provider from it by hand;
//   - its operation ended Stable and installed what is installed now (or
//     that is not known): `kmsfleetctl rollback` and a plan's rollback use
//     it;
//   - its operation is among the `keep_latest` newest that hold a copy,
//     so that rollbacks by hand can walk a few releases back.
// Every other copy may go. The journal and the registry copies (small)
// stay, as the operation's record.
//
// Pure: the node layer lists the journals, reads the installed digest and
// deletes.
#ifndef KMSFLEET_CORE_CAPTURE_RETENTION_H_
#define KMSFLEET_CORE_CAPTURE_RETENTION_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "kmsfleet/core/swap_machine.h"

namespace kmsfleet {

inline constexpr size_t kDefaultKeepLatestCaptures = 3;

// The ids of the operations in `journals` whose previous_binary may be
// deleted, oldest first. `installed_sha256`: the digest installed now,
// nullopt when unknown (then every Stable operation's copy is kept).
std::vector<std::string> CapturesToPrune(const std::vector<SwapJournal>& journals,
                                         const std::optional<std::string>& installed_sha256,
                                         size_t keep_latest);

// Whether `path` is a file directly inside `dir` (no "..", no deeper
// directory): the only kind of path the node deletes for a prune.
bool IsCaptureInside(const std::string& path, const std::string& dir);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_CAPTURE_RETENTION_H_
