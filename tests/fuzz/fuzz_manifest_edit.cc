// Fuzzes the static-pod manifest editor (manifest_edit.h): an image it
// observes can be replaced or the refusal says why; a replacement changes
// one span of bytes and reads back as the new image; replacing back
// restores the input byte for byte; the defence-in-depth check never fires.
#include <cctype>
#include <string>

#include "fuzz_check.h"
#include "kmsfleet/core/manifest_edit.h"
#include "kmsfleet/core/reasons.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

namespace {

constexpr char kNew[] =
    "r.example/p@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

bool IsSafeImage(const std::string& image) {
  if (image.empty() || image.size() > 512 || !std::isalnum(static_cast<unsigned char>(image[0]))) {
    return false;
  }
  for (char c : image) {
    if (!std::isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("._/:@-").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<std::string> old = kmsfleet::ObserveManifestImage(text, "m.yaml");
  absl::StatusOr<std::string> edited = kmsfleet::ReplaceManifestImage(text, kNew, "m.yaml");
  if (!old.ok()) {
    CheckError(old.status());
    Require(kmsfleet::MetadataOf(old.status(), "file") == "m.yaml");
    Require(!edited.ok() && kmsfleet::ReasonOf(edited.status()) == kmsfleet::ReasonOf(old.status()));
    return 0;
  }
  if (!edited.ok()) {
    CheckError(edited.status());
    Require(kmsfleet::ReasonOf(edited.status()) == kmsfleet::reason::kManifestImageUneditable ||
            kmsfleet::ReasonOf(edited.status()) == kmsfleet::reason::kManifestMalformed);
    return 0;
  }
  absl::StatusOr<std::string> now = kmsfleet::ObserveManifestImage(*edited, "m.yaml");
  Require(now.ok() && *now == kNew);
  // One span changed: a common prefix and suffix cover all but the images.
  size_t prefix = 0;
  while (prefix < text.size() && prefix < edited->size() && text[prefix] == (*edited)[prefix]) {
    ++prefix;
  }
  size_t suffix = 0;
  while (suffix < text.size() - prefix && suffix < edited->size() - prefix &&
         text[text.size() - 1 - suffix] == (*edited)[edited->size() - 1 - suffix]) {
    ++suffix;
  }
  Require(text.size() - prefix - suffix <= old->size());
  Require(edited->size() - prefix - suffix <= sizeof(kNew) - 1);
  if (IsSafeImage(*old)) {
    absl::StatusOr<std::string> back = kmsfleet::ReplaceManifestImage(*edited, *old, "m.yaml");
    Require(back.ok() && *back == text);
  }
  return 0;
}
