// Answers of provider commands that depend only on the bytes of the files
// they read: `version` (the build facts compiled into the binary) and
// `config` (the identity fingerprint the binary derives from the config
// file; reference §2.2, §2.8). A swap asks them again of the very files its
// plan's preflight asked minutes before, and each is a process start on
// the way to the provider's stop: 10-20 ms on a loaded two-core node.
//
// An answer is kept under the identity of every file the command read
// (device, inode, size, modification and status-change times to the
// nanosecond), taken before the run and again after it: it is kept only
// when the two agree, and reused only while they still do. No byte of a
// file can change without its status-change time changing, and a file
// replaced by rename is another inode, so a reused answer is the answer
// the same bytes gave. One exception is closed as git closes it for its
// index: the kernel stamps files from a clock that moves in ticks (1-10
// ms), so a file rewritten in place within the tick of its last change
// could keep its times; an answer is therefore kept only when every file
// last changed at least kSettledMs before the run, on that clock, plus the
// file system's stamp granularity where its stamps show one (a second for
// whole-second stamps): IdentityOfFiles' settled rule. Commands whose answer
// depends on anything else (doctor, rotation-plan: OpenBao, Transit, the
// registry) are never kept here; the executor keeps a passing pair of them
// for one swap, for at most kChecksFreshForMs (Executor::CheckAndKeep).
//
// Thread-safe.
#ifndef KMSFLEET_NODE_COMMAND_MEMO_H_
#define KMSFLEET_NODE_COMMAND_MEMO_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/clock.h"

namespace kmsfleet {

class CommandMemo {
 public:
  // On the coarse real-time clock, which file times are stamped from.
  CommandMemo();
  // On `wall` (a test's clock), which must outlive the memo.
  explicit CommandMemo(const Clock& wall) : wall_(wall) {}

  // Answers kept at most; the oldest goes first. A plan needs a handful.
  static constexpr size_t kMaxAnswers = 64;
  // How long before a run, on the clock files are stamped from, a file
  // must have last changed for its answer to be kept (plus the file
  // system's stamp granularity, IdentityOfFiles). Once that clock reads
  // past a stamp, any later change is stamped later; the margin beyond
  // that millisecond is for a write whose bytes land after its stamp (the
  // kernel stamps a write before it copies the bytes), which goes unseen
  // only if the writer stalls in between for longer than this.
  static constexpr int64_t kSettledMs = 10;

  // `command`'s answer for `files` as they are now: kept, or from `run`,
  // which is kept when it succeeds and no file changed while it ran. An
  // error from `run` is returned and not kept; a file that cannot be
  // stat'ed means `run` runs and nothing is kept.
  absl::StatusOr<std::string> Answer(std::string_view command,
                                     const std::vector<std::string>& files,
                                     const std::function<absl::StatusOr<std::string>()>& run);

  // How many answers were reused (for tests).
  size_t reused() const;

 private:
  std::optional<std::string> Find(const std::string& key);
  void Keep(const std::string& key, const std::string& answer);

  const Clock& wall_;
  mutable std::mutex mu_;
  std::map<std::string, std::string> answers_;
  std::deque<std::string> order_;  // keys, oldest first
  size_t reused_ = 0;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_COMMAND_MEMO_H_
