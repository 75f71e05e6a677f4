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
  return absl::StrCat(" The policy's notes: ", absl::StrJoin(notes, "; "), ".");
}

}  // namespace kmsfleet::internal
