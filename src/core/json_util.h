// Bounded JSON parsing and typed field access for the core's parsers (not a
// public header). Boost.JSON is used only through its error_code overloads,
// so nothing here throws except std::bad_alloc.
// Thread-compatible: a JsonFields reads one object owned by the caller.
#ifndef KMSFLEET_SRC_CORE_JSON_UTIL_H_
#define KMSFLEET_SRC_CORE_JSON_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "boost/json.hpp"

namespace kmsfleet::internal {

// Nesting deeper than this is refused; the provider's documents nest at
// most three levels, and the bound keeps hostile input from costing stack.
inline constexpr size_t kMaxJsonDepth = 32;

// Parses `text` as a single JSON object, with nothing but whitespace after.
// `what` names the document in messages (e.g. "/ready body").
// Errors (kInvalidArgument): INPUT_TOO_LARGE when text.size() > max_bytes;
// `malformed_reason` for invalid JSON (naming the byte offset), nesting
// deeper than kMaxJsonDepth, or a top-level value that is not an object.
absl::StatusOr<boost::json::object> ParseJsonObject(
    std::string_view text, std::string_view what, size_t max_bytes,
    std::string_view malformed_reason);

// "null", "bool", "number", "string", "array", "object".
std::string_view JsonKindName(const boost::json::value& value);

// `value` serialized, as an Excerpt for messages.
std::string JsonExcerpt(const boost::json::value& value);

// Typed reads of one object's members. A member that is absent or null
// reads as absent; a member of another type is an error with `reason`
// (kInvalidArgument) naming `what`, the key, the expected type and the
// value. On error the output is left unchanged.
class JsonFields {
 public:
  JsonFields(const boost::json::object& object, std::string what,
             std::string_view reason)
      : object_(object), what_(std::move(what)), reason_(reason) {}

  // The member, or nullptr when absent or null.
  const boost::json::value* Find(std::string_view key) const;

  absl::Status String(std::string_view key, std::string* out) const;
  absl::Status OptionalString(std::string_view key,
                              std::optional<std::string>* out) const;
  absl::Status Bool(std::string_view key, bool* out) const;
  absl::Status OptionalBool(std::string_view key,
                            std::optional<bool>* out) const;
  // Integers only: 3.0 and 1e3 are refused, as the provider writes Go ints.
  absl::Status Int64(std::string_view key, std::optional<int64_t>* out) const;
  absl::Status Uint64(std::string_view key, std::optional<uint64_t>* out) const;
  // An array of strings; absent or null reads as empty.
  absl::Status StringArray(std::string_view key,
                           std::vector<std::string>* out) const;

  // An error for a member that is required but absent or null.
  absl::Status Missing(std::string_view key) const;
  // An error for member `key` holding `value`, which is not `expected`.
  absl::Status WrongType(std::string_view key, const boost::json::value& value,
                         std::string_view expected) const;

 private:
  const boost::json::object& object_;
  std::string what_;
  std::string_view reason_;
};

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_CORE_JSON_UTIL_H_
