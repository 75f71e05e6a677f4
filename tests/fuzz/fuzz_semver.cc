// Fuzzes SemVer 2.0 parsing (semver.h): a parsed version prints in its
// canonical form and reads back as the same version, build included, and
// precedence is a weak order consistent with that round trip.
#include "fuzz_check.h"
#include "kmsfleet/core/semver.h"

using kmsfleet::SemVer;
using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  // Two versions from one input, split at the first newline, to compare.
  size_t cut = text.find('\n');
  std::string_view first = text.substr(0, cut);
  std::string_view second = cut == std::string_view::npos ? "" : text.substr(cut + 1);
  absl::StatusOr<SemVer> a = SemVer::Parse(first);
  absl::StatusOr<SemVer> b = SemVer::Parse(second);
  if (!a.ok()) CheckError(a.status());
  if (!b.ok()) CheckError(b.status());
  if (a.ok()) {
    Require(a->ToString() == first);  // the grammar has one spelling
    absl::StatusOr<SemVer> again = SemVer::Parse(a->ToString());
    Require(again.ok() && again->Compare(*a) == 0 && again->build() == a->build());
  }
  if (a.ok() && b.ok()) {
    auto sign = [](int c) { return (c > 0) - (c < 0); };
    Require(sign(a->Compare(*b)) == -sign(b->Compare(*a)));
  }
  return 0;
}
