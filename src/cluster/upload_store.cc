#include "kmsfleet/cluster/upload_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

absl::Status UploadIoError(const std::string& what, const std::string& path, int err) {
  return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                   "upload: cannot " + what + " " + path + ": " + std::strerror(err),
                   {{"path", path}});
}

}  // namespace

UploadStore::UploadStore(std::string state_dir, uint64_t reserve_bytes, UploadLimits limits)
    : state_dir_(std::move(state_dir)), dir_(state_dir_ + "/uploads"),
      reserve_bytes_(reserve_bytes), limits_(limits) {}

UploadStore::Writer::Writer(const UploadStore& store, std::string temp, ScopedFd fd)
    : store_(store), temp_(std::move(temp)), fd_(std::move(fd)) {}

absl::Status UploadStore::Writer::CheckRoomFor(size_t bytes) const {
  const std::string& dir = store_.dir_;
  const uint64_t reserve_bytes = store_.reserve_bytes_;
  struct statvfs fs {};
  if (::fstatvfs(fd_.get(), &fs) != 0) return UploadIoError("measure free space of", dir, errno);
  const uint64_t free_bytes = uint64_t{fs.f_bavail} * fs.f_frsize;
  if (free_bytes >= reserve_bytes && free_bytes - reserve_bytes >= bytes) {
    return absl::OkStatus();
  }
  return MakeError(absl::StatusCode::kResourceExhausted, reason::kArtifactIo,
                   "upload: " + dir + " has " + std::to_string(free_bytes >> 20) +
                       " MiB free, and an upload may not leave less than " +
                       std::to_string(reserve_bytes >> 20) +
                       " MiB there (the agent's journals and election state share it); "
                       "free space there, or give nodes the release by URL",
                   {{"path", dir}, {"free_bytes", std::to_string(free_bytes)}});
}

UploadStore::Writer::~Writer() {
  if (!committed_) unlink(temp_.c_str());
  store_.EndStream();
}

absl::Status UploadStore::Writer::Append(const v1::ArtifactChunk& chunk) {
  if (absl::Status s = AcceptUploadChunk(progress_, chunk.name(), chunk.kind(), chunk.offset(),
                                         chunk.data().size());
      !s.ok()) {
    return s;
  }
  if (absl::Status s = CheckRoomFor(chunk.data().size()); !s.ok()) return s;
  const char* p = chunk.data().data();
  size_t left = chunk.data().size();
  while (left > 0) {
    ssize_t n = ::write(fd_.get(), p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return UploadIoError("write", temp_, n < 0 ? errno : EIO);
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ArtifactRef> UploadStore::Writer::Commit(std::string_view declared_sha256,
                                                            const std::string& node) {
  // Apart from Prune: uploads/<sha256>/ may be an older upload of the same
  // bytes that Prune has judged old, and removing it after the rename would
  // lose the file this returns as stored.
  std::shared_lock<std::shared_mutex> held = store_.HoldUploads();
  if (::fsync(fd_.get()) != 0) return UploadIoError("fsync", temp_, errno);
  absl::StatusOr<std::string> actual = Sha256File(temp_);
  if (!actual.ok()) return actual.status();
  if (absl::Status s = FinishUpload(progress_, declared_sha256, *actual); !s.ok()) return s;
  const std::string upload_dir = store_.dir_ + "/" + *actual;
  if (absl::Status s = EnsurePrivateDir(upload_dir, 0700); !s.ok()) return s;
  const std::string dest = upload_dir + "/" + progress_.name;
  if (::rename(temp_.c_str(), dest.c_str()) != 0) return UploadIoError("rename into", dest, errno);
  committed_ = true;
  if (absl::Status s = FsyncDir(upload_dir); !s.ok()) return s;
  if (absl::Status s = FsyncDir(store_.dir_); !s.ok()) return s;
  v1::ArtifactRef ref;
  ref.set_node(node);
  ref.set_sha256(*actual);
  ref.set_name(progress_.name);
  ref.set_size(progress_.received);
  ref.set_source(FormatCoordinatorSource({node, *actual, progress_.name}));
  return ref;
}

absl::StatusOr<std::unique_ptr<UploadStore::Writer>> UploadStore::Begin() const {
  {
    std::lock_guard<std::mutex> lock(streams_mu_);
    if (absl::Status s = AdmitUpload(streams_, limits_); !s.ok()) return s;
    ++streams_;  // the Writer's destructor gives it back
  }
  // Every way out but the Writer gives the slot back at once.
  const auto refuse = [this](absl::Status s) {
    EndStream();
    return s;
  };
  if (absl::Status s = EnsurePrivateDir(state_dir_, 0700); !s.ok()) return refuse(s);
  if (absl::Status s = EnsurePrivateDir(dir_, 0700); !s.ok()) return refuse(s);
  std::string temp = dir_ + "/.incoming-XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) return refuse(UploadIoError("create", temp, errno));
  return std::unique_ptr<Writer>(new Writer(*this, temp, ScopedFd(fd)));
}

void UploadStore::EndStream() const {
  std::lock_guard<std::mutex> lock(streams_mu_);
  --streams_;
}

std::shared_lock<std::shared_mutex> UploadStore::HoldUploads() const {
  return std::shared_lock<std::shared_mutex>(prune_mu_);
}

int UploadStore::Prune(std::chrono::system_clock::time_point cutoff,
                       std::string_view keep_sha256, std::vector<std::string>& errors,
                       const std::function<bool()>& may_prune) const {
  // Alone: an upload a Commit has just stored, or a plan's start has just
  // found, must not be removed after its caller was told it is there. The
  // caller's `may_prune` is asked here, where no plan can start unseen.
  std::unique_lock<std::shared_mutex> alone(prune_mu_);
  if (may_prune && !may_prune()) return 0;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir_, ec);
  if (ec) {
    if (ec != std::errc::no_such_file_or_directory) errors.push_back(dir_ + ": " + ec.message());
    return 0;
  }
  int removed = 0;
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    const bool upload = IsSha256Hex(name) && name != keep_sha256;
    if (!upload && !name.starts_with(".incoming-")) continue;  // not ours to remove
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0) continue;  // gone meanwhile
    if (std::chrono::system_clock::from_time_t(st.st_mtime) >= cutoff) continue;
    fs::remove_all(e.path(), ec);
    if (ec) {
      errors.push_back(e.path().string() + ": " + ec.message());
    } else {
      ++removed;
    }
  }
  return removed;
}

absl::StatusOr<std::string> UploadStore::Find(std::string_view sha256,
                                              std::string_view name) const {
  if (!IsSha256Hex(sha256) || !IsSafeFileName(name)) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kUploadBadName,
                     "no upload can be named " + std::string(sha256.substr(0, 64)) + "/" +
                         std::string(name.substr(0, 255)),
                     {{"sha256", std::string(sha256.substr(0, 64))}});
  }
  const std::string path = dir_ + "/" + std::string(sha256) + "/" + std::string(name);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return MakeError(absl::StatusCode::kNotFound, reason::kUploadNotFound,
                     "this agent holds no upload " + std::string(sha256) + "/" + std::string(name) +
                         " (upload it again to the coordinator)",
                     {{"sha256", std::string(sha256)}, {"name", std::string(name)}});
  }
  return path;
}

}  // namespace kmsfleet
