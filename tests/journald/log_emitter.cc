// Writes a fixed set of kmsfleet log records through Log(), for
// journald_test.sh to find in a real journal.
//
//   log_emitter <auto|journal|stderr> <tag> [--stream]
//
// Records carry operation ids "<tag>-a" (two records: info and error) and
// "<tag>-b" (one warn). --stream connects stderr to journald's stream
// socket and sets $JOURNAL_STREAM to it, as systemd does for a service
// with StandardError=journal, so that `auto` can be checked to pick the
// journal on its own.
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "kmsfleet/node/log.h"

namespace {

bool ConnectStderrToJournal(const char* tag) {
  int fd = sd_journal_stream_fd(tag, 6, 0);
  if (fd < 0 || dup2(fd, STDERR_FILENO) < 0) return false;
  close(fd);
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  return setenv("JOURNAL_STREAM", stream.c_str(), 1) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  using kmsfleet::Log;
  using kmsfleet::LogLevel;
  if (argc < 3) {
    std::fprintf(stderr, "usage: log_emitter <auto|journal|stderr> <tag> [--stream]\n");
    return 2;
  }
  std::optional<kmsfleet::LogTarget> target = kmsfleet::ParseLogTarget(argv[1]);
  std::string tag = argv[2];
  if (!target) return 2;
  if (argc > 3 && std::string_view(argv[3]) == "--stream" &&
      !ConnectStderrToJournal("log_emitter")) {
    std::fprintf(stderr, "log_emitter: cannot connect stderr to the journal\n");
    return 1;
  }
  kmsfleet::SetLogTarget(*target);
  Log(LogLevel::kInfo, "swap started",
      {{"node", "cp-1"}, {"operation", tag + "-a"}, {"plan", "p-1"}, {"phase", "Staging"}});
  Log(LogLevel::kWarn, "other operation",
      {{"node", "cp-1"}, {"operation", tag + "-b"}});
  Log(LogLevel::kError, "swap failed",
      {{"node", "cp-1"}, {"operation", tag + "-a"}, {"reason", "UNIT_FAILED"},
       {"error", "first line\nsecond line"}});
  return 0;
}
