// The tree's file helpers: bounded reads of regular files only, crash-safe
// writes (a temp file of the call's own, fsync, rename, fsync the
// directory) and SHA-256 of a file in large reads.
// Thread-safe: free functions; concurrent writers of one path each use
// their own temp file, and the last rename wins.
#ifndef KMSFLEET_NODE_FS_UTIL_H_
#define KMSFLEET_NODE_FS_UTIL_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kmsfleet {

// Whether a read follows a symlink at the path. Files kmsfleet writes
// itself (artifacts, journals, state) are read with kRefuse, so a link
// planted there cannot redirect it; files an operator provides (configs,
// certificates) are often links and are read with kFollow.
enum class Symlinks { kRefuse, kFollow };

// A file descriptor, closed when it goes out of scope.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd();
  ScopedFd(ScopedFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  ScopedFd& operator=(ScopedFd&& other) noexcept;
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Opens `path` for reading only if it is a regular file. The open is
// non-blocking, so a FIFO cannot hang it, and the type is checked on the
// opened descriptor, so nothing can be swapped in between. Errors name the
// path: NotFound/PermissionDenied/Unavailable (ARTIFACT_IO);
// FailedPrecondition, NOT_REGULAR_FILE (metadata file_type) for a FIFO,
// device, socket or directory, or a symlink under Symlinks::kRefuse.
absl::StatusOr<ScopedFd> OpenRegularFile(const std::string& path, Symlinks symlinks);

// Reads at most `max_bytes` of the regular file `path`. Errors as
// OpenRegularFile, and ResourceExhausted (INPUT_TOO_LARGE) when larger.
absl::StatusOr<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes,
                                            Symlinks symlinks = Symlinks::kRefuse);

// Lower-case hex SHA-256 of the regular file at `path` (no symlink), read
// in 1 MiB blocks through OpenSSL EVP.
absl::StatusOr<std::string> Sha256File(const std::string& path);
// The same for a file that may be at most `max_bytes` long:
// ResourceExhausted (INPUT_TOO_LARGE) naming it when it is longer.
absl::StatusOr<std::string> Sha256File(const std::string& path, size_t max_bytes);
std::string Sha256Hex(std::string_view bytes);

// Creates `path` as a directory with `mode` if absent; refuses a symlink or
// a non-directory in the way (FailedPrecondition naming the path).
absl::Status EnsurePrivateDir(const std::string& path, unsigned mode);

// An I/O failure of `op` on `path` with errno `err`, reason ARTIFACT_IO:
// NotFound (ENOENT), PermissionDenied (EACCES), else Unavailable.
absl::Status IoError(std::string_view op, const std::string& path, int err);

// A failure of `op` writing `path` on this node's disk with errno `err`,
// reason ARTIFACT_IO, for work a plan sends again when it is Unavailable:
// ResourceExhausted when the disk is full (ENOSPC, EDQUOT), Unavailable
// only when interrupted (EINTR, EAGAIN), else FailedPrecondition. Sending
// it again cannot mend a read-only or failing disk: the plan halts instead.
absl::Status DiskWriteError(std::string_view op, const std::string& path, int err);

// The directory part of `path` ("." when it has none).
std::string DirOf(const std::string& path);

// Writes `content` to a new file of this call's own named
// `<name_prefix>XXXXXX` (mkostemp) with `mode`, fsynced; returns its path.
// On error nothing is left behind.
absl::StatusOr<std::string> WriteTempFile(const std::string& name_prefix,
                                          std::string_view content, unsigned mode);

// Writes `content` to `path` atomically: a temp file of this call's own
// (`<path>.tmp.XXXXXX`) in the same directory with `mode`, fsync, rename
// over `path`, fsync the directory.
absl::Status WriteFileAtomic(const std::string& path, std::string_view content,
                             unsigned mode);

// The free space a release download or copy into the agent's state
// directory must leave on its filesystem: the agent's journals, plan and
// election state live there, and on a control-plane node often etcd's
// data too, which stops taking writes when its disk fills.
inline constexpr uint64_t kStateFreeSpaceReserveBytes = uint64_t{256} << 20;

// OK when the filesystem holding the directory `dir` has room for `bytes`
// more and still `reserve_bytes` free (what an unprivileged writer may use,
// f_bavail). Otherwise ResourceExhausted ARTIFACT_IO naming `dir`, the free
// space, what was to be written and the reserve (metadata path,
// free_bytes, needed_bytes, reserve_bytes); Unavailable ARTIFACT_IO when
// it cannot be measured.
absl::Status CheckFreeSpace(const std::string& dir, uint64_t bytes, uint64_t reserve_bytes);

// Copies the regular file `source` (no symlink) to `dest` atomically as
// above with `mode`, hashing what it copies; returns the hex SHA-256 of the
// bytes now at `dest`. When `expected_sha256` is not empty and differs, the
// temp file is removed, `dest` is left untouched, and the error
// (CHECKSUM_MISMATCH) names `source`, the expected and the actual digest.
// Files over `max_bytes` are refused; `source` errors as OpenRegularFile.
// With `reserve_bytes`, a copy that would leave less than that free where
// `dest` lies is refused before anything is written (CheckFreeSpace).
absl::StatusOr<std::string> CopyFileAtomic(const std::string& source,
                                           const std::string& dest,
                                           unsigned mode,
                                           std::string_view expected_sha256,
                                           size_t max_bytes,
                                           uint64_t reserve_bytes = 0);

// Lets every user traverse (search, not list) each directory from `root`
// down to `dir` by adding the group and other execute bits, so that a
// binary kept below can run as another user (executor.run_as). `dir` must
// be `root` or below it; symlinks are refused. Nothing above `root` is
// touched.
absl::Status AllowTraverse(const std::string& root, const std::string& dir);

// Makes a directory entry change durable.
absl::Status FsyncDir(const std::string& dir);

// Each file's device, inode, size, modification and status-change times
// to the nanosecond, or "absent": equal keys mean that, as far as the file
// system tells, no file was written, replaced, created or removed in
// between, except by a rewrite stamped with the same time as the change
// before it (command_memo.h). `settled` says whether every file last
// changed at least `settled_ms` before `now_unix_ms` (CoarseRealTimeMillis,
// the clock files are stamped from, one kernel tick behind the precise
// one), plus the file system's own granularity when its stamps show one
// (whole seconds or milliseconds): a later rewrite then gets a later stamp.
// `settles_in_ms` says how much later, on the clock of `now_unix_ms`, the
// last of them will be settled if none changes. An absent file counts as
// settled; one that cannot be stat'ed for another reason never does.
struct FilesIdentity {
  static constexpr int64_t kNeverSettles = INT64_MAX;
  std::string key;
  bool settled = true;
  int64_t settles_in_ms = 0;       // 0 when settled
  bool every_file_present = true;  // false when one could not be stat'ed
};
FilesIdentity IdentityOfFiles(const std::vector<std::string>& paths, int64_t settled_ms,
                              int64_t now_unix_ms);
// CLOCK_REALTIME_COARSE in milliseconds.
int64_t CoarseRealTimeMillis();
// How much older than its stamp a change may be on the file system that
// stamped `t`: stamps in whole seconds (1000) or milliseconds (1) round
// down; finer ones (0) do not.
int64_t StampGranularityMs(const timespec& t);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_FS_UTIL_H_
