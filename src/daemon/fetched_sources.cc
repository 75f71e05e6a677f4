#include "daemon/fetched_sources.h"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {

absl::StatusOr<std::unique_ptr<FetchedSources>> FetchedSources::Fetch(
    const StageRequest& request, const std::string& state_dir, const FetchUpload& fetch,
    FetchDeadline deadline, const FetchStop& stop) {
  std::unique_ptr<FetchedSources> out(new FetchedSources());
  out->request_ = request;
  if (!IsCoordinatorSource(request.source) && !IsCoordinatorSource(request.checksums) &&
      !IsCoordinatorSource(request.signature) && !IsCoordinatorSource(request.image_ref_file)) {
    return out;
  }
  if (!fetch) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kSourceNotAllowed,
                     "coordinator:// sources are fetched only by a cluster member's agent over "
                     "the cluster listener; this one is not",
                     {{"source", request.source}});
  }
  if (absl::Status s = EnsurePrivateDir(state_dir, 0700); !s.ok()) return s;
  if (absl::Status s = EnsurePrivateDir(state_dir + "/artifacts", 0700); !s.ok()) return s;
  std::string dir = state_dir + "/artifacts/.fetched-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return DiskWriteError("cannot create", dir, errno);
  out->dir_ = dir;
  for (auto [field, kind] : {std::pair{&out->request_.source, UploadKind::kBinary},
                             std::pair{&out->request_.checksums, UploadKind::kChecksums},
                             std::pair{&out->request_.signature, UploadKind::kSignature},
                             std::pair{&out->request_.image_ref_file, UploadKind::kImageRef}}) {
    if (absl::Status s = out->FetchOne(*field, kind, fetch, deadline, stop); !s.ok()) return s;
  }
  return out;
}

absl::Status FetchedSources::FetchOne(std::string& source, UploadKind kind,
                                      const FetchUpload& fetch, FetchDeadline deadline,
                                      const FetchStop& stop) {
  if (!IsCoordinatorSource(source)) return absl::OkStatus();
  absl::StatusOr<CoordinatorSource> parsed = ParseCoordinatorSource(source);
  if (!parsed.ok()) return parsed.status();
  const std::string sub = dir_ + "/" + std::string(UploadKindName(kind));
  if (absl::Status s = EnsurePrivateDir(sub, 0700); !s.ok()) return s;
  const std::string dest = sub + "/" + parsed->name;
  if (absl::Status s = fetch(source, kind, dest, deadline, stop); !s.ok()) return s;
  fetched_.emplace_back(dest, source);
  source = dest;
  return absl::OkStatus();
}

absl::Status FetchedSources::NameSources(const absl::Status& s) const {
  absl::Status out = s;
  for (const auto& [path, source] : fetched_) out = WithNameInMessage(out, path, source);
  return out;
}

FetchedSources::~FetchedSources() {
  if (dir_.empty()) return;
  std::error_code ignored;  // a leftover is harmless: it is never staged again
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace kmsfleet
