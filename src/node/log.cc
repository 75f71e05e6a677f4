#include "kmsfleet/node/log.h"

#include <errno.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdlib>
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

// syslog(3) priorities, which journald stores as PRIORITY.
char Priority(LogLevel level) {
  switch (level) {
    case LogLevel::kInfo:
      return '6';  // LOG_INFO
    case LogLevel::kWarn:
      return '4';  // LOG_WARNING
    case LogLevel::kError:
      return '3';  // LOG_ERR
  }
  return '6';
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

void WriteStderr(LogLevel level, std::string_view message, LogFields fields) {
  std::string line = "ts=" + Timestamp() + " level=" +
                     std::string(LevelName(level)) + " msg=" + Quote(message);
  for (const auto& [key, value] : fields) {
    line += " " + std::string(key) + "=" + Quote(value);
  }
  line += "\n";
  // A failed log write has nowhere better to be reported.
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

// True if journald took the record.
bool SendJournal(LogLevel level, std::string_view message, LogFields fields) {
  const char* identifier = program_invocation_short_name;
  std::vector<std::string> entry =
      JournalEntry(level, message, fields, identifier != nullptr ? identifier : "kmsfleet");
  std::vector<iovec> iov;
  iov.reserve(entry.size());
  for (std::string& item : entry) iov.push_back({item.data(), item.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
}

bool StderrIsJournalNow() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return StderrIsJournal(stream, st.st_dev, st.st_ino);
}

LogTarget Resolve(LogTarget target) {
  if (target != LogTarget::kAuto) return target;
  return StderrIsJournalNow() ? LogTarget::kJournal : LogTarget::kStderr;
}

// kAuto until the first record or SetLogTarget resolves it.
std::atomic<LogTarget> g_target{LogTarget::kAuto};

}  // namespace

std::string Bounded(std::string_view value, size_t limit) {
  if (value.size() <= limit) return std::string(value);
  size_t cut = limit - 3;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  return std::string(value.substr(0, cut)) + "...";
}

std::optional<LogTarget> ParseLogTarget(std::string_view name) {
  if (name == "auto") return LogTarget::kAuto;
  if (name == "journal") return LogTarget::kJournal;
  if (name == "stderr") return LogTarget::kStderr;
  return std::nullopt;
}

void SetLogTarget(LogTarget target) { g_target.store(Resolve(target)); }

bool StderrIsJournal(std::string_view journal_stream, uint64_t device, uint64_t inode) {
  size_t colon = journal_stream.find(':');
  if (colon == std::string_view::npos) return false;
  auto parse = [](std::string_view s, uint64_t& out) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && end == s.data() + s.size();
  };
  uint64_t dev = 0;
  uint64_t ino = 0;
  return parse(journal_stream.substr(0, colon), dev) &&
         parse(journal_stream.substr(colon + 1), ino) && dev == device && ino == inode;
}

std::string JournalFieldName(std::string_view key) {
  if (key.empty()) return "";
  std::string name = "KMSFLEET_";
  for (char c : key) {
    if (name.size() == kMaxJournalFieldName) break;
    if (c >= 'a' && c <= 'z') {
      name += static_cast<char>(c - 'a' + 'A');
    } else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
      name += c;
    } else {
      name += '_';
    }
  }
  return name;
}

std::vector<std::string> JournalEntry(LogLevel level, std::string_view message,
                                      LogFieldSpan fields, std::string_view identifier) {
  std::vector<std::string> entry;
  entry.push_back("MESSAGE=" + Bounded(message, kMaxJournalMessage));
  entry.push_back(std::string("PRIORITY=") + Priority(level));
  entry.push_back("SYSLOG_IDENTIFIER=" + Bounded(identifier, kMaxJournalValue));
  for (const auto& [key, value] : fields) {
    if (entry.size() == 3 + kMaxJournalFields) break;
    std::string name = JournalFieldName(key);
    // An empty value says nothing a query could match on.
    if (name.empty() || value.empty()) continue;
    entry.push_back(name + "=" + Bounded(value, kMaxJournalValue));
  }
  return entry;
}

void Log(LogLevel level, std::string_view message, LogFields fields) {
  LogTarget target = g_target.load();
  if (target == LogTarget::kAuto) {
    target = Resolve(LogTarget::kAuto);
    g_target.store(target);
  }
  if (target == LogTarget::kJournal && SendJournal(level, message, fields)) return;
  WriteStderr(level, message, fields);
}

}  // namespace kmsfleet
