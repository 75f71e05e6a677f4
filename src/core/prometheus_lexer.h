// Token readers for one line of the Prometheus text format (not a public
// header; prometheus_text.cc drives them line by line).
// Thread-compatible: a LineCursor is used by one parse at a time.
#ifndef KMSFLEET_SRC_CORE_PROMETHEUS_LEXER_H_
#define KMSFLEET_SRC_CORE_PROMETHEUS_LEXER_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kmsfleet::internal {

// A read position in one line, which excludes its line ending.
class LineCursor {
 public:
  explicit LineCursor(std::string_view line) : line_(line) {}

  bool AtEnd() const { return pos_ >= line_.size(); }
  // REQUIRES: !AtEnd().
  char Peek() const { return line_[pos_]; }
  // 1-based column of the next byte, for messages.
  size_t column() const { return pos_ + 1; }

  // Skips spaces and tabs, the only blanks the format allows.
  void SkipBlanks();
  // Consumes `c` if it is next; returns whether it did.
  bool Consume(char c);
  // Reads [a-zA-Z_:][a-zA-Z0-9_:]*; "" (consuming nothing) if the next byte
  // cannot start a metric name.
  std::string_view ReadMetricName();
  // Reads [a-zA-Z_][a-zA-Z0-9_]*; "" if the next byte cannot start one.
  std::string_view ReadLabelName();
  // Reads up to the next blank or the end of the line.
  std::string_view ReadToken();
  // Returns the rest of the line and moves to its end.
  std::string_view ReadRest();

  // Reads a label value whose opening quote has been consumed, through its
  // closing quote, into `*value` with the escapes \\ \" \n decoded. Returns
  // nullopt on success, else what is wrong (and leaves the cursor at the
  // offending byte).
  std::optional<std::string> ReadQuotedLabelValue(std::string* value);

 private:
  std::string_view line_;
  size_t pos_ = 0;
};

// Parses a sample value as Go's strconv.ParseFloat(s, 64) does for decimal
// text: [+-]digits[.digits][(e|E)[+-]digits] with digits on at least one
// side of the point, "NaN", and [+-]"Inf"/"Infinity", case-insensitively.
// Magnitudes too large for a double are an error, too small ones round to
// zero, as in Go. Hexadecimal floats and '_' separators are not accepted.
std::optional<double> ParseGoFloat(std::string_view token);

// Decodes a HELP docstring: \\ becomes \ and \n a newline; any other
// backslash is kept as written, as the Prometheus parser does.
std::string UnescapeHelp(std::string_view text);

// Escapes \ " and newline in a label value for display.
std::string EscapeLabelValue(std::string_view value);

}  // namespace kmsfleet::internal

#endif  // KMSFLEET_SRC_CORE_PROMETHEUS_LEXER_H_
