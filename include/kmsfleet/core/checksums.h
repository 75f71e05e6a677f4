// The release's checksums.txt (reference §8.9): GNU `sha256sum` output, one
// `<64 hex digits><space><space or '*'><file name>` line per asset. The
// download script selects exactly one line by file name; so do we.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_CHECKSUMS_H_
#define KMSFLEET_CORE_CHECKSUMS_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Real checksums files list about twenty assets; anything this large is not
// one.
inline constexpr size_t kMaxChecksumsBytes = 1 << 20;
// A detached signature of checksums.txt is a few hundred bytes.
inline constexpr size_t kMaxSignatureBytes = 64 << 10;

// True if `name` is usable as one path component of an artifact: 1..255
// bytes of [A-Za-z0-9._+-], not "." or "..", not starting with '-'.
bool IsSafeFileName(std::string_view name);

// Returns the lower-case hex SHA-256 listed for `file_name` in `text`.
// Blank lines are ignored; every other line must be well formed, so a
// truncated or tampered file is refused as a whole.
// Errors (kInvalidArgument, naming `what`, the line number and the problem):
//   INPUT_TOO_LARGE: more than kMaxChecksumsBytes;
//   MALFORMED_CHECKSUMS: a line that is not `<hex> <sp|*><name>`, a digest
//     that is not 64 hex digits;
//   CHECKSUM_NOT_LISTED / CHECKSUM_AMBIGUOUS: zero or several lines name
//     `file_name`.
absl::StatusOr<std::string> FindChecksum(std::string_view text,
                                         std::string_view file_name,
                                         std::string_view what);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_CHECKSUMS_H_
