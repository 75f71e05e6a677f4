#include "cli/upload_release.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

bool StartsWith(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

absl::Status FlagError(const LocalUpload& u, std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   u.flag + " " + u.path + ": " + std::string(problem),
                   {{"flag", u.flag}, {"path", u.path}});
}

}  // namespace

bool PassedAsIs(const std::string& source, bool remote_paths) {
  return remote_paths || source.empty() || StartsWith(source, "http://") ||
         StartsWith(source, "https://") || IsCoordinatorSource(source);
}

absl::StatusOr<LocalUpload> PrepareUpload(const std::string& flag, const std::string& path,
                                          UploadKind kind) {
  LocalUpload u{.flag = flag, .path = path, .kind = kind};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return FlagError(u, std::string(std::strerror(errno)) +
                            " on this machine; pass an http(s) URL, or --remote-paths when the "
                            "path exists on every node");
  }
  if (!S_ISREG(st.st_mode)) return FlagError(u, "not a regular file");
  u.size = static_cast<uint64_t>(st.st_size);
  if (u.size > MaxUploadBytes(kind)) {
    return MakeError(absl::StatusCode::kResourceExhausted, reason::kUploadTooLarge,
                     flag + " " + path + " is " + std::to_string(u.size) + " bytes; a " +
                         std::string(UploadKindName(kind)) + " upload is bounded to " +
                         std::to_string(MaxUploadBytes(kind)),
                     {{"flag", flag}, {"path", path}});
  }
  // An operator's path may well be a link (current -> bao-kms-provider_
  // 0.2.0_linux_amd64), and Sha256File reads none. The upload is named
  // after the file the link leads to: that is the name checksums.txt lists
  // and every agent looks up, where the link's own name is in no release.
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) return FlagError(u, std::strerror(errno));
  const std::string target = resolved;
  u.name = target.substr(target.rfind('/') + 1);
  absl::StatusOr<std::string> digest = Sha256File(target);
  if (!digest.ok()) return FlagError(u, std::string(digest.status().message()));
  u.sha256 = *digest;
  return u;
}

grpc::Status StreamUpload(v1::Fleet::Stub& stub, grpc::ClientContext& context,
                          const LocalUpload& upload, v1::ArtifactRef* ref,
                          absl::Status* local_error) {
  absl::StatusOr<ScopedFd> fd = OpenRegularFile(upload.path, Symlinks::kFollow);
  if (!fd.ok()) {
    *local_error = fd.status();
    return grpc::Status(grpc::StatusCode::CANCELLED, "local read failed");
  }
  auto writer = stub.UploadArtifact(&context, ref);
  std::string block(kMaxUploadChunkBytes, '\0');
  uint64_t offset = 0;
  for (bool last = false; !last;) {
    ssize_t n = ::read(fd->get(), block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *local_error = FlagError(upload, std::strerror(errno));
      context.TryCancel();
      writer->Finish().IgnoreError();
      return grpc::Status(grpc::StatusCode::CANCELLED, "local read failed");
    }
    last = n == 0;
    v1::ArtifactChunk chunk;
    if (offset == 0) {
      chunk.set_name(upload.name);
      chunk.set_kind(std::string(UploadKindName(upload.kind)));
    }
    chunk.set_offset(offset);
    chunk.set_data(block.data(), static_cast<size_t>(n));
    if (last) chunk.set_sha256(upload.sha256);
    // A refusal ends the stream early: Finish carries the reason.
    if (!writer->Write(chunk)) break;
    offset += static_cast<uint64_t>(n);
  }
  writer->WritesDone();
  return WithUploadStalledReason(writer->Finish());
}

grpc::Status WithUploadStalledReason(const grpc::Status& s) {
  // error_message() returns a copy: the view below must outlive the call.
  const std::string message = s.error_message();
  const std::optional<std::string_view> detail = StalledUploadDetail(message);
  if (s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED || !s.error_details().empty() ||
      !detail) {
    return s;
  }
  v1::ErrorInfo info;
  info.set_reason(reason::kUploadStalled);
  info.set_domain("kmsfleet.io");
  return grpc::Status(s.error_code(), std::string(*detail), info.SerializeAsString());
}

}  // namespace kmsfleet
