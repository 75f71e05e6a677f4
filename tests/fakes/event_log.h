// JSON log lines on stderr, shaped like the real provider's logs (reference
// §3.4: `ts`, `level`, `message` plus fields) so a test or the demo can grep
// them the same way.
// Thread-safe: one write per line.
#ifndef KMSFLEET_TESTS_FAKES_EVENT_LOG_H_
#define KMSFLEET_TESTS_FAKES_EVENT_LOG_H_

#include <string_view>

#include <boost/json/object.hpp>

namespace kmsfleet::fake {

void LogEvent(std::string_view level, std::string_view message,
              boost::json::object fields = {});

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_EVENT_LOG_H_
