#include "kmsfleet/core/status.h"

#include <optional>

#include "absl/strings/cord.h"
#include "kmsfleet/v1/error.pb.h"
#include "parse_util.h"

namespace kmsfleet {
namespace {

std::optional<v1::ErrorInfo> InfoOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload) return std::nullopt;
  v1::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info;
}

// Messages and metadata quote what came from outside, in any bytes. They
// travel in protobuf strings (UTF-8 only: an invalid one would drop the
// whole ErrorInfo, reason included), logs and terminals, so they are made
// valid UTF-8 without control characters, and a message is bounded.
constexpr size_t kMaxMessageBytes = 4000;

std::string SafeText(std::string_view text) {
  std::string safe = internal::ValidUtf8Text(text);
  if (safe.size() <= kMaxMessageBytes) return safe;
  const size_t cut = internal::Utf8CutLength(safe, kMaxMessageBytes);
  return safe.substr(0, cut) + " ... (" + std::to_string(safe.size() - cut) +
         " more bytes)";
}

}  // namespace

absl::Status MakeError(absl::StatusCode code, std::string_view reason,
                       std::string_view message, Metadata metadata) {
  absl::Status status(code, SafeText(message));
  v1::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) {
    (*info.mutable_metadata())[SafeText(key)] = SafeText(value);
  }
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
}

absl::Status MakeFileError(std::string_view reason, std::string_view file, int line,
                           std::string_view key, std::string_view problem) {
  const std::string at = std::string(file) + ":" + std::to_string(line);
  return MakeError(absl::StatusCode::kInvalidArgument, reason,
                   at + ": " + std::string(key) + ": " + std::string(problem),
                   {{"file", std::string(file)},
                    {"line", std::to_string(line)},
                    {"key", std::string(key)}});
}

std::string ReasonOf(const absl::Status& status) {
  std::optional<v1::ErrorInfo> info = InfoOf(status);
  return info ? info->reason() : std::string();
}

std::string MetadataOf(const absl::Status& status, std::string_view key) {
  std::optional<v1::ErrorInfo> info = InfoOf(status);
  if (!info) return {};
  auto it = info->metadata().find(std::string(key));
  return it == info->metadata().end() ? std::string() : it->second;
}

absl::Status WithNameInMessage(const absl::Status& status, std::string_view from,
                               std::string_view to) {
  if (status.ok() || from.empty()) return status;
  std::string message(status.message());
  for (size_t at = message.find(from); at != std::string::npos;
       at = message.find(from, at + to.size())) {
    message.replace(at, from.size(), to);
  }
  absl::Status out(status.code(), message);
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

absl::Status WithMessagePrefix(const absl::Status& status, std::string_view prefix) {
  if (status.ok()) return status;
  absl::Status out(status.code(), std::string(prefix) + std::string(status.message()));
  status.ForEachPayload(
      [&](absl::string_view url, const absl::Cord& payload) { out.SetPayload(url, payload); });
  return out;
}

}  // namespace kmsfleet
