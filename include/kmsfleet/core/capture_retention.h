// Which operations' copies of the release they replaced may be deleted.
//
// Every swap copies the installed binary into `<state_dir>/operations/<op>/`
// before it stops the provider (SwapJournal::previous_binary). A binary is
// tens of MB, and a node upgraded for years would fill its state directory
// with copies no rollback can use: a rollback undoes only a Stable
// operation whose target is installed now (Executor::PlanRollback), and
// installs that operation's copy. A copy is kept when
//   - its operation is open (running, or left for the next start);
//   - its operation ended RollbackFailed (the break-glass runbook
//     restores the provider from it by hand);
//   - an open operation, or one that ended RollbackFailed, installs from
//     it (a rollback of its operation);
//   - it is on the rollback chain: its operation ended Stable and
//     installed what is installed now (the first rollback), or installed
//     what such an operation replaced (the rollback after that), and so on
//     for `rollback_steps` rollbacks in a row. When what is installed is not
//     known, every Stable operation's copy is kept.
// Every other copy may go: those of operations that ended RolledBack or
// before the stop, and of Stable operations off the chain. The journal and
// the registry copies (small) stay, as the operation's record.
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

inline constexpr size_t kDefaultRollbackSteps = 3;

// The ids of the operations in `journals` whose previous_binary may be
// deleted, oldest first. `installed_sha256`: the digest installed now,
// nullopt when unknown. Only copies the agent made are ever listed: a
// journal's evidence_dir must be `<operations_dir>/<its id>` and its copy
// `previous-binary` or `previous-manifest.yaml` in it (a journal edited by
// hand cannot point the prune at another file).
std::vector<std::string> CapturesToPrune(const std::vector<SwapJournal>& journals,
                                         const std::optional<std::string>& installed_sha256,
                                         size_t rollback_steps,
                                         const std::string& operations_dir);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_CAPTURE_RETENTION_H_
