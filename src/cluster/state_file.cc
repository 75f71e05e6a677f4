#include "kmsfleet/cluster/state_file.h"

#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {

// Both are the tree's one atomic write and one bounded read (fs_util.h),
// with the election's own reasons: a state file is not an artifact.

absl::Status WriteStateFile(const std::string& path, std::string_view content) {
  absl::Status s = WriteFileAtomic(path, content, 0600);
  if (s.ok()) return s;
  return MakeError(absl::StatusCode::kUnavailable, reason::kStateWriteFailed,
                   "cannot persist " + path + ": " + std::string(s.message()),
                   {{"path", path}});
}

absl::StatusOr<std::optional<std::string>> ReadStateFile(const std::string& path,
                                                         size_t max_bytes) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, max_bytes);
  if (text.ok()) return std::optional<std::string>(std::move(*text));
  if (absl::IsNotFound(text.status())) return std::optional<std::string>();
  if (ReasonOf(text.status()) == reason::kInputTooLarge) {
    return MakeError(absl::StatusCode::kDataLoss, reason::kInputTooLarge,
                     std::string(text.status().message()), {{"path", path}});
  }
  // A read error must not pass as a short file: the caller would act on a
  // truncated record as if it were the whole of it.
  return MakeError(absl::StatusCode::kUnavailable, reason::kStateReadFailed,
                   "cannot read " + path + ": " + std::string(text.status().message()),
                   {{"path", path}});
}

}  // namespace kmsfleet
