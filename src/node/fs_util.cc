#include "kmsfleet/node/fs_util.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

// Large enough that the hash loop, not the syscall path, is busy; small
// enough to come from the thread's heap. A zeroed 1 MiB buffer per file,
// often fresh pages first touched by the zeroing, cost milliseconds per
// stage on a small VM (bench/README.md).
constexpr size_t kBlock = 64 << 10;

}  // namespace

absl::Status IoError(std::string_view op, const std::string& path, int err) {
  absl::StatusCode code = err == ENOENT   ? absl::StatusCode::kNotFound
                          : err == EACCES ? absl::StatusCode::kPermissionDenied
                                          : absl::StatusCode::kUnavailable;
  return MakeError(code, reason::kArtifactIo,
                   std::string(op) + " " + path + ": " + std::strerror(err),
                   {{"path", path}});
}

absl::Status DiskWriteError(std::string_view op, const std::string& path, int err) {
  absl::StatusCode code = err == ENOSPC || err == EDQUOT  ? absl::StatusCode::kResourceExhausted
                          : err == EINTR || err == EAGAIN ? absl::StatusCode::kUnavailable
                                                          : absl::StatusCode::kFailedPrecondition;
  return MakeError(code, reason::kArtifactIo,
                   std::string(op) + " " + path + ": " + std::strerror(err), {{"path", path}});
}

namespace {

std::string_view FileTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a regular file";
}

absl::Status NotRegular(const std::string& path, std::string_view type) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotRegularFile,
                   path + " is " + std::string(type) + ", not a regular file",
                   {{"path", path}, {"file_type", std::string(type)}});
}

// A temp file of this call's own named `<name_prefix>XXXXXX` (mkostemp),
// with `mode` whatever the umask; `tmp` gets its name.
absl::StatusOr<ScopedFd> CreateTemp(const std::string& name_prefix, unsigned mode,
                                    std::string& tmp) {
  tmp = name_prefix + "XXXXXX";
  ScopedFd fd(mkostemp(tmp.data(), O_CLOEXEC));
  if (fd.get() < 0) return DiskWriteError("cannot create a temp file", name_prefix, errno);
  if (fchmod(fd.get(), mode) != 0) {
    absl::Status s = DiskWriteError("cannot chmod", tmp, errno);
    unlink(tmp.c_str());
    return s;
  }
  return fd;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string Hex(const unsigned char* d, unsigned n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

absl::Status WriteAll(int fd, const char* data, size_t size,
                      const std::string& path) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return DiskWriteError("cannot write", path, errno);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// lstat()s `path` into `st` and requires a directory, not a symlink to one.
absl::Status LstatDirectory(const std::string& path, struct stat& st) {
  if (lstat(path.c_str(), &st) != 0) return IoError("lstat", path, errno);
  if (S_ISDIR(st.st_mode)) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kArtifactIo,
                   path + " is not a directory (a symlink or file is in the way)",
                   {{"path", path}});
}

// Streams `fd` through `sink` in kBlock reads, hashing as it goes.
template <typename Sink>
absl::StatusOr<std::string> HashStream(int fd, const std::string& path,
                                       size_t max_bytes, Sink sink) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return MakeError(absl::StatusCode::kInternal, reason::kArtifactIo,
                     "cannot initialise SHA-256");
  }
  // Not zeroed: read() fills what is used.
  std::unique_ptr<char[]> buf(new char[kBlock]);
  size_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf.get(), kBlock);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("read", path, errno);
    if (n == 0) break;
    total += static_cast<size_t>(n);
    if (total > max_bytes) {
      return MakeError(absl::StatusCode::kResourceExhausted,
                       reason::kInputTooLarge,
                       path + " is larger than " + std::to_string(max_bytes) +
                           " bytes",
                       {{"path", path}});
    }
    EVP_DigestUpdate(ctx.get(), buf.get(), static_cast<size_t>(n));
    KMSFLEET_RETURN_IF_ERROR(sink(buf.get(), static_cast<size_t>(n)));
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  return Hex(md, len);
}

}  // namespace

ScopedFd::~ScopedFd() {
  if (fd_ >= 0) close(fd_);
}

ScopedFd& ScopedFd::operator=(ScopedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

absl::StatusOr<ScopedFd> OpenRegularFile(const std::string& path, Symlinks symlinks) {
  int nofollow = symlinks == Symlinks::kRefuse ? O_NOFOLLOW : 0;
  ScopedFd fd(open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | nofollow));
  if (fd.get() < 0 && errno == ELOOP && nofollow) return NotRegular(path, "a symbolic link");
  if (fd.get() < 0) return IoError("open", path, errno);
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return IoError("stat", path, errno);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, FileTypeName(st.st_mode));
  return fd;
}

absl::StatusOr<std::string> ReadBoundedFile(const std::string& path, size_t max_bytes,
                                            Symlinks symlinks) {
  KMSFLEET_ASSIGN_OR_RETURN(ScopedFd fd, OpenRegularFile(path, symlinks));
  std::string out;
  // On the heap: callers include small-stack threads (the metrics server's).
  std::vector<char> buf(64 << 10);
  for (;;) {
    ssize_t n = read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return IoError("read", path, errno);
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return MakeError(absl::StatusCode::kResourceExhausted,
                       reason::kInputTooLarge,
                       path + " is larger than " + std::to_string(max_bytes) +
                           " bytes",
                       {{"path", path}});
    }
    out.append(buf.data(), static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  return Sha256File(path, SIZE_MAX);
}

absl::StatusOr<std::string> Sha256File(const std::string& path, size_t max_bytes) {
  KMSFLEET_ASSIGN_OR_RETURN(ScopedFd fd, OpenRegularFile(path, Symlinks::kRefuse));
  posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  return HashStream(fd.get(), path, max_bytes,
                    [](const char*, size_t) { return absl::OkStatus(); });
}

std::string Sha256Hex(std::string_view bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  return Hex(md, len);
}

absl::Status EnsurePrivateDir(const std::string& path, unsigned mode) {
  bool created = mkdir(path.c_str(), mode) == 0;
  if (!created && errno != EEXIST) return IoError("mkdir", path, errno);
  struct stat st {};
  KMSFLEET_RETURN_IF_ERROR(LstatDirectory(path, st));
  // The new entry is durable only once its parent is: a journal written
  // into a directory that vanished with a crash would be lost too.
  if (created) KMSFLEET_RETURN_IF_ERROR(FsyncDir(DirOf(path)));
  return absl::OkStatus();
}

absl::Status AllowTraverse(const std::string& root, const std::string& dir) {
  if (dir != root && dir.rfind(root + "/", 0) != 0) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kArtifactIo,
                     dir + " is not below " + root, {{"path", dir}});
  }
  std::string path = root;
  size_t pos = root.size();
  for (;;) {
    struct stat st {};
    KMSFLEET_RETURN_IF_ERROR(LstatDirectory(path, st));
    const mode_t want = (st.st_mode & 07777) | S_IXGRP | S_IXOTH;
    if (want != (st.st_mode & 07777) && chmod(path.c_str(), want) != 0) {
      return IoError("chmod", path, errno);
    }
    if (pos >= dir.size()) return absl::OkStatus();
    size_t next = dir.find('/', pos + 1);
    pos = next == std::string::npos ? dir.size() : next;
    path = dir.substr(0, pos);
  }
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

absl::StatusOr<std::string> WriteTempFile(const std::string& name_prefix,
                                          std::string_view content, unsigned mode) {
  std::string tmp;
  KMSFLEET_ASSIGN_OR_RETURN(ScopedFd fd, CreateTemp(name_prefix, mode, tmp));
  absl::Status s = WriteAll(fd.get(), content.data(), content.size(), tmp);
  if (s.ok() && fsync(fd.get()) != 0) s = DiskWriteError("cannot fsync", tmp, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  return tmp;
}

absl::Status FsyncDir(const std::string& dir) {
  ScopedFd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return IoError("open", dir, errno);
  if (fsync(fd.get()) != 0) return DiskWriteError("cannot fsync", dir, errno);
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view content,
                             unsigned mode) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string tmp, WriteTempFile(path + ".tmp.", content, mode));
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = DiskWriteError("cannot rename into", path, errno);
    unlink(tmp.c_str());
    return s;
  }
  return FsyncDir(DirOf(path));
}

absl::Status CheckFreeSpace(const std::string& dir, uint64_t bytes, uint64_t reserve_bytes) {
  struct statvfs fs {};
  if (::statvfs(dir.c_str(), &fs) != 0) return IoError("measure the free space of", dir, errno);
  const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  if (free_bytes >= reserve_bytes && free_bytes - reserve_bytes >= bytes) {
    return absl::OkStatus();
  }
  auto mib = [](uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; };
  const std::string what = bytes == 0 ? "that is" : "writing " + mib(bytes) + " there would leave";
  return MakeError(absl::StatusCode::kResourceExhausted, reason::kArtifactIo,
                   dir + " has " + mib(free_bytes) + " free; " + what + " less than the " +
                       mib(reserve_bytes) +
                       " kept free for the agent's journals and state (and etcd, if it "
                       "shares the disk); free space there",
                   {{"path", dir},
                    {"free_bytes", std::to_string(free_bytes)},
                    {"needed_bytes", std::to_string(bytes)},
                    {"reserve_bytes", std::to_string(reserve_bytes)}});
}

absl::StatusOr<std::string> CopyFileAtomic(const std::string& source,
                                           const std::string& dest,
                                           unsigned mode,
                                           std::string_view expected_sha256,
                                           size_t max_bytes,
                                           uint64_t reserve_bytes) {
  KMSFLEET_ASSIGN_OR_RETURN(ScopedFd in, OpenRegularFile(source, Symlinks::kRefuse));
  if (reserve_bytes > 0) {
    struct stat st {};
    if (::fstat(in.get(), &st) != 0) return IoError("stat", source, errno);
    // A file over max_bytes is refused by the copy itself, naming its size.
    const uint64_t size = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), max_bytes);
    KMSFLEET_RETURN_IF_ERROR(CheckFreeSpace(DirOf(dest), size, reserve_bytes));
  }
  posix_fadvise(in.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::string tmp;
  absl::StatusOr<std::string> digest;
  {
    KMSFLEET_ASSIGN_OR_RETURN(ScopedFd out, CreateTemp(dest + ".tmp.", mode, tmp));
    digest = HashStream(in.get(), source, max_bytes,
                        [&](const char* d, size_t n) {
                          return WriteAll(out.get(), d, n, tmp);
                        });
    if (digest.ok() && !expected_sha256.empty() && *digest != expected_sha256) {
      digest = MakeError(absl::StatusCode::kFailedPrecondition,
                         reason::kChecksumMismatch,
                         "SHA-256 of " + source + " is " + *digest +
                             ", expected " + std::string(expected_sha256),
                         {{"file", source},
                          {"expected", std::string(expected_sha256)},
                          {"actual", *digest}});
    }
    if (digest.ok() && fsync(out.get()) != 0) digest = DiskWriteError("cannot fsync", tmp, errno);
  }
  if (!digest.ok()) {
    unlink(tmp.c_str());
    return digest.status();
  }
  if (rename(tmp.c_str(), dest.c_str()) != 0) {
    absl::Status s = DiskWriteError("cannot rename into", dest, errno);
    unlink(tmp.c_str());
    return s;
  }
  KMSFLEET_RETURN_IF_ERROR(FsyncDir(DirOf(dest)));
  return digest;
}

int64_t CoarseRealTimeMillis() {
  timespec now{};
  ::clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1000000;
}

int64_t StampGranularityMs(const timespec& t) {
  if (t.tv_nsec == 0) return 1000;
  return t.tv_nsec % 1000000 == 0 ? 1 : 0;
}

FilesIdentity IdentityOfFiles(const std::vector<std::string>& paths, int64_t settled_ms,
                              int64_t now_unix_ms) {
  FilesIdentity out;
  for (const std::string& path : paths) {
    struct stat st;
    // '\0' cannot occur in a path: two files' fields never run together.
    out.key += std::string_view("\0", 1);
    out.key += path;
    if (::stat(path.c_str(), &st) != 0) {
      // An absent file is a fact the key records; any other failure says
      // nothing of the file, which then never counts as settled.
      const bool absent = errno == ENOENT;
      out.key += absent ? ":absent" : ":unreadable";
      out.every_file_present = false;
      if (!absent) {
        out.settled = false;
        out.settles_in_ms = FilesIdentity::kNeverSettles;
      }
      continue;
    }
    out.key += absl::StrCat(":", st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                            st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, ":", st.st_ctim.tv_sec,
                            ".", st.st_ctim.tv_nsec);
    const int64_t changed_ms = int64_t{st.st_ctim.tv_sec} * 1000 + st.st_ctim.tv_nsec / 1000000;
    // A change time in the future (the clock went back) is not settled.
    const int64_t settles_in =
        settled_ms + StampGranularityMs(st.st_ctim) - (now_unix_ms - changed_ms);
    if (settles_in > 0) {
      out.settled = false;
      out.settles_in_ms = std::max(out.settles_in_ms, settles_in);
    }
  }
  return out;
}

}  // namespace kmsfleet
