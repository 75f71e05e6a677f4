// Which release the fake pretends to be (reference §2.2), and SemVer
// ordering so behaviour can depend on it (build_info appears in preview.3).
//
// Precedence: --fake-version flag > FAKE_BAO_KMS_VERSION env > a stamp
// appended to the executable file > kDefaultFakeVersion. The stamp lets a
// test make distinct "release artifacts" with `cp` plus one append:
//   printf '\nFAKE_BAO_KMS_VERSION=0.1.0-preview.2\n' >> copy
// ELF loaders ignore trailing bytes, so the copy still runs.
// Thread-safe: free functions.
#ifndef KMSFLEET_TESTS_FAKES_VERSION_INFO_H_
#define KMSFLEET_TESTS_FAKES_VERSION_INFO_H_

#include <optional>
#include <string>
#include <string_view>

namespace kmsfleet::fake {

inline constexpr char kDefaultFakeVersion[] = "0.1.0-preview.3";
inline constexpr char kVersionEnv[] = "FAKE_BAO_KMS_VERSION";
inline constexpr char kStampKey[] = "FAKE_BAO_KMS_VERSION=";

struct VersionInfo {
  std::string version;
  std::string commit;      // 40 lower-case hex digits derived from version
  std::string build_date;  // RFC 3339 UTC
  bool dirty = false;
};

// Returns the stamped version in the last 256 bytes of the file at `path`
// (a trailer line "\nFAKE_BAO_KMS_VERSION=<v>\n"), or nullopt when absent
// or unreadable.
std::optional<std::string> ReadVersionStamp(const std::string& path);

// Applies the precedence above. `flag_value` is --fake-version if given.
VersionInfo ResolveVersion(const std::optional<std::string>& flag_value);

// Builds the commit/buildDate that go with `version`; deterministic so the
// same artifact always prints the same thing.
VersionInfo DescribeVersion(const std::string& version);

// SemVer 2.0 precedence: returns <0, 0 or >0. Unparseable versions sort
// after every parseable one, so a hand-made "dev" string gets new features.
int CompareSemVer(std::string_view a, std::string_view b);

// Whether `version` is one of the released previews (0.1.0-preview.1 to
// .3) or older, which predate the live Transit metadata check of
// rotation-plan (reference §2.6). Everything else, an unparseable version
// too, is newer. Apart from CompareSemVer so that the CLI-only executable,
// which cannot link kmsfleet's SemVer (version_order.cc), can ask it.
bool PredatesTransitMetadataCheck(std::string_view version);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_VERSION_INFO_H_
