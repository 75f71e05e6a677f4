#include "json_util.h"

#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "parse_util.h"

namespace kmsfleet::internal {
namespace {

namespace json = boost::json;

json::string_view ToJson(std::string_view text) {
  return json::string_view(text.data(), text.size());
}

}  // namespace

absl::StatusOr<json::object> ParseJsonObject(
    std::string_view text, std::string_view what, size_t max_bytes,
    std::string_view malformed_reason) {
  const std::string name(what);
  if (text.size() > max_bytes) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInputTooLarge,
                     name + " is " + std::to_string(text.size()) +
                         " bytes, more than the limit of " +
                         std::to_string(max_bytes),
                     {{"size_bytes", std::to_string(text.size())},
                      {"limit_bytes", std::to_string(max_bytes)}});
  }
  json::parse_options options;
  options.max_depth = kMaxJsonDepth;
  json::parser parser(json::storage_ptr(), options);
  json::error_code ec;
  const size_t consumed = parser.write(text.data(), text.size(), ec);
  if (ec) {
    return MakeError(absl::StatusCode::kInvalidArgument, malformed_reason,
                     name + " is not valid JSON near byte " +
                         std::to_string(consumed) + " (" + ec.message() +
                         "): " + Quoted(text),
                     {{"offset", std::to_string(consumed)}});
  }
  json::value value = parser.release();
  if (!value.is_object()) {
    return MakeError(absl::StatusCode::kInvalidArgument, malformed_reason,
                     name + " is a JSON " + std::string(JsonKindName(value)) +
                         ", expected an object: " + Quoted(text));
  }
  return std::move(value.as_object());
}

std::string_view JsonKindName(const json::value& value) {
  switch (value.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "bool";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "number";
    case json::kind::string:
      return "string";
    case json::kind::array:
      return "array";
    case json::kind::object:
      return "object";
  }
  return "value";
}

std::string JsonExcerpt(const json::value& value) {
  return Excerpt(json::serialize(value));
}

const json::value* JsonFields::Find(std::string_view key) const {
  const json::value* value = object_.if_contains(ToJson(key));
  if (value == nullptr || value->is_null()) return nullptr;
  return value;
}

absl::Status JsonFields::Missing(std::string_view key) const {
  return MakeError(absl::StatusCode::kInvalidArgument, reason_,
                   what_ + " has no \"" + std::string(key) + "\" key",
                   {{"key", std::string(key)}});
}

absl::Status JsonFields::WrongType(std::string_view key,
                                   const json::value& value,
                                   std::string_view expected) const {
  const std::string shown = JsonExcerpt(value);
  return MakeError(absl::StatusCode::kInvalidArgument, reason_,
                   what_ + " key \"" + std::string(key) + "\" is " + shown +
                       " (a " + std::string(JsonKindName(value)) +
                       "), expected " + std::string(expected),
                   {{"key", std::string(key)}, {"value", shown}});
}

absl::Status JsonFields::String(std::string_view key, std::string* out) const {
  std::optional<std::string> value;
  if (absl::Status status = OptionalString(key, &value); !status.ok()) {
    return status;
  }
  if (value) *out = std::move(*value);
  return absl::OkStatus();
}

absl::Status JsonFields::OptionalString(std::string_view key,
                                        std::optional<std::string>* out) const {
  const json::value* value = Find(key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) return WrongType(key, *value, "a string");
  const json::string& text = value->get_string();
  *out = std::string(text.data(), text.size());
  return absl::OkStatus();
}

absl::Status JsonFields::Bool(std::string_view key, bool* out) const {
  std::optional<bool> value;
  if (absl::Status status = OptionalBool(key, &value); !status.ok()) {
    return status;
  }
  if (value) *out = *value;
  return absl::OkStatus();
}

absl::Status JsonFields::OptionalBool(std::string_view key,
                                      std::optional<bool>* out) const {
  const json::value* value = Find(key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_bool()) return WrongType(key, *value, "true or false");
  *out = value->get_bool();
  return absl::OkStatus();
}

absl::Status JsonFields::Int64(std::string_view key,
                               std::optional<int64_t>* out) const {
  const json::value* value = Find(key);
  if (value == nullptr) return absl::OkStatus();
  if (value->is_int64()) {
    *out = value->get_int64();
    return absl::OkStatus();
  }
  // Boost.JSON stores integers above INT64_MAX as uint64: out of range.
  return WrongType(key, *value, "an integer in the int64 range");
}

absl::Status JsonFields::Uint64(std::string_view key,
                                std::optional<uint64_t>* out) const {
  const json::value* value = Find(key);
  if (value == nullptr) return absl::OkStatus();
  if (value->is_uint64()) {
    *out = value->get_uint64();
    return absl::OkStatus();
  }
  if (value->is_int64() && value->get_int64() >= 0) {
    *out = static_cast<uint64_t>(value->get_int64());
    return absl::OkStatus();
  }
  return WrongType(key, *value, "a non-negative integer");
}

absl::Status JsonFields::StringArray(std::string_view key,
                                     std::vector<std::string>* out) const {
  const json::value* value = Find(key);
  if (value == nullptr) {
    out->clear();
    return absl::OkStatus();
  }
  if (!value->is_array()) return WrongType(key, *value, "an array of strings");
  std::vector<std::string> items;
  for (const json::value& item : value->get_array()) {
    if (!item.is_string()) {
      return WrongType(key, *value, "an array of strings");
    }
    items.emplace_back(item.get_string().data(), item.get_string().size());
  }
  *out = std::move(items);
  return absl::OkStatus();
}

}  // namespace kmsfleet::internal
