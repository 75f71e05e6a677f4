#include "cli/terminal_text.h"

#include <cstdint>
#include <cstdio>

namespace kmsfleet {
namespace {

void AppendHex(std::string& out, uint8_t byte) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "\\x%02X", byte);
  out += buf;
}

}  // namespace

std::string ForTerminal(std::string_view text, bool keep_newlines) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<uint8_t>(text[i]);
    if (byte == '\n') {
      out += keep_newlines ? "\n" : "\\n";
    } else if (byte == '\t') {
      out += ' ';
    } else if (byte < 0x20 || byte == 0x7F) {
      AppendHex(out, byte);
    } else if (byte == 0xC2 && i + 1 < text.size() &&
               static_cast<uint8_t>(text[i + 1]) >= 0x80 &&
               static_cast<uint8_t>(text[i + 1]) <= 0x9F) {
      AppendHex(out, static_cast<uint8_t>(text[++i]));  // C1 as UTF-8
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace kmsfleet
