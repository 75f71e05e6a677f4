#include "version_info.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <map>
#include <cstdio>
#include <tuple>

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

bool PredatesTransitMetadataCheck(std::string_view version) {
  int major = 0, minor = 0, patch = 0, consumed = 0;
  const std::string v(version.substr(0, version.find('+')));  // build metadata has no say
  if (std::sscanf(v.c_str(), "%d.%d.%d%n", &major, &minor, &patch, &consumed) != 3) return false;
  const std::tuple<int, int, int> core{major, minor, patch};
  if (core != std::tuple<int, int, int>{0, 1, 0}) return core < std::tuple<int, int, int>{0, 1, 0};
  int preview = 0, rest = 0;
  const std::string pre = v.substr(static_cast<size_t>(consumed));
  if (std::sscanf(pre.c_str(), "-preview.%d%n", &preview, &rest) != 1) return false;
  return static_cast<size_t>(rest) == pre.size() && preview <= 3;
}

}  // namespace kmsfleet::fake
