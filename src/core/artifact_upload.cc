#include "kmsfleet/core/artifact_upload.h"

#include <algorithm>
#include <vector>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

absl::Status Malformed(std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kUploadMalformed,
                   "upload refused: " + std::string(problem));
}

}  // namespace

std::string_view UploadKindName(UploadKind kind) {
  switch (kind) {
    case UploadKind::kBinary:
      return "binary";
    case UploadKind::kChecksums:
      return "checksums";
    case UploadKind::kSignature:
      return "signature";
    case UploadKind::kImageRef:
      return "image-ref";
  }
  return "binary";
}

absl::StatusOr<UploadKind> ParseUploadKind(std::string_view name) {
  for (UploadKind k : {UploadKind::kBinary, UploadKind::kChecksums, UploadKind::kSignature,
                       UploadKind::kImageRef}) {
    if (UploadKindName(k) == name) return k;
  }
  return Malformed("kind \"" + std::string(name.substr(0, 32)) +
                   "\" is none of binary, checksums, signature, image-ref");
}

uint64_t MaxUploadBytes(UploadKind kind) {
  // What every agent's Stage reads of it: a larger file is refused before
  // the plan is proposed, not by every node after it was committed.
  switch (kind) {
    case UploadKind::kChecksums: return kMaxChecksumsBytes;
    case UploadKind::kSignature: return kMaxSignatureBytes;
    case UploadKind::kBinary:
    case UploadKind::kImageRef:  // a static-pod kit carries binaries too
      break;
  }
  return uint64_t{512} << 20;
}

absl::Status AcceptUploadChunk(UploadProgress& progress, std::string_view name,
                               std::string_view kind, uint64_t offset, size_t size) {
  UploadProgress next = progress;
  if (!progress.started || !name.empty()) {
    if (!IsSafeFileName(name)) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kUploadBadName,
                       "upload refused: \"" + std::string(name.substr(0, 255)) +
                           "\" is not a plain file name ([A-Za-z0-9._+-], no '/')",
                       {{"name", std::string(name.substr(0, 255))}});
    }
    if (progress.started && name != progress.name) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kUploadBadName,
                       "upload refused: a chunk names " + std::string(name) +
                           " but the upload is " + progress.name,
                       {{"name", std::string(name)}});
    }
    next.name = std::string(name);
  }
  if (!progress.started || !kind.empty()) {
    absl::StatusOr<UploadKind> parsed = ParseUploadKind(kind);
    if (!parsed.ok()) return parsed.status();
    if (progress.started && *parsed != progress.kind) {
      return Malformed("the kind changed from " + std::string(UploadKindName(progress.kind)) +
                       " to " + std::string(kind) + " mid-stream");
    }
    next.kind = *parsed;
  }
  if (offset != progress.received) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kUploadOffsetGap,
                     "upload of " + next.name + " refused: a chunk starts at byte " +
                         std::to_string(offset) + " but " + std::to_string(progress.received) +
                         " bytes were received",
                     {{"name", next.name},
                      {"offset", std::to_string(offset)},
                      {"received", std::to_string(progress.received)}});
  }
  const uint64_t bound = MaxUploadBytes(next.kind);
  if (size > kMaxUploadChunkBytes || progress.received + size > bound) {
    return MakeError(absl::StatusCode::kResourceExhausted, reason::kUploadTooLarge,
                     "upload of " + next.name + " refused: " +
                         (size > kMaxUploadChunkBytes
                              ? "a chunk of " + std::to_string(size) + " bytes exceeds 1 MiB"
                              : "it exceeds the " + std::to_string(bound) + "-byte bound for " +
                                    std::string(UploadKindName(next.kind)) + " files"),
                     {{"name", next.name}, {"limit_bytes", std::to_string(bound)}});
  }
  next.started = true;
  next.received += size;
  progress = std::move(next);
  return absl::OkStatus();
}

absl::Status AdmitUpload(int active, const UploadLimits& limits) {
  if (active < limits.max_streams) return absl::OkStatus();
  return MakeError(absl::StatusCode::kResourceExhausted, reason::kUploadBusy,
                   "upload refused: " + std::to_string(active) +
                       " uploads are being received, as many as cluster.upload_streams (" +
                       std::to_string(limits.max_streams) +
                       ") allows; try again once one ends (one that sends nothing for " +
                       std::to_string(limits.idle_timeout.count()) + " ms is ended)",
                   {{"active", std::to_string(active)},
                    {"limit", std::to_string(limits.max_streams)}});
}

absl::Status UploadStalled(const UploadProgress& got, const UploadLimits& limits) {
  const std::string name = got.started ? got.name : "a file";
  return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kUploadStalled,
                   "the upload of " + name + " was ended after " +
                       std::to_string(got.received) + " bytes: no chunk came for " +
                       std::to_string(limits.idle_timeout.count()) +
                       " ms (cluster.upload_idle_timeout_ms); nothing is stored",
                   {{"name", got.name}, {"bytes", std::to_string(got.received)}});
}

namespace {
const std::string& StalledLead() {
  static const std::string lead = "[" + std::string(reason::kUploadStalled) + "] ";
  return lead;
}
}  // namespace

std::string StalledUploadCallerMessage(const UploadLimits& limits) {
  return StalledLead() + "the agent ended this upload: no chunk came for " +
         std::to_string(limits.idle_timeout.count()) +
         " ms (cluster.upload_idle_timeout_ms); nothing of it is stored";
}

std::optional<std::string_view> StalledUploadDetail(std::string_view message) {
  if (!message.starts_with(StalledLead())) return std::nullopt;
  return message.substr(StalledLead().size());
}

bool IsSha256Hex(std::string_view text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

absl::Status FinishUpload(const UploadProgress& progress, std::string_view declared_sha256,
                          std::string_view actual_sha256) {
  if (!progress.started) return Malformed("the stream carried no chunk");
  if (!IsSha256Hex(declared_sha256)) {
    return Malformed("the last chunk of " + progress.name +
                     " declares no SHA-256 (64 lower-case hex digits)");
  }
  if (declared_sha256 != actual_sha256) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kUploadDigestMismatch,
                     "upload of " + progress.name + " refused: the " +
                         std::to_string(progress.received) + " bytes received hash to " +
                         std::string(actual_sha256) + ", the uploader declared " +
                         std::string(declared_sha256),
                     {{"name", progress.name},
                      {"expected", std::string(declared_sha256)},
                      {"actual", std::string(actual_sha256)}});
  }
  return absl::OkStatus();
}

bool IsCoordinatorSource(std::string_view source) {
  return source.substr(0, kCoordinatorScheme.size()) == kCoordinatorScheme;
}

std::string FormatCoordinatorSource(const CoordinatorSource& source) {
  return std::string(kCoordinatorScheme) + source.node + "/" + source.sha256 + "/" + source.name;
}

absl::StatusOr<CoordinatorSource> ParseCoordinatorSource(std::string_view source) {
  std::vector<std::string> parts;
  if (IsCoordinatorSource(source) && source.size() < 1024) {
    std::string_view rest = source.substr(kCoordinatorScheme.size());
    for (size_t slash; (slash = rest.find('/')) != std::string_view::npos;
         rest.remove_prefix(slash + 1)) {
      parts.emplace_back(rest.substr(0, slash));
    }
    parts.emplace_back(rest);
  }
  if (parts.size() != 3 || !IsSafeFileName(parts[0]) || !IsSha256Hex(parts[1]) ||
      !IsSafeFileName(parts[2])) {
    std::string shown(source.substr(0, 300));
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kSourceNotAllowed,
                     "source " + shown + " is not coordinator://<node>/<sha256>/<file name>",
                     {{"source", shown}});
  }
  return CoordinatorSource{parts[0], parts[1], parts[2]};
}

}  // namespace kmsfleet
