#include "version_info.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <map>
#include <vector>

namespace kmsfleet::fake {
namespace {

std::string HexSha256(std::string_view input) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_Digest(input.data(), input.size(), digest.data(), &length, EVP_sha256(),
             nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

struct SemVer {
  std::array<unsigned long, 3> core{};
  std::vector<std::string> pre;  // dot-separated prerelease identifiers
};

bool ParseNumber(std::string_view text, unsigned long& out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

std::vector<std::string> Split(std::string_view text, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t end = text.find(sep, start);
    parts.emplace_back(text.substr(start, end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

std::optional<SemVer> ParseSemVer(std::string_view text) {
  if (!text.empty() && text.front() == 'v') text.remove_prefix(1);
  text = text.substr(0, text.find('+'));  // build metadata never orders
  SemVer out;
  std::string_view core = text.substr(0, text.find('-'));
  if (core.size() < text.size()) {
    out.pre = Split(text.substr(core.size() + 1), '.');
  }
  std::vector<std::string> numbers = Split(core, '.');
  if (numbers.size() != 3) return std::nullopt;
  for (size_t i = 0; i < 3; ++i) {
    if (!ParseNumber(numbers[i], out.core[i])) return std::nullopt;
  }
  return out;
}

int CompareIdentifier(const std::string& a, const std::string& b) {
  unsigned long na = 0, nb = 0;
  bool a_num = ParseNumber(a, na), b_num = ParseNumber(b, nb);
  if (a_num && b_num) return na < nb ? -1 : (na > nb ? 1 : 0);
  if (a_num != b_num) return a_num ? -1 : 1;  // numeric sorts first
  return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
}

}  // namespace

std::optional<std::string> ReadVersionStamp(const std::string& path) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return std::nullopt;
  const std::streamoff size = file.tellg();
  const std::streamoff window = std::min<std::streamoff>(size, 256);
  std::string tail(static_cast<size_t>(window), '\0');
  file.seekg(size - window);
  if (!file.read(tail.data(), window)) return std::nullopt;
  const std::string marker = std::string("\n") + kStampKey;
  size_t at = tail.rfind(marker);
  if (at == std::string::npos) return std::nullopt;
  size_t begin = at + marker.size();
  size_t end = tail.find('\n', begin);
  if (end == std::string::npos || end == begin) return std::nullopt;
  return tail.substr(begin, end - begin);
}

VersionInfo DescribeVersion(const std::string& version) {
  // Release dates from the upstream CHANGELOG (reference §0); anything else
  // gets a fixed later date so output stays deterministic.
  static const std::map<std::string, std::string> kKnownDates = {
      {"0.1.0-preview.1", "2026-05-14T09:00:00Z"},
      {"0.1.0-preview.2", "2026-09-21T09:00:00Z"},
      {"0.1.0-preview.3", "2026-10-01T09:00:00Z"}};
  VersionInfo info;
  info.version = version;
  info.commit = HexSha256("fake-bao-kms-provider/commit/" + version).substr(0, 40);
  auto known = kKnownDates.find(version);
  info.build_date =
      known != kKnownDates.end() ? known->second : "2026-11-01T09:00:00Z";
  info.dirty = false;
  return info;
}

VersionInfo ResolveVersion(const std::optional<std::string>& flag_value) {
  if (flag_value && !flag_value->empty()) return DescribeVersion(*flag_value);
  if (const char* env = std::getenv(kVersionEnv); env && *env) {
    return DescribeVersion(env);
  }
  if (auto stamp = ReadVersionStamp("/proc/self/exe")) {
    return DescribeVersion(*stamp);
  }
  return DescribeVersion(kDefaultFakeVersion);
}

int CompareSemVer(std::string_view a, std::string_view b) {
  std::optional<SemVer> va = ParseSemVer(a), vb = ParseSemVer(b);
  if (!va || !vb) {
    if (!va && !vb) return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
    return va ? -1 : 1;
  }
  if (va->core != vb->core) return va->core < vb->core ? -1 : 1;
  // A release sorts after its prereleases.
  if (va->pre.empty() || vb->pre.empty()) {
    return va->pre.size() == vb->pre.size() ? 0 : (va->pre.empty() ? 1 : -1);
  }
  for (size_t i = 0; i < std::min(va->pre.size(), vb->pre.size()); ++i) {
    if (int c = CompareIdentifier(va->pre[i], vb->pre[i]); c != 0) return c;
  }
  if (va->pre.size() == vb->pre.size()) return 0;
  return va->pre.size() < vb->pre.size() ? -1 : 1;
}

}  // namespace kmsfleet::fake
