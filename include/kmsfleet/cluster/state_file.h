// Small durable files for persisted state (architecture.md §2, "persist
// before you act"): a write is a temporary file in the same directory,
// fsync, rename over the target, and fsync of the directory, so a crash
// leaves either the old or the new content, never a mix.
// Thread-compatible: one writer per path.
#ifndef KMSFLEET_CLUSTER_STATE_FILE_H_
#define KMSFLEET_CLUSTER_STATE_FILE_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Durably replaces `path` with `content`. Errors: Unavailable with reason
// STATE_WRITE_FAILED naming the path and errno text; `path` is unchanged.
absl::Status WriteStateFile(const std::string& path, std::string_view content);

// Reads `path`, or nullopt when it does not exist. Errors: DataLoss with
// reason INPUT_TOO_LARGE when over `max_bytes`; Unavailable with reason
// STATE_READ_FAILED when it cannot be opened or read whole.
absl::StatusOr<std::optional<std::string>> ReadStateFile(const std::string& path,
                                                         size_t max_bytes);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_STATE_FILE_H_
