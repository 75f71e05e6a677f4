#include "event_log.h"

#include <unistd.h>

#include <chrono>
#include <ctime>

#include <boost/json.hpp>

namespace kmsfleet::fake {
namespace {

std::string NowRfc3339() {
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(
                    now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[40];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%S", &utc);
  char out[48];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buffer, static_cast<int>(millis));
  return out;
}

}  // namespace

void LogEvent(std::string_view level, std::string_view message,
              boost::json::object fields) {
  boost::json::object line;
  line["ts"] = NowRfc3339();
  line["level"] = level;
  line["message"] = message;
  for (auto& [key, value] : fields) line[key] = std::move(value);
  std::string text = boost::json::serialize(line) + "\n";
  // One write(2) so lines from concurrent threads never interleave.
  [[maybe_unused]] ssize_t written = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace kmsfleet::fake
