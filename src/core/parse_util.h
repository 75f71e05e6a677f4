// Small text helpers shared by the core's parsers (not a public header).
// Everything they put into an error message goes through Excerpt(), because
// messages and metadata travel in protobuf string fields, which must be
// UTF-8, and end up in logs, which must not carry control characters.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_SRC_CORE_PARSE_UTIL_H_
#define KMSFLEET_SRC_CORE_PARSE_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kmsfleet::internal {

// Returns `text` with every byte outside printable ASCII written as \xNN
// (and backslash as \\), cut after `max_bytes` input bytes with "..."
// appended. The result is always printable ASCII.
std::string Excerpt(std::string_view text, size_t max_bytes = 80);

// Returns `text` as valid UTF-8 without control characters: well-formed
// multi-byte sequences, tab and newline are kept; every other control
// byte, DEL and every byte of an ill-formed sequence is written as \xNN.
// What a provider or a file says ends up in protobuf strings (which must be
// UTF-8), logs and terminals; this makes any bytes safe for all three.
std::string ValidUtf8Text(std::string_view text);

// The largest length, at most `max_bytes`, at which `text` can be cut
// without splitting a UTF-8 sequence (text.size() when it fits).
size_t Utf8CutLength(std::string_view text, size_t max_bytes);

// Returns Excerpt(text) in double quotes.
std::string Quoted(std::string_view text, size_t max_bytes = 80);

// Returns `text` without leading and trailing spaces and tabs.
std::string_view TrimBlanks(std::string_view text);

// Splits `text` into lines at '\n', dropping one '\r' before each '\n' (and
// at the very end). A trailing newline does not start another line, so
// "a\nb\n" and "a\r\nb" are both {"a", "b"}; "" is {}.
std::vector<std::string_view> SplitLines(std::string_view text);

struct NumberedLine {
  size_t number;  // 1-based
  std::string_view text;
};

// SplitLines(text) without the lines that are empty or only blanks, each
// with its 1-based line number.
std::vector<NumberedLine> NonBlankLines(std::string_view text);

// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates,
// nothing above U+10FFFF), as Go's utf8.ValidString decides.
bool IsValidUtf8(std::string_view text);

// Parses a base-10 integer, optionally signed with '-' (and with '+' when
// `allow_plus`), with no spaces. nullopt on any other text or on overflow.
std::optional<int64_t> ParseInt64(std::string_view text, bool allow_plus);

// Parses unsigned base-10 digits with no sign and no spaces. nullopt on any
// other text or on overflow.
std::optional<uint64_t> ParseUint64(std::string_view text);

// True if `text` is a key_id hash as the provider writes it (reference
// §3.2): exactly 43 characters of the base64url alphabet [A-Za-z0-9_-].
bool IsKeyIdHash(std::string_view text);

// Returns `value` as the exposition format writes it: the shortest decimal
// that reads back exactly, or NaN, +Inf, -Inf.
std::string FormatDouble(double value);

// Returns `text` in ASCII lower case.
std::string AsciiLower(std::string_view text);

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_CORE_PARSE_UTIL_H_
