// Reads a provider release's CHANGELOG.md for the notes that must stop an
// unattended upgrade (reference §7.3): a `### ⚠ BREAKING CHANGES` or
// `### Compatibility` section, or the phrases "one-way", "fresh
// installation" or "wire format" in a release's notes. Each such note, for
// any release crossed, needs an explicit acknowledgement (--acknowledge).
//
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_CHANGELOG_H_
#define KMSFLEET_CORE_CHANGELOG_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/core/semver.h"

namespace kmsfleet {

// Changelogs larger than this are refused; upstream's is tens of KiB.
inline constexpr size_t kMaxChangelogBytes = 1 << 20;

// One note that needs acknowledging.
struct ChangelogFlag {
  std::string version;  // the release whose notes carry it
  // The acknowledgement code (reasons.h): CHANGELOG_BREAKING,
  // CHANGELOG_COMPATIBILITY, ONE_WAY_UPGRADE, FRESH_INSTALLATION,
  // WIRE_FORMAT_CHANGE.
  std::string code;
  int line = 0;          // 1-based line in the file
  std::string excerpt;   // the line, printable and bounded
};

struct ChangelogRelease {
  std::string version;  // canonical SemVer; "" for "Unreleased"
  int line = 0;
  // At most one flag per code: the first line that raised it.
  std::vector<ChangelogFlag> flags;
};

struct Changelog {
  std::vector<ChangelogRelease> releases;  // in file order
};

// Parses release headings `## <version>`, `## [<version>](link) (date)` or
// `## Unreleased`, and flags each release's notes. Text before the first
// release heading is ignored.
// Errors (kInvalidArgument):
//   INPUT_TOO_LARGE: more than kMaxChangelogBytes;
//   MALFORMED_CHANGELOG: a `## ` heading whose version is not strict SemVer
//     nor "Unreleased", or a version given twice (naming `what`, the line
//     and the value; metadata {file, line, value}).
absl::StatusOr<Changelog> ParseChangelog(std::string_view text,
                                         std::string_view what);

// OK when `changelog` has a release heading for `target`. A changelog
// without one (the installed release's, or a branch's with its notes under
// "Unreleased") says nothing of the releases up to the target, so it
// would pass them unread. Error (kInvalidArgument): MALFORMED_CHANGELOG,
// naming `what` and the target (metadata {file, target}).
absl::Status CheckChangelogNamesTarget(const Changelog& changelog, const SemVer& target,
                                       std::string_view what);

// The flags of every numbered release in (min(from,to), max(from,to)],
// in ascending version order. "Unreleased" notes are never crossed.
std::vector<ChangelogFlag> FlagsCrossed(const Changelog& changelog,
                                        const SemVer& from, const SemVer& to);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_CHANGELOG_H_
