// Content-keyed answers of provider commands (command_memo.h).
#include "kmsfleet/node/command_memo.h"

#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

struct FilesKey {
  std::string key;  // the command and every file's identity
  bool settled;     // every file last changed kSettledMs or more ago (IdentityOfFiles)
};

// The key of `files` for `command` at `now_unix_ms`, or nullopt when one
// cannot be stat'ed.
std::optional<FilesKey> KeyOfFiles(std::string_view command,
                                   const std::vector<std::string>& files,
                                   int64_t now_unix_ms) {
  FilesIdentity identity = IdentityOfFiles(files, CommandMemo::kSettledMs, now_unix_ms);
  if (!identity.every_file_present) return std::nullopt;
  return FilesKey{std::string(command) + identity.key, identity.settled};
}

// The clock the kernel stamps files from (CLOCK_REALTIME_COARSE): the
// precise one runs up to a tick ahead of it, which would count a file
// changed within that tick as settled.
class FileStampClock final : public Clock {
 public:
  int64_t NowUnixMillis() const override { return CoarseRealTimeMillis(); }
};

const Clock& RealTime() {
  static const FileStampClock clock;
  return clock;
}

}  // namespace

CommandMemo::CommandMemo() : CommandMemo(RealTime()) {}

absl::StatusOr<std::string> CommandMemo::Answer(
    std::string_view command, const std::vector<std::string>& files,
    const std::function<absl::StatusOr<std::string>()>& run) {
  const std::optional<FilesKey> before = KeyOfFiles(command, files, wall_.NowUnixMillis());
  if (before) {
    if (std::optional<std::string> kept = Find(before->key)) return *kept;
  }
  absl::StatusOr<std::string> answer = run();
  if (!answer.ok() || !before || !before->settled) return answer;
  // Kept only if no file changed while the command read it.
  std::optional<FilesKey> after = KeyOfFiles(command, files, wall_.NowUnixMillis());
  if (after && after->key == before->key) Keep(before->key, *answer);
  return answer;
}

size_t CommandMemo::reused() const {
  std::lock_guard lock(mu_);
  return reused_;
}

std::optional<std::string> CommandMemo::Find(const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = answers_.find(key);
  if (it == answers_.end()) return std::nullopt;
  ++reused_;
  return it->second;
}

void CommandMemo::Keep(const std::string& key, const std::string& answer) {
  std::lock_guard lock(mu_);
  if (!answers_.insert_or_assign(key, answer).second) return;  // known key
  order_.push_back(key);
  if (order_.size() > kMaxAnswers) {
    answers_.erase(order_.front());
    order_.pop_front();
  }
}

}  // namespace kmsfleet
