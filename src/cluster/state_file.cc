#include "kmsfleet/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"

namespace kmsfleet {
namespace {

absl::Status WriteError(const std::string& path, std::string_view step) {
  return MakeError(absl::StatusCode::kUnavailable, reason::kStateWriteFailed,
                   "cannot persist " + path + ": " + std::string(step) + ": " +
                       std::strerror(errno),
                   {{"path", path}});
}

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

}  // namespace

absl::Status WriteStateFile(const std::string& path, std::string_view content) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return WriteError(path, "open " + tmp);
  bool ok = WriteAll(fd, content) && fsync(fd) == 0;
  int saved = errno;
  close(fd);
  errno = saved;
  if (!ok) return WriteError(path, "write " + tmp);
  if (rename(tmp.c_str(), path.c_str()) != 0) return WriteError(path, "rename");
  // The rename itself is durable only once the directory is synced.
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return WriteError(path, "open directory");
  ok = fsync(dfd) == 0;
  close(dfd);
  if (!ok) return WriteError(path, "fsync directory");
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> ReadStateFile(const std::string& path,
                                                         size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return std::optional<std::string>();
  if (fd < 0) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kStateReadFailed,
                     "cannot read " + path + ": " + std::strerror(errno),
                     {{"path", path}});
  }
  std::string out;
  char buf[8192];
  ssize_t n = 0;
  while (out.size() <= max_bytes) {
    n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int read_errno = errno;
  close(fd);
  // A read error must not pass as a short file: the caller would act on
  // a truncated record as if it were the whole of it.
  if (n < 0) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kStateReadFailed,
                     "cannot read " + path + ": " + std::strerror(read_errno),
                     {{"path", path}});
  }
  if (out.size() > max_bytes) {
    return MakeError(absl::StatusCode::kDataLoss, reason::kInputTooLarge,
                     path + " is larger than " + std::to_string(max_bytes) + " bytes",
                     {{"path", path}});
  }
  return std::optional<std::string>(std::move(out));
}

}  // namespace kmsfleet
