// Fuzzes the swap journal and the key-registry facts (swap_machine.h),
// both read back from disk after a crash. A journal that parses,
// serialised and parsed again, serialises to the same bytes.
#include "fuzz_check.h"
#include "kmsfleet/core/swap_machine.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<kmsfleet::SwapJournal> journal = kmsfleet::ParseJournal(text, "journal");
  if (journal.ok()) {
    std::string once = kmsfleet::SerializeJournal(*journal);
    absl::StatusOr<kmsfleet::SwapJournal> again = kmsfleet::ParseJournal(once, "again");
    Require(again.ok());
    Require(kmsfleet::SerializeJournal(*again) == once);
  } else {
    CheckError(journal.status());
  }
  absl::StatusOr<kmsfleet::RegistryFacts> facts =
      kmsfleet::ParseRegistryFacts(text, "key-registry.json");
  if (facts.ok()) {
    Require(facts->removed_records >= 0);
  } else {
    CheckError(facts.status());
  }
  return 0;
}
