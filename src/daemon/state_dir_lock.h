// One kmsfleetd per state directory. Two agents on one node (a second one
// started by hand, or a static-pod agent beside the systemd one during a
// migration) would both finish the same open journal, answer hand-offs
// from journals the other is still writing, and vote twice in one term
// from the same election state. The first thing an agent does is take an
// exclusive lock on `<state_dir>/kmsfleetd.lock`; the kernel drops it when
// the process ends, however it ends.
#ifndef KMSFLEET_DAEMON_STATE_DIR_LOCK_H_
#define KMSFLEET_DAEMON_STATE_DIR_LOCK_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {

class StateDirLock {
 public:
  // Holds the lock until destroyed.
  explicit StateDirLock(ScopedFd fd) : fd_(std::move(fd)) {}

 private:
  ScopedFd fd_;
};

// The lock file's name inside the state directory.
inline constexpr char kStateDirLockName[] = "kmsfleetd.lock";

// Creates `state_dir` (0700) if absent, locks its lock file without
// waiting and writes `self` into it, so that an agent refused the lock can
// name the holder. Errors: FailedPrecondition, STATE_DIR_LOCKED naming the
// directory, the lock file and the holder's pid; I/O errors (ARTIFACT_IO)
// naming the path.
absl::StatusOr<StateDirLock> LockStateDir(const std::string& state_dir, pid_t self);

// Removes what a killed agent left half-written in `state_dir`: downloads
// (artifacts/.incoming-*), fetched uploads (artifacts/.fetched-*) and
// uploads in progress (uploads/.incoming-*), each up to a release's size,
// and the temps of a staged copy or record (artifacts/<version>/*.tmp.XXXXXX).
// Only the lock's holder may call it: another agent could be writing them.
// Returns how many entries it removed; what it cannot remove is left.
int RemoveStaleTemps(const std::string& state_dir, const StateDirLock& held);

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_STATE_DIR_LOCK_H_
