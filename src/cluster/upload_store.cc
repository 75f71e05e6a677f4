#include "kmsfleet/cluster/upload_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

UploadStore::UploadStore(std::string state_dir)
    : state_dir_(std::move(state_dir)), dir_(state_dir_ + "/uploads") {}

UploadStore::Writer::Writer(std::string dir, std::string temp, ScopedFd fd)
    : dir_(std::move(dir)), temp_(std::move(temp)), fd_(std::move(fd)) {}

UploadStore::Writer::~Writer() {
  if (!committed_) unlink(temp_.c_str());
}

absl::Status UploadStore::Writer::Append(const v1::ArtifactChunk& chunk) {
  if (absl::Status s = AcceptUploadChunk(progress_, chunk.name(), chunk.kind(), chunk.offset(),
                                         chunk.data().size());
      !s.ok()) {
    return s;
  }
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
  if (::fsync(fd_.get()) != 0) return UploadIoError("fsync", temp_, errno);
  absl::StatusOr<std::string> actual = Sha256File(temp_);
  if (!actual.ok()) return actual.status();
  if (absl::Status s = FinishUpload(progress_, declared_sha256, *actual); !s.ok()) return s;
  const std::string held = dir_ + "/" + *actual;
  if (absl::Status s = EnsurePrivateDir(held, 0700); !s.ok()) return s;
  const std::string dest = held + "/" + progress_.name;
  if (::rename(temp_.c_str(), dest.c_str()) != 0) return UploadIoError("rename into", dest, errno);
  committed_ = true;
  if (absl::Status s = FsyncDir(held); !s.ok()) return s;
  if (absl::Status s = FsyncDir(dir_); !s.ok()) return s;
  v1::ArtifactRef ref;
  ref.set_node(node);
  ref.set_sha256(*actual);
  ref.set_name(progress_.name);
  ref.set_size(progress_.received);
  ref.set_source(FormatCoordinatorSource({node, *actual, progress_.name}));
  return ref;
}

absl::StatusOr<std::unique_ptr<UploadStore::Writer>> UploadStore::Begin() const {
  if (absl::Status s = EnsurePrivateDir(state_dir_, 0700); !s.ok()) return s;
  if (absl::Status s = EnsurePrivateDir(dir_, 0700); !s.ok()) return s;
  std::string temp = dir_ + "/.incoming-XXXXXX";
  int fd = ::mkstemp(temp.data());
  if (fd < 0) return UploadIoError("create", temp, errno);
  return std::make_unique<Writer>(dir_, temp, ScopedFd(fd));
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
