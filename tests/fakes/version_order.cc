// CompareSemVer apart from the rest of version_info.cc: kmsfleet's SemVer
// reports errors through kmsfleet::MakeError, whose payload is a protobuf
// message. Only `serve` (build_info in /metrics) orders versions, so keeping
// it in its own object file keeps protobuf out of the CLI-only executable,
// which links this library statically (README.md, "Build targets").
#include "version_info.h"

#include "kmsfleet/core/semver.h"

namespace kmsfleet::fake {

int CompareSemVer(std::string_view a, std::string_view b) {
  absl::StatusOr<SemVer> va = SemVer::Parse(a), vb = SemVer::Parse(b);
  if (!va.ok() || !vb.ok()) {
    if (!va.ok() && !vb.ok()) return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
    return va.ok() ? -1 : 1;
  }
  return va->Compare(*vb);
}

}  // namespace kmsfleet::fake
