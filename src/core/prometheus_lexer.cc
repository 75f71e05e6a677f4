#include "prometheus_lexer.h"

#include <charconv>
#include <cstdint>
#include <limits>
#include <system_error>

#include "parse_util.h"

namespace kmsfleet::internal {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

bool IsMetricNameStart(char c) { return IsAlpha(c) || c == '_' || c == ':'; }
bool IsMetricNameChar(char c) { return IsMetricNameStart(c) || IsDigit(c); }
bool IsLabelNameStart(char c) { return IsAlpha(c) || c == '_'; }
bool IsLabelNameChar(char c) { return IsLabelNameStart(c) || IsDigit(c); }

// The shape of a decimal float literal, found while checking its grammar.
struct DecimalShape {
  size_t int_digits = 0;
  size_t frac_digits = 0;
  // Decimal exponent of the first non-zero mantissa digit, as a power of
  // ten, before the written exponent; nullopt if all digits are zero.
  std::optional<int64_t> leading_magnitude;
  int64_t exponent = 0;  // the written exponent, saturated at +-1e9
};

// Checks `body` (no sign) against Go's decimal grammar; fills `*shape`.
bool ScanDecimal(std::string_view body, DecimalShape* shape) {
  size_t i = 0;
  for (; i < body.size() && IsDigit(body[i]); ++i) {
    if (!shape->leading_magnitude && body[i] != '0') {
      shape->leading_magnitude = 0;  // fixed up once the length is known
    }
    ++shape->int_digits;
  }
  // For a non-zero integer part, the first non-zero digit's magnitude is
  // the count of digits from it to the point.
  if (shape->leading_magnitude) {
    size_t first = body.find_first_not_of('0');
    shape->leading_magnitude = static_cast<int64_t>(shape->int_digits - first);
  }
  if (i < body.size() && body[i] == '.') {
    for (++i; i < body.size() && IsDigit(body[i]); ++i) {
      ++shape->frac_digits;
      if (!shape->leading_magnitude && body[i] != '0') {
        shape->leading_magnitude = 1 - static_cast<int64_t>(shape->frac_digits);
      }
    }
  }
  if (shape->int_digits + shape->frac_digits == 0) return false;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    bool negative = false;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) {
      negative = body[i] == '-';
      ++i;
    }
    const size_t start = i;
    constexpr int64_t kSaturation = 1000000000;
    for (; i < body.size() && IsDigit(body[i]); ++i) {
      if (shape->exponent < kSaturation) {
        shape->exponent = shape->exponent * 10 + (body[i] - '0');
      }
    }
    if (i == start) return false;
    if (negative) shape->exponent = -shape->exponent;
  }
  return i == body.size();
}

}  // namespace

void LineCursor::SkipBlanks() {
  while (!AtEnd() && IsBlank(Peek())) ++pos_;
}

bool LineCursor::Consume(char c) {
  if (AtEnd() || Peek() != c) return false;
  ++pos_;
  return true;
}

std::string_view LineCursor::ReadMetricName() {
  const size_t start = pos_;
  if (AtEnd() || !IsMetricNameStart(Peek())) return {};
  while (!AtEnd() && IsMetricNameChar(Peek())) ++pos_;
  return line_.substr(start, pos_ - start);
}

std::string_view LineCursor::ReadLabelName() {
  const size_t start = pos_;
  if (AtEnd() || !IsLabelNameStart(Peek())) return {};
  while (!AtEnd() && IsLabelNameChar(Peek())) ++pos_;
  return line_.substr(start, pos_ - start);
}

std::string_view LineCursor::ReadToken() {
  const size_t start = pos_;
  while (!AtEnd() && !IsBlank(Peek())) ++pos_;
  return line_.substr(start, pos_ - start);
}

std::string_view LineCursor::ReadRest() {
  std::string_view rest = line_.substr(pos_);
  pos_ = line_.size();
  return rest;
}

std::optional<std::string> LineCursor::ReadQuotedLabelValue(
    std::string* value) {
  value->clear();
  while (!AtEnd()) {
    const char c = Peek();
    if (c == '"') {
      ++pos_;
      // Checked here rather than per byte: the value is only known to be
      // complete once the closing quote is seen.
      if (!IsValidUtf8(*value)) return "label value is not valid UTF-8";
      return std::nullopt;
    }
    if (c != '\\') {
      value->push_back(c);
      ++pos_;
      continue;
    }
    ++pos_;
    if (AtEnd()) break;
    switch (Peek()) {
      case '\\':
        value->push_back('\\');
        break;
      case '"':
        value->push_back('"');
        break;
      case 'n':
        value->push_back('\n');
        break;
      default:
        return "invalid escape sequence \\" +
               Excerpt(std::string_view(&line_[pos_], 1)) +
               " in label value (only \\\\, \\\" and \\n are allowed)";
    }
    ++pos_;
  }
  return "label value is missing its closing quote";
}

std::optional<double> ParseGoFloat(std::string_view token) {
  if (token.empty()) return std::nullopt;
  std::string_view body = token;
  bool negative = false;
  if (body.front() == '+' || body.front() == '-') {
    negative = body.front() == '-';
    body.remove_prefix(1);
  }
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const std::string lower = AsciiLower(body);
  if (lower == "inf" || lower == "infinity") return negative ? -kInf : kInf;
  // Go reads "NaN" only unsigned.
  if (lower == "nan" && body.size() == token.size()) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  DecimalShape shape;
  if (!ScanDecimal(body, &shape)) return std::nullopt;
  double value = 0;
  const char* end = body.data() + body.size();
  auto [ptr, ec] =
      std::from_chars(body.data(), end, value, std::chars_format::general);
  if (ec == std::errc::result_out_of_range) {
    // from_chars reports underflow and overflow alike; Go rounds the first
    // to zero and rejects only the second. Out of range means the magnitude
    // is far from 1, so its sign tells which one this is.
    const int64_t magnitude =
        shape.leading_magnitude.value_or(0) + shape.exponent;
    if (magnitude > 0) return std::nullopt;
    value = 0;
  } else if (ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

std::string UnescapeHelp(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      if (text[i + 1] == '\\') {
        out.push_back('\\');
        ++i;
        continue;
      }
      if (text[i + 1] == 'n') {
        out.push_back('\n');
        ++i;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace kmsfleet::internal
