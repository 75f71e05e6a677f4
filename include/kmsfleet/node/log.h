// One-line structured log records on stderr ("ts=... level=... msg=...
// key=value"), which journald and container runtimes capture as they are.
// Thread-safe: each record is written with a single write(2).
#ifndef KMSFLEET_NODE_LOG_H_
#define KMSFLEET_NODE_LOG_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace kmsfleet {

enum class LogLevel { kInfo, kWarn, kError };

using LogFields = std::initializer_list<std::pair<std::string_view, std::string>>;

void Log(LogLevel level, std::string_view message, LogFields fields = {});

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_LOG_H_
