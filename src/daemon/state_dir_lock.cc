#include "daemon/state_dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstddef>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

// The pid the holder wrote, or "unknown": the file is ours and small, but
// the holder may be between truncating and writing it.
std::string HolderOf(int fd) {
  char buf[32];
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return "unknown";
  std::string pid(buf, static_cast<size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid.empty() ? "unknown" : pid;
}

}  // namespace

absl::StatusOr<StateDirLock> LockStateDir(const std::string& state_dir, pid_t self) {
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(state_dir, 0700));
  const std::string path = state_dir + "/" + kStateDirLockName;
  ScopedFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return IoError("open", path, errno);
  if (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return IoError("flock", path, errno);
    const std::string holder = HolderOf(fd.get());
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStateDirLocked,
                     "state_dir " + state_dir + " is in use by another kmsfleetd (pid " +
                         holder + ", lock " + path +
                         "); two agents on one node would both act on its journals and "
                         "vote twice in the election: stop the other one first",
                     {{"path", path}, {"holder_pid", holder}});
  }
  const std::string pid = std::to_string(self) + "\n";
  if (ftruncate(fd.get(), 0) != 0) return IoError("truncate", path, errno);
  if (pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    return IoError("write", path, errno);
  }
  return StateDirLock(std::move(fd));
}

namespace {

// `<name>.tmp.XXXXXX`: a temp of WriteFileAtomic or CopyFileAtomic
// (fs_util.cc), named by mkostemp's six characters.
bool IsAtomicWriteTemp(const std::string& name) {
  const size_t at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0 || name.size() - at != 5 + 6) return false;
  return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(at) + 5, name.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)); });
}

// The staged copies (up to a release's size) and records a killed Stage
// left in artifacts/<version>/.
int RemoveVersionDirTemps(const std::string& artifacts) {
  int removed = 0;
  std::error_code ec;
  for (const auto& version : std::filesystem::directory_iterator(artifacts, ec)) {
    std::error_code not_dir;
    if (!version.is_directory(not_dir)) continue;
    std::error_code inner;
    for (const auto& entry : std::filesystem::directory_iterator(version.path(), inner)) {
      std::error_code ignored;  // left for the next start
      if (IsAtomicWriteTemp(entry.path().filename().string()) &&
          std::filesystem::remove(entry.path(), ignored)) {
        ++removed;
      }
    }
  }
  return removed;
}

}  // namespace

int RemoveStaleTemps(const std::string& state_dir, const StateDirLock&) {
  int removed = RemoveVersionDirTemps(state_dir + "/artifacts");
  for (const auto& [dir, prefixes] :
       {std::pair{state_dir + "/artifacts", std::vector<std::string>{".incoming-", ".fetched-"}},
        std::pair{state_dir + "/uploads", std::vector<std::string>{".incoming-"}},
        std::pair{state_dir, std::vector<std::string>{"apiserver-restart.tmp."}}}) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      for (const std::string& prefix : prefixes) {
        std::error_code ignored;  // left for the next start
        if (name.rfind(prefix, 0) == 0 && std::filesystem::remove_all(entry.path(), ignored) > 0) {
          ++removed;
        }
      }
    }
  }
  return removed;
}

}  // namespace kmsfleet
