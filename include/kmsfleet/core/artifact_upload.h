// Release files an operator streams to the coordinator (issue 9, "Artifacts
// reach every node"): the rules every chunk of Fleet.UploadArtifact must
// follow, and the `coordinator://<node>/<sha256>/<name>` source string an
// agent's Stage fetches it back by.
//
// The coordinator only relays bytes: each agent still verifies the
// signature and the checksum with its own keys, so nothing here is trust.
// Pure: the shells hash the bytes and store them; this decides.
// Thread-compatible: an UploadProgress belongs to one stream.
#ifndef KMSFLEET_CORE_ARTIFACT_UPLOAD_H_
#define KMSFLEET_CORE_ARTIFACT_UPLOAD_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kmsfleet {

// NOTE: the names are wire format (ArtifactChunk.kind): never rename.
// kImageRef: a static-pod kit (its tarball) or its image-ref.txt (issue 10).
enum class UploadKind { kBinary, kChecksums, kSignature, kImageRef };

std::string_view UploadKindName(UploadKind kind);  // "binary", ...
// Errors: InvalidArgument, UPLOAD_MALFORMED for any other string.
absl::StatusOr<UploadKind> ParseUploadKind(std::string_view name);

inline constexpr size_t kMaxUploadChunkBytes = size_t{1} << 20;
// The largest upload of `kind`: 512 MiB for a binary, 1 MiB otherwise.
uint64_t MaxUploadBytes(UploadKind kind);

// What the chunks of one upload fixed so far.
struct UploadProgress {
  bool started = false;
  std::string name{};
  UploadKind kind = UploadKind::kBinary;
  uint64_t received = 0;  // bytes accepted, = the next chunk's offset
};

// Accepts the next chunk into `progress`, or refuses it and leaves
// `progress` unchanged. The first chunk fixes name and kind; later chunks
// may repeat them or leave them empty.
// Errors (InvalidArgument unless said): UPLOAD_BAD_NAME for a name that is
// not a safe file name (checksums.h) or differs from the first;
// UPLOAD_MALFORMED for an unknown or changed kind; UPLOAD_OFFSET_GAP when
// `offset` is not `progress.received`; ResourceExhausted UPLOAD_TOO_LARGE
// for a chunk over kMaxUploadChunkBytes or a total over MaxUploadBytes.
absl::Status AcceptUploadChunk(UploadProgress& progress, std::string_view name,
                               std::string_view kind, uint64_t offset, size_t size);

// Decides whether a finished stream is a whole upload: at least one chunk,
// `declared_sha256` 64 lower-case hex digits and equal to `actual_sha256`
// (what the shell hashed). Errors: UPLOAD_MALFORMED; FailedPrecondition
// UPLOAD_DIGEST_MISMATCH naming both digests.
absl::Status FinishUpload(const UploadProgress& progress, std::string_view declared_sha256,
                          std::string_view actual_sha256);

// How many uploads one agent receives at once, and how long one may go
// without a chunk (docs/config.md, cluster.upload_*). An upload holds a
// server thread, an open temp file and its share of the disk until it
// ends, and a caller that neither sends nor hangs up would hold them for
// ever: gRPC ends such a stream only when the server cancels it.
struct UploadLimits {
  int max_streams = 4;
  std::chrono::milliseconds idle_timeout{60'000};
};

// Whether one more upload may start while `active` are being received.
// Errors: ResourceExhausted UPLOAD_BUSY naming both counts and the key.
absl::Status AdmitUpload(int active, const UploadLimits& limits);

// The refusal of an upload whose caller sent no chunk for
// `limits.idle_timeout`: DeadlineExceeded UPLOAD_STALLED naming the file
// (if a chunk named it) and the bytes received.
absl::Status UploadStalled(const UploadProgress& got, const UploadLimits& limits);

// What the caller of a stream ended for its silence is told. The status
// comes with a cancel, which carries no ErrorInfo, so the reason leads the
// text: "[UPLOAD_STALLED] ...". StalledUploadDetail reads it back.
std::string StalledUploadCallerMessage(const UploadLimits& limits);
// The text after the "[UPLOAD_STALLED] " that leads `message`, if it does.
std::optional<std::string_view> StalledUploadDetail(std::string_view message);

// True if `text` is 64 lower-case hex digits.
bool IsSha256Hex(std::string_view text);

// An upload held by `node`: the Stage source "coordinator://node/sha/name".
struct CoordinatorSource {
  std::string node;
  std::string sha256;
  std::string name;
};

inline constexpr std::string_view kCoordinatorScheme = "coordinator://";

bool IsCoordinatorSource(std::string_view source);
std::string FormatCoordinatorSource(const CoordinatorSource& source);
// Errors: InvalidArgument, SOURCE_NOT_ALLOWED naming the source when it is
// not the scheme followed by a safe node name, a SHA-256 and a safe file
// name.
absl::StatusOr<CoordinatorSource> ParseCoordinatorSource(std::string_view source);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_ARTIFACT_UPLOAD_H_
