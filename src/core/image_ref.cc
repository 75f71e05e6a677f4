#include "kmsfleet/core/image_ref.h"

#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr std::string_view kSha256Prefix = "sha256:";
// Docker Hub, its legacy alias and the prefix of its official images, as
// distribution/reference normalises them.
constexpr std::string_view kDockerHub = "docker.io";
constexpr std::string_view kLegacyDockerHub = "index.docker.io";
constexpr std::string_view kOfficialPrefix = "library/";
constexpr size_t kMaxNameBytes = 255;
constexpr size_t kMaxTagBytes = 128;
constexpr size_t kShownBytes = 96;  // of a bad value, in messages

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// The value as a message shows it: escaped, and cut if long, so that no
// input can forge log lines or flood them.
std::string Shown(std::string_view text) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  std::string shown;
  for (char c : text.substr(0, kShownBytes)) {
    auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\' && c != '"') {
      shown += c;
    } else {
      shown += "\\x";
      shown += kHexDigits[byte >> 4];
      shown += kHexDigits[byte & 0xf];
    }
  }
  if (text.size() > kShownBytes) shown += "...";
  return shown;
}

// `text` cut at every `sep`, empty pieces included.
std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t pos = text.find(sep); pos != std::string_view::npos;
       pos = text.find(sep, start)) {
    parts.push_back(text.substr(start, pos - start));
    start = pos + 1;
  }
  parts.push_back(text.substr(start));
  return parts;
}

absl::Status RefError(std::string_view reason, std::string_view what,
                      std::string_view text, std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason,
                   std::string(what) + ": image reference \"" + Shown(text) +
                       "\" " + std::string(problem),
                   {{"what", std::string(what)}, {"image", Shown(text)}});
}

// lower-case alphanumerics joined by one '.', one '_', "__" or any dashes.
bool IsPathComponent(std::string_view part) {
  if (part.empty() || !IsLowerAlnum(part.front()) || !IsLowerAlnum(part.back())) {
    return false;
  }
  size_t i = 0;
  while (i < part.size()) {
    if (IsLowerAlnum(part[i])) {
      ++i;
      continue;
    }
    size_t run = i;
    while (run < part.size() && !IsLowerAlnum(part[run])) ++run;
    std::string_view sep = part.substr(i, run - i);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
    i = run;
  }
  return true;
}

// host labels ([A-Za-z0-9], inner dashes) joined by '.', then ":<port>".
bool IsDomain(std::string_view domain) {
  size_t colon = domain.find(':');
  if (colon != std::string_view::npos) {
    std::string_view port = domain.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos) {
      return false;
    }
    domain = domain.substr(0, colon);
  }
  for (std::string_view label : Split(domain, '.')) {
    if (label.empty() || !IsAlnum(label.front()) || !IsAlnum(label.back())) return false;
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') return false;
    }
  }
  return true;
}

// As the container tools read a name: the first of several components is a
// registry when it has a '.' or a ':' or is "localhost".
bool NamesRegistry(std::string_view first) {
  return first.find_first_of(".:") != std::string_view::npos || first == "localhost";
}

bool IsRepository(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  std::vector<std::string_view> parts = Split(name, '/');
  size_t first_path = 0;
  if (parts.size() > 1 && NamesRegistry(parts[0])) {
    if (!IsDomain(parts[0])) return false;
    first_path = 1;
  }
  for (size_t i = first_path; i < parts.size(); ++i) {
    if (!IsPathComponent(parts[i])) return false;
  }
  return true;
}

bool IsTag(std::string_view tag) {
  if (tag.empty() || tag.size() > kMaxTagBytes) return false;
  auto word = [](char c) { return IsAlnum(c) || c == '_'; };
  if (!word(tag.front())) return false;
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

}  // namespace

std::string ImageRef::ToString() const {
  return repository + (tag.empty() ? "" : ":" + tag) + "@" + digest;
}

std::string ImageRef::Pinned() const { return repository + "@" + digest; }

std::string ImageRef::NormalizedRepository() const {
  const std::string_view name = repository;
  const size_t slash = name.find('/');
  std::string_view domain = kDockerHub;
  std::string_view path = name;
  if (slash != std::string_view::npos && NamesRegistry(name.substr(0, slash))) {
    domain = name.substr(0, slash);
    path = name.substr(slash + 1);
  }
  if (domain != kDockerHub && domain != kLegacyDockerHub) return repository;
  const bool official = path.find('/') == std::string_view::npos;
  return std::string(kDockerHub) + "/" + (official ? std::string(kOfficialPrefix) : "") +
         std::string(path);
}

std::string ImageRef::NormalizedPinned() const {
  return NormalizedRepository() + "@" + digest;
}

bool IsSha256Digest(std::string_view digest) {
  if (digest.size() != kSha256Prefix.size() + 64 ||
      digest.substr(0, kSha256Prefix.size()) != kSha256Prefix) {
    return false;
  }
  for (char c : digest.substr(kSha256Prefix.size())) {
    if (!IsLowerHex(c)) return false;
  }
  return true;
}

absl::StatusOr<ImageRef> ParseImageRef(std::string_view text, std::string_view what) {
  if (text.empty()) {
    return RefError(reason::kImageRefMalformed, what, text, "is empty");
  }
  if (text.size() > kMaxImageRefBytes) {
    return RefError(reason::kImageRefMalformed, what, text,
                    "is longer than " + std::to_string(kMaxImageRefBytes) + " bytes");
  }
  size_t at = text.find('@');
  std::string_view name_and_tag = text.substr(0, at);
  ImageRef ref;
  // A tag's ':' comes after the last '/'; a registry port's comes before.
  size_t slash = name_and_tag.rfind('/');
  size_t colon = name_and_tag.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    ref.repository = std::string(name_and_tag.substr(0, colon));
    ref.tag = std::string(name_and_tag.substr(colon + 1));
    if (!IsTag(ref.tag)) {
      return RefError(reason::kImageRefMalformed, what, text, "has a malformed tag");
    }
  } else {
    ref.repository = std::string(name_and_tag);
  }
  if (!IsRepository(ref.repository)) {
    return RefError(reason::kImageRefMalformed, what, text,
                    "has a malformed repository name (lower-case path components, "
                    "optionally after a registry host)");
  }
  if (at == std::string_view::npos) {
    return RefError(reason::kImageRefNotPinned, what, text,
                    "is not pinned by digest: use <repository>@sha256:<64 hex digits>, "
                    "since a tag can move to other bytes");
  }
  std::string_view digest = text.substr(at + 1);
  if (!IsSha256Digest(digest)) {
    return RefError(reason::kImageRefMalformed, what, text,
                    "has a digest that is not sha256:<64 lower-case hex digits>");
  }
  ref.digest = std::string(digest);
  return ref;
}

}  // namespace kmsfleet
