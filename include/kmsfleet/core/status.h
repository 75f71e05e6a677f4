// Errors with a stable reason (style.md, "What this means for kmsfleet" 4-6).
//
// Every error kmsfleet returns is an absl::Status whose code says what the
// caller should do next and whose payload is a kmsfleet.v1.ErrorInfo holding
// a stable reason from reasons.h and the observed values. Build them with
// MakeError(); read the reason back with ReasonOf().
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_STATUS_H_
#define KMSFLEET_CORE_STATUS_H_

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace kmsfleet {

// The type URL under which the ErrorInfo payload is stored.
inline constexpr char kErrorInfoTypeUrl[] =
    "type.googleapis.com/kmsfleet.v1.ErrorInfo";
inline constexpr char kErrorDomain[] = "kmsfleet.io";

using Metadata = std::initializer_list<std::pair<std::string_view, std::string>>;

// Returns a non-OK status with `code`, `message` and an ErrorInfo payload
// carrying `reason` and `metadata`.
// REQUIRES: code != absl::StatusCode::kOk.
absl::Status MakeError(absl::StatusCode code, std::string_view reason,
                       std::string_view message, Metadata metadata = {});

// An error at a line of a file an operator wrote (a config, a policy):
// InvalidArgument with `reason`, the message "<file>:<line>: <key>: <problem>"
// and metadata file, line and key.
absl::Status MakeFileError(std::string_view reason, std::string_view file, int line,
                           std::string_view key, std::string_view problem);

// Returns the reason of `status`'s ErrorInfo payload, or "" if it has none
// (including for an OK status).
std::string ReasonOf(const absl::Status& status);

// Returns the metadata value under `key`, or "" if absent.
std::string MetadataOf(const absl::Status& status, std::string_view key);

// `status` with every `from` in its message replaced by `to`, its code and
// payloads kept: an error about a private copy, told as about the file or
// URL the operator gave.
absl::Status WithNameInMessage(const absl::Status& status, std::string_view from,
                               std::string_view to);

// `status` with `prefix` before its message, its code and payloads kept:
// an error told as about the file or call it arose in.
absl::Status WithMessagePrefix(const absl::Status& status, std::string_view prefix);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_STATUS_H_
