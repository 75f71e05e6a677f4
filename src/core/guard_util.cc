#include "guard_util.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kmsfleet/core/status.h"
#include "parse_util.h"

namespace kmsfleet::internal {

absl::Status Refuse(std::string_view reason, std::string_view sentence,
                    std::string_view remedy,
                    const std::vector<std::string>& nodes) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason,
                   absl::StrCat(std::string(sentence), " ", std::string(remedy)),
                   {{"nodes", absl::StrJoin(nodes, ",")},
                    {"remedy", std::string(remedy)}});
}

std::string NodeList(const std::vector<std::string>& nodes) {
  if (nodes.empty()) return "";
  if (nodes.size() == 1) return nodes[0];
  std::vector<std::string> head(nodes.begin(), nodes.end() - 1);
  return absl::StrCat(absl::StrJoin(head, ", "), " and ", nodes.back());
}

std::string ValueOrNone(std::string_view text) {
  if (text.empty()) return "(none)";
  return Quoted(text);
}

std::string NotesSentence(const google::protobuf::RepeatedPtrField<std::string>& notes) {
  if (notes.empty()) return "";
  // Last in a message, and short: the plan keeps 1,024 bytes of a text.
  constexpr size_t kMaxNotesBytes = 600;
  std::string joined = absl::StrJoin(notes, "; ");
  if (joined.size() > kMaxNotesBytes) {
    joined = joined.substr(0, Utf8CutLength(joined, kMaxNotesBytes)) +
             "... (the rest in the policy)";
  }
  return absl::StrCat(" The policy's notes: ", joined, ".");
}

}  // namespace kmsfleet::internal
