// A parser for what `bao-kms-provider version` prints (reference §2.2):
//
//   version: 0.1.0-preview.3
//   commit: 3f2c...
//   buildDate: 2026-10-01T09:00:00Z
//   dirty: false
//
// Used for providers older than 0.1.0-preview.3, which do not export
// openbao_kms_build_info, and to check a binary before it is installed.
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PROVIDER_VERSION_H_
#define KMSFLEET_CORE_PROVIDER_VERSION_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Output larger than this is refused; real output is about 120 bytes.
inline constexpr size_t kMaxVersionOutputBytes = 64 << 10;

struct ProviderBuild {
  std::string version;     // e.g. "0.1.0-preview.3"; "0.0.0-dev" unstamped
  std::string commit;      // "" when the line is absent
  std::string build_date;  // verbatim, e.g. RFC 3339; "" when absent
  bool dirty = false;      // false when the line is absent
};

// Parses `key: value` lines (LF or CRLF, blank lines and a trailing newline
// allowed). The keys are version, commit, buildDate and dirty; unknown keys
// are ignored, so a newer binary may print more. Values are trimmed of
// surrounding blanks.
//
// As a fallback it accepts cobra's `--version` form, the single line
// `bao-kms-provider version 0.1.0`, which yields only the version.
//
// Errors (kInvalidArgument):
//   INPUT_TOO_LARGE: more than kMaxVersionOutputBytes;
//   MALFORMED_VERSION_OUTPUT: no `version` line or an empty or blank-
//     containing version, a line that is not `key: value`, a known key
//     given twice, or `dirty` other than true/false. The message names the
//     line number and text.
absl::StatusOr<ProviderBuild> ParseVersionOutput(std::string_view output);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PROVIDER_VERSION_H_
