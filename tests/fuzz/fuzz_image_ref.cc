// Fuzzes image reference parsing (image_ref.h). What parses is pinned by a
// sha256 digest and prints back to the same text, which parses to the same
// value; what does not carries a reason and a safe message.
#include "fuzz_check.h"
#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/reasons.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<kmsfleet::ImageRef> ref = kmsfleet::ParseImageRef(text, "fuzz");
  if (!ref.ok()) {
    CheckError(ref.status());
    std::string reason = kmsfleet::ReasonOf(ref.status());
    Require(reason == kmsfleet::reason::kImageRefNotPinned ||
            reason == kmsfleet::reason::kImageRefMalformed);
    return 0;
  }
  Require(kmsfleet::IsSha256Digest(ref->digest));
  Require(ref->ToString() == text);
  absl::StatusOr<kmsfleet::ImageRef> again = kmsfleet::ParseImageRef(ref->Pinned(), "again");
  Require(again.ok() && again->repository == ref->repository &&
          again->digest == ref->digest && again->tag.empty());
  return 0;
}
