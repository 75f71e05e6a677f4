// Fuzzes the checksums.txt lookup (checksums.h): the first line of the
// input is the asset name, the rest the file. A found digest is 64
// lower-case hex digits, and is found again in a file of that one line.
#include "fuzz_check.h"
#include "kmsfleet/core/checksums.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  size_t cut = text.find('\n');
  if (cut == std::string_view::npos) return 0;
  std::string_view name = text.substr(0, cut);
  std::string_view file = text.substr(cut + 1);
  absl::StatusOr<std::string> digest = kmsfleet::FindChecksum(file, name, "checksums.txt");
  if (!digest.ok()) {
    CheckError(digest.status());
    return 0;
  }
  Require(digest->size() == 64);
  for (char c : *digest) Require((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  std::string line = *digest + "  " + std::string(name) + "\n";
  absl::StatusOr<std::string> again = kmsfleet::FindChecksum(line, name, "line");
  Require(again.ok() && *again == *digest);
  return 0;
}
