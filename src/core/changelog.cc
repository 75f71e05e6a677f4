// CHANGELOG.md reader (changelog.h).
#include "kmsfleet/core/changelog.h"

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

using internal::AsciiLower;
using internal::Excerpt;
using internal::TrimBlanks;

// The version text of a `## ` heading: "[0.2.0](url) (date)" -> "0.2.0".
std::string_view HeadingVersion(std::string_view heading) {
  heading = TrimBlanks(heading);
  if (!heading.empty() && heading.front() == '[') {
    heading.remove_prefix(1);
    return heading.substr(0, heading.find(']'));
  }
  return heading.substr(0, heading.find_first_of(" \t("));
}

absl::Status Malformed(std::string_view what, int line, std::string_view value,
                       std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument,
                   reason::kMalformedChangelog,
                   absl::StrCat(std::string(what), ":", line, ": release heading ",
                                internal::Quoted(value), " ",
                                std::string(problem)),
                   {{"file", std::string(what)},
                    {"line", std::to_string(line)},
                    {"value", Excerpt(value)}});
}

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Whether `text` holds `first`, blanks, then `last`, with at most
// `max_between` words (runs of non-blanks, each followed by blanks) in
// between: "fresh disposable installation". Linear in `text`.
bool HasWords(std::string_view text, std::string_view first, std::string_view last,
              int max_between) {
  for (size_t at = text.find(first); at != std::string_view::npos;
       at = text.find(first, at + 1)) {
    // A word of its own: "refresh" holds no "fresh".
    if (at > 0 && absl::ascii_isalnum(static_cast<unsigned char>(text[at - 1]))) continue;
    size_t i = at + first.size();
    for (int words = 0; words <= max_between; ++words) {
      const size_t blanks = i;
      while (i < text.size() && IsBlank(text[i])) ++i;
      if (i == blanks) break;  // the word went on: "freshly"
      if (text.substr(i).starts_with(last)) return true;
      while (i < text.size() && !IsBlank(text[i])) ++i;
    }
  }
  return false;
}

// Whether `line` starts a new block of notes (a list item, a heading, a
// quote) rather than continuing the paragraph above it.
bool StartsBlock(std::string_view line) {
  const std::string_view t = TrimBlanks(line);
  if (t.empty()) return true;
  if (t.size() >= 2 && std::string_view("-*+#>").find(t[0]) != std::string_view::npos &&
      (t[1] == ' ' || t[0] == '#')) {
    return true;
  }
  size_t digits = 0;
  while (digits < t.size() && absl::ascii_isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
  return digits > 0 && digits + 1 < t.size() && (t[digits] == '.' || t[digits] == ')') &&
         t[digits + 1] == ' ';
}

// The acknowledgement codes one line of notes raises. Phrases are looked
// for in the line joined to the one before it in the same release, so
// that one a paragraph's wrap split is still found (on its second line).
std::vector<const char*> CodesOf(std::string_view line, std::string_view previous) {
  std::vector<const char*> codes;
  const std::string lower = AsciiLower(line);
  const std::string_view t = TrimBlanks(lower);
  const std::string previous_lower = AsciiLower(previous);
  const std::string joined = std::string(TrimBlanks(previous_lower)) + " " + std::string(t);
  auto has = [&](std::string_view phrase) {
    return joined.find(phrase) != std::string::npos;
  };
  const bool section = t.starts_with("### ");
  if (section && t.find("breaking change") != std::string_view::npos) {
    codes.push_back(reason::kAckChangelogBreaking);
  }
  if (section && t.find("compatibility") != std::string_view::npos) {
    codes.push_back(reason::kAckChangelogCompatibility);
  }
  if (has("one-way")) codes.push_back(reason::kAckOneWayUpgrade);
  if (HasWords(joined, "fresh", "installation", 1)) {
    codes.push_back(reason::kAckFreshInstallation);
  }
  if (HasWords(joined, "wire", "format", 0) || has("wire-format")) {
    codes.push_back(reason::kAckWireFormatChange);
  }
  return codes;
}

void FlagLine(ChangelogRelease& release, std::string_view line, std::string_view previous,
              int number) {
  for (const char* code : CodesOf(line, previous)) {
    auto same = [&](const ChangelogFlag& f) { return f.code == code; };
    if (std::any_of(release.flags.begin(), release.flags.end(), same)) continue;
    release.flags.push_back(
        {release.version, code, number, Excerpt(TrimBlanks(line), 160)});
  }
}

}  // namespace

absl::StatusOr<Changelog> ParseChangelog(std::string_view text,
                                         std::string_view what) {
  if (text.size() > kMaxChangelogBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument,
                     reason::kInputTooLarge,
                     absl::StrCat(std::string(what), " is ", text.size(),
                                  " bytes, more than the limit of ",
                                  kMaxChangelogBytes),
                     {{"file", std::string(what)},
                      {"size_bytes", std::to_string(text.size())}});
  }
  Changelog changelog;
  std::set<std::string> seen;
  int number = 0;
  std::string_view previous;  // the line before, in the same release
  for (std::string_view line : internal::SplitLines(text)) {
    ++number;
    if (line.starts_with("## ")) {
      previous = {};
      const std::string_view value = HeadingVersion(line.substr(3));
      ChangelogRelease release{"", number, {}};
      if (internal::AsciiLower(value) != "unreleased") {
        absl::StatusOr<SemVer> v = SemVer::Parse(value);
        if (!v.ok()) return Malformed(what, number, value, "is not SemVer");
        release.version = v->ToString();
      }
      if (!seen.insert(release.version).second) {
        return Malformed(what, number, value, "appears twice");
      }
      changelog.releases.push_back(std::move(release));
    } else if (!changelog.releases.empty()) {
      FlagLine(changelog.releases.back(), line,
               StartsBlock(line) ? std::string_view() : previous, number);
      previous = line;
    }
  }
  return changelog;
}

absl::Status CheckChangelogNamesTarget(const Changelog& changelog, const SemVer& target,
                                       std::string_view what) {
  for (const ChangelogRelease& r : changelog.releases) {
    if (r.version.empty()) continue;
    absl::StatusOr<SemVer> v = SemVer::Parse(r.version);
    if (v.ok() && *v == target) return absl::OkStatus();
  }
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedChangelog,
                   absl::StrCat(std::string(what), " has no release heading for the target ",
                                target.ToString(),
                                ", so it cannot tell what the releases up to it changed; "
                                "pass the CHANGELOG.md of the ",
                                target.ToString(), " release"),
                   {{"file", std::string(what)}, {"target", target.ToString()}});
}

std::vector<ChangelogFlag> FlagsCrossed(const Changelog& changelog,
                                        const SemVer& from, const SemVer& to) {
  const SemVer& lo = from < to ? from : to;
  const SemVer& hi = from < to ? to : from;
  std::vector<std::pair<SemVer, const ChangelogRelease*>> crossed;
  for (const ChangelogRelease& r : changelog.releases) {
    if (r.version.empty()) continue;
    absl::StatusOr<SemVer> v = SemVer::Parse(r.version);
    if (v.ok() && lo < *v && *v <= hi) crossed.emplace_back(*v, &r);
  }
  std::sort(crossed.begin(), crossed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ChangelogFlag> flags;
  for (const auto& [version, release] : crossed) {
    flags.insert(flags.end(), release->flags.begin(), release->flags.end());
  }
  return flags;
}

}  // namespace kmsfleet
