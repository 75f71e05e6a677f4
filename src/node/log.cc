#include "kmsfleet/node/log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

namespace kmsfleet {
namespace {

std::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "info";
}

// Quotes a value when it holds spaces, quotes or is empty, so that each
// record stays one parseable line.
std::string Quote(std::string_view value) {
  bool plain = !value.empty() &&
               value.find_first_of(" \"=\n\t\\") == std::string_view::npos;
  if (plain) return std::string(value);
  std::string out = "\"";
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                    now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(millis));
  return buf;
}

}  // namespace

void Log(LogLevel level, std::string_view message, LogFields fields) {
  std::string line = "ts=" + Timestamp() + " level=" +
                     std::string(LevelName(level)) + " msg=" + Quote(message);
  for (const auto& [key, value] : fields) {
    line += " " + std::string(key) + "=" + Quote(value);
  }
  line += "\n";
  // A failed log write has nowhere better to be reported.
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace kmsfleet
