// Building guard refusals (not a public header). Every refusal is a
// FailedPrecondition (stop until someone fixes the fleet) carrying a stable
// reason, a sentence naming the nodes and observed values, and what to do
// (architecture.md §2 principle 5).
// Thread-safe: free functions over values.
#ifndef KMSFLEET_SRC_CORE_GUARD_UTIL_H_
#define KMSFLEET_SRC_CORE_GUARD_UTIL_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"

namespace kmsfleet::internal {

// Returns FailedPrecondition with `reason`, the message "<sentence> <remedy>"
// and metadata {nodes: comma-separated `nodes`, remedy}.
absl::Status Refuse(std::string_view reason, std::string_view sentence,
                    std::string_view remedy,
                    const std::vector<std::string>& nodes);

// "a, b and c" for sentences; "" for none.
std::string NodeList(const std::vector<std::string>& nodes);

// Quoted(text) (escaped, in double quotes), or "(none)" when empty.
std::string ValueOrNone(std::string_view text);

// " The policy's notes: <entry>: <notes>; ..." (600 bytes of notes at
// most), to end a refusal the facts `notes` (CompatFacts.notes) come
// with, after its remedy; "" when there are none.
std::string NotesSentence(const google::protobuf::RepeatedPtrField<std::string>& notes);

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_CORE_GUARD_UTIL_H_
