// `kmsfleetctl upgrade` with release files on the operator's machine
// (issue 9, "Artifacts reach every node"): each such file is streamed to
// the coordinator (Fleet.UploadArtifact, 1 MiB chunks, the SHA-256 of the
// whole in the last), and the plan carries the coordinator:// source the
// coordinator answers with. Every agent then fetches it over mTLS and
// verifies it with its own keys.
// Thread-compatible.
#ifndef KMSFLEET_CLI_UPLOAD_RELEASE_H_
#define KMSFLEET_CLI_UPLOAD_RELEASE_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {

// A local file checked and hashed, ready to stream.
struct LocalUpload {
  std::string flag;  // "--artifact", ... for messages
  std::string path;
  UploadKind kind = UploadKind::kBinary;
  std::string name{};    // the base name of the file (a link's target's), as
                         // checksums.txt lists it
  std::string sha256{};  // of the whole file
  uint64_t size = 0;
};

// True if `source` is given to the agents as it is: a URL each node
// downloads, a coordinator:// source, or any value under --remote-paths.
bool PassedAsIs(const std::string& source, bool remote_paths);

// Checks that `path` is a regular file on this machine within its kind's
// bound, and hashes it. A symlink is followed, and the upload is named
// after the file it leads to (checksums.txt names that file, not the
// link). Errors: InvalidArgument INVALID_CONFIG naming the flag and path
// (absent: "pass a URL, or --remote-paths ..."); ResourceExhausted
// UPLOAD_TOO_LARGE over the bound.
absl::StatusOr<LocalUpload> PrepareUpload(const std::string& flag, const std::string& path,
                                          UploadKind kind);

// Streams `upload` on `stub`; on success fills `ref`. A local read error
// cancels the call and is returned in `local_error` (the gRPC status is
// then CANCELLED). An upload the agent ended for its silence carries
// UPLOAD_STALLED (WithUploadStalledReason).
grpc::Status StreamUpload(v1::Fleet::Stub& stub, grpc::ClientContext& context,
                          const LocalUpload& upload, v1::ArtifactRef* ref,
                          absl::Status* local_error);

// The agent ends an upload whose chunks stopped coming with a cancel,
// which carries no ErrorInfo: its reason leads the message instead
// ("[UPLOAD_STALLED] ..."). Gives such a status its ErrorInfo, so that it
// reads as the agent's answer, not as silence; any other `s` unchanged.
grpc::Status WithUploadStalledReason(const grpc::Status& s);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLI_UPLOAD_RELEASE_H_
