// Strict Semantic Versioning 2.0.0 (https://semver.org), the version policy
// of architecture.md §5: an upgrade must go up, and provider releases are
// SemVer tags such as 0.1.0-preview.3 (reference §7.1).
//
// Thread-safe: SemVer is an immutable value.
#ifndef KMSFLEET_CORE_SEMVER_H_
#define KMSFLEET_CORE_SEMVER_H_

#include <compare>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

class SemVer {
 public:
  SemVer() = default;  // 0.0.0

  // Texts longer than this are refused; real versions are under 40 bytes.
  static constexpr size_t kMaxLength = 256;

  // Parses MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] exactly as the SemVer
  // 2.0.0 grammar allows. Error (kInvalidArgument, INVALID_SEMVER; the
  // message names the text and the rule broken) for: a leading 'v', a
  // missing part, an empty identifier, a leading zero in a numeric core or
  // pre-release identifier, a character outside [0-9A-Za-z-] in an
  // identifier (so any non-ASCII byte or blank), a core number above
  // UINT64_MAX, or text longer than kMaxLength.
  static absl::StatusOr<SemVer> Parse(std::string_view text);

  // Returns <0, 0 or >0 as *this has lower, equal or higher precedence than
  // `other` (SemVer §11): major, minor and patch numerically; then a
  // pre-release is lower than the release; then pre-release identifiers
  // left to right, numeric ones numerically and below alphanumeric ones,
  // alphanumeric ones in ASCII order, and a shorter list lower when all its
  // identifiers are equal. Build metadata is ignored.
  int Compare(const SemVer& other) const;

  uint64_t major() const { return major_; }
  uint64_t minor() const { return minor_; }
  uint64_t patch() const { return patch_; }
  // The dot-separated pre-release identifiers; empty for a release.
  const std::vector<std::string>& prerelease() const { return prerelease_; }
  // The build metadata after '+', without it; "" if none.
  const std::string& build() const { return build_; }
  bool is_prerelease() const { return !prerelease_.empty(); }

  // The canonical text; Parse(v.ToString()) gives v back, build included.
  std::string ToString() const;

  // Precedence comparisons. Note that 1.0.0+a == 1.0.0+b: equal precedence,
  // as SemVer defines it, so the ordering is weak.
  friend bool operator==(const SemVer& a, const SemVer& b) {
    return a.Compare(b) == 0;
  }
  friend std::weak_ordering operator<=>(const SemVer& a, const SemVer& b) {
    const int c = a.Compare(b);
    if (c < 0) return std::weak_ordering::less;
    if (c > 0) return std::weak_ordering::greater;
    return std::weak_ordering::equivalent;
  }

 private:
  uint64_t major_ = 0;
  uint64_t minor_ = 0;
  uint64_t patch_ = 0;
  std::vector<std::string> prerelease_;
  std::string build_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_SEMVER_H_
