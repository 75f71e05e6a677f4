#include "kmsfleet/core/semver.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

absl::Status Invalid(std::string_view text, std::string_view rule) {
  return MakeError(
      absl::StatusCode::kInvalidArgument, reason::kInvalidSemver,
      "invalid SemVer " + internal::Quoted(text) + ": " + std::string(rule),
      {{"text", internal::Excerpt(text)}});
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsAllDigits(std::string_view text) {
  for (char c : text) {
    if (!IsDigit(c)) return false;
  }
  return !text.empty();
}

bool IsIdentifierChar(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         c == '-';
}

std::vector<std::string_view> SplitDots(std::string_view text) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t dot = text.find('.');
    parts.push_back(text.substr(0, dot));
    if (dot == std::string_view::npos) return parts;
    text.remove_prefix(dot + 1);
  }
}

// Checks one pre-release (`numeric_rule` true) or build identifier; returns
// the broken rule, or "" if it is valid.
std::string CheckIdentifier(std::string_view id, std::string_view part,
                            bool numeric_rule) {
  if (id.empty()) return "empty identifier in the " + std::string(part);
  for (char c : id) {
    if (!IsIdentifierChar(c)) {
      return "identifier " + internal::Quoted(id) + " in the " +
             std::string(part) + " has a character outside [0-9A-Za-z-]";
    }
  }
  if (numeric_rule && IsAllDigits(id) && id.size() > 1 && id[0] == '0') {
    return "numeric identifier " + internal::Quoted(id) + " in the " +
           std::string(part) + " has a leading zero";
  }
  return "";
}

// Parses one of MAJOR, MINOR, PATCH; returns the broken rule in `*rule`.
std::optional<uint64_t> ParseCoreNumber(std::string_view digits,
                                        std::string_view name,
                                        std::string* rule) {
  if (!IsAllDigits(digits)) {
    *rule = std::string(name) + " " + internal::Quoted(digits) +
            " is not a non-empty decimal number";
    return std::nullopt;
  }
  if (digits.size() > 1 && digits[0] == '0') {
    *rule = std::string(name) + " " + internal::Quoted(digits) +
            " has a leading zero";
    return std::nullopt;
  }
  std::optional<uint64_t> value = internal::ParseUint64(digits);
  if (!value) *rule = std::string(name) + " overflows 64 bits";
  return value;
}

// Numeric identifiers have no leading zeros, so a longer one is larger and
// equal lengths compare like strings; no size limit is needed.
int CompareIdentifiers(const std::string& a, const std::string& b) {
  const bool a_numeric = IsAllDigits(a);
  const bool b_numeric = IsAllDigits(b);
  if (a_numeric != b_numeric) return a_numeric ? -1 : 1;
  if (a_numeric && a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

template <typename T>
int Three(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

}  // namespace

absl::StatusOr<SemVer> SemVer::Parse(std::string_view text) {
  if (text.size() > kMaxLength) {
    return Invalid(text,
                   "longer than " + std::to_string(kMaxLength) + " bytes");
  }
  if (text.empty()) return Invalid(text, "empty");
  if (text[0] == 'v' || text[0] == 'V') {
    return Invalid(text, "leading 'v' (write 1.2.3, not v1.2.3)");
  }
  SemVer version;
  std::string_view rest = text;
  if (const size_t plus = rest.find('+'); plus != std::string_view::npos) {
    for (std::string_view id : SplitDots(rest.substr(plus + 1))) {
      if (std::string rule = CheckIdentifier(id, "build metadata", false);
          !rule.empty()) {
        return Invalid(text, rule);
      }
    }
    version.build_ = std::string(rest.substr(plus + 1));
    rest = rest.substr(0, plus);
  }
  if (const size_t dash = rest.find('-'); dash != std::string_view::npos) {
    for (std::string_view id : SplitDots(rest.substr(dash + 1))) {
      if (std::string rule = CheckIdentifier(id, "pre-release", true);
          !rule.empty()) {
        return Invalid(text, rule);
      }
      version.prerelease_.emplace_back(id);
    }
    rest = rest.substr(0, dash);
  }
  const std::vector<std::string_view> core = SplitDots(rest);
  if (core.size() != 3) {
    return Invalid(text, "expected MAJOR.MINOR.PATCH, found " +
                             std::to_string(core.size()) + " part(s)");
  }
  std::string rule;
  const std::optional<uint64_t> major =
      ParseCoreNumber(core[0], "major", &rule);
  if (!major) return Invalid(text, rule);
  const std::optional<uint64_t> minor =
      ParseCoreNumber(core[1], "minor", &rule);
  if (!minor) return Invalid(text, rule);
  const std::optional<uint64_t> patch =
      ParseCoreNumber(core[2], "patch", &rule);
  if (!patch) return Invalid(text, rule);
  version.major_ = *major;
  version.minor_ = *minor;
  version.patch_ = *patch;
  return version;
}

int SemVer::Compare(const SemVer& other) const {
  if (int c = Three(major_, other.major_); c != 0) return c;
  if (int c = Three(minor_, other.minor_); c != 0) return c;
  if (int c = Three(patch_, other.patch_); c != 0) return c;
  // A release outranks its pre-releases (SemVer §11.3).
  if (!is_prerelease() || !other.is_prerelease()) {
    return Three(other.is_prerelease(), is_prerelease());
  }
  const size_t common = std::min(prerelease_.size(), other.prerelease_.size());
  for (size_t i = 0; i < common; ++i) {
    if (int c = CompareIdentifiers(prerelease_[i], other.prerelease_[i]);
        c != 0) {
      return c;
    }
  }
  return Three(prerelease_.size(), other.prerelease_.size());
}

std::string SemVer::ToString() const {
  std::string out = std::to_string(major_) + "." + std::to_string(minor_) +
                    "." + std::to_string(patch_);
  for (size_t i = 0; i < prerelease_.size(); ++i) {
    out += (i == 0 ? "-" : ".") + prerelease_[i];
  }
  if (!build_.empty()) out += "+" + build_;
  return out;
}

}  // namespace kmsfleet
