#include "kmsfleet/core/status.h"

#include <optional>

#include "absl/strings/cord.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

std::optional<v1::ErrorInfo> InfoOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorInfoTypeUrl);
  if (!payload) return std::nullopt;
  v1::ErrorInfo info;
  if (!info.ParseFromString(std::string(*payload))) return std::nullopt;
  return info;
}

}  // namespace

absl::Status MakeError(absl::StatusCode code, std::string_view reason,
                       std::string_view message, Metadata metadata) {
  absl::Status status(code, absl::string_view(message.data(), message.size()));
  v1::ErrorInfo info;
  info.set_reason(std::string(reason));
  info.set_domain(kErrorDomain);
  for (const auto& [key, value] : metadata) {
    (*info.mutable_metadata())[std::string(key)] = value;
  }
  status.SetPayload(kErrorInfoTypeUrl, absl::Cord(info.SerializeAsString()));
  return status;
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

}  // namespace kmsfleet
