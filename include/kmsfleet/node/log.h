// Structured log records. Each record is a level, a message and key=value
// fields; it goes to one of two sinks:
//  - stderr, as one line "ts=... level=... msg=... key=value";
//  - the systemd journal (native protocol, sd_journal_sendv), with MESSAGE,
//    PRIORITY, SYSLOG_IDENTIFIER and each field as KMSFLEET_<KEY>, so that
//    `journalctl KMSFLEET_OPERATION=<id>` finds one operation's records.
// The sink is chosen once per process (SetLogTarget, else on the first
// record as for LogTarget::kAuto). A record the journal refuses is written
// to stderr instead: none is lost.
//
// Keys with a meaning across the fleet (docs/logs.md): `node`, `plan`,
// `phase`, `operation`, `reason`; call sites use exactly these names.
//
// Thread-safe: each record is one write(2) or one sendmsg(2).
#ifndef KMSFLEET_NODE_LOG_H_
#define KMSFLEET_NODE_LOG_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kmsfleet {

enum class LogLevel { kInfo, kWarn, kError };

using LogFields = std::initializer_list<std::pair<std::string_view, std::string>>;

void Log(LogLevel level, std::string_view message, LogFields fields = {});

// Where records go. kAuto: the journal when stderr is connected to it
// (StderrIsJournal over $JOURNAL_STREAM), else stderr.
enum class LogTarget { kAuto, kJournal, kStderr };

// "auto", "journal" or "stderr"; nullopt for anything else.
std::optional<LogTarget> ParseLogTarget(std::string_view name);

// Fixes the sink for the rest of the process, resolving kAuto now. Call it
// early (kmsfleetd does, after reading log.target); records logged before
// use kAuto.
void SetLogTarget(LogTarget target);

// True when $JOURNAL_STREAM (`journal_stream`, "<device>:<inode>" in
// decimal, as systemd sets it for a service whose output goes to the
// journal) names the file `device`/`inode` that fd 2 is. systemd documents
// this check so that a process whose stderr was redirected elsewhere, but
// which inherited the variable, keeps writing to stderr.
bool StderrIsJournal(std::string_view journal_stream, uint64_t device, uint64_t inode);

// Bounds on what one record sends to the journal. journald refuses field
// names over 64 bytes; values are cut so one runaway field (an error text
// with a whole response in it) cannot make a record huge.
inline constexpr size_t kMaxJournalFieldName = 64;
inline constexpr size_t kMaxJournalValue = 4096;
inline constexpr size_t kMaxJournalMessage = 16384;
inline constexpr size_t kMaxJournalFields = 32;

// `value` cut to at most `limit` (at least 3) bytes, on a UTF-8 character
// boundary, ending in "..." when cut: for a field a caller can make long.
std::string Bounded(std::string_view value, size_t limit);

// The journal name of the log key `key`: "KMSFLEET_" and the key upper-
// cased, every byte outside [A-Z0-9_] replaced by '_', cut to
// kMaxJournalFieldName. "" for an empty key (the field is dropped).
std::string JournalFieldName(std::string_view key);

// The journal entry of one record, as the "NAME=value" strings
// sd_journal_sendv sends: MESSAGE, PRIORITY (info 6, warn 4, error 3),
// SYSLOG_IDENTIFIER=`identifier`, then KMSFLEET_<KEY> for each field with a
// value, in order (at most kMaxJournalFields). Values longer than their bound are cut
// and end in "...". Pure.
using LogFieldSpan = std::span<const std::pair<std::string_view, std::string>>;
std::vector<std::string> JournalEntry(LogLevel level, std::string_view message,
                                      LogFieldSpan fields, std::string_view identifier);
inline std::vector<std::string> JournalEntry(LogLevel level, std::string_view message,
                                             LogFields fields, std::string_view identifier) {
  return JournalEntry(level, message, LogFieldSpan(fields.begin(), fields.size()), identifier);
}

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_LOG_H_
