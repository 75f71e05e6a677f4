#include "kmsfleet/core/checksums.h"

#include <cctype>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

absl::Status Malformed(std::string_view what, size_t line,
                       std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument,
                   reason::kMalformedChecksums,
                   std::string(what) + ":" + std::to_string(line) + ": " +
                       std::string(problem),
                   {{"file", std::string(what)}, {"line", std::to_string(line)}});
}

bool IsHexDigest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

bool IsSafeFileName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name == "." || name == "..") {
    return false;
  }
  if (name.front() == '-') return false;
  for (char c : name) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' ||
              c == '_' || c == '-' || c == '+';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<std::string> FindChecksum(std::string_view text,
                                         std::string_view file_name,
                                         std::string_view what) {
  if (text.size() > kMaxChecksumsBytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     std::string(what) + " is larger than 1 MiB",
                     {{"file", std::string(what)}});
  }
  std::vector<std::string> found;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    // GNU format: digest, one space, then ' ' (text) or '*' (binary) mode.
    if (line.size() < 67 || line[64] != ' ' ||
        (line[65] != ' ' && line[65] != '*')) {
      return Malformed(what, line_no,
                       "expected \"<sha256> <space or *><file name>\"");
    }
    if (!IsHexDigest(line.substr(0, 64))) {
      return Malformed(what, line_no, "the digest is not 64 hex digits");
    }
    if (line.substr(66) == file_name) found.push_back(Lower(line.substr(0, 64)));
  }
  if (found.size() != 1) {
    bool none = found.empty();
    return MakeError(
        absl::StatusCode::kFailedPrecondition,
        none ? reason::kChecksumNotListed : reason::kChecksumAmbiguous,
        std::string(what) + (none ? " has no line for " : " has several lines for ") +
            std::string(file_name),
        {{"file", std::string(what)}, {"artifact", std::string(file_name)}});
  }
  return found.front();
}

}  // namespace kmsfleet
