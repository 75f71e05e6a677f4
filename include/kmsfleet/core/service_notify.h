// What kmsfleetd tells its service manager under Type=notify
// (docs/systemd.md): the STATUS= line, and whether a WATCHDOG=1 ping is
// deserved. Pure: times are inputs, in milliseconds of a monotonic clock.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_SERVICE_NOTIFY_H_
#define KMSFLEET_CORE_SERVICE_NOTIFY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

// One of the agent's loops the watchdog vouches for, and when it last
// showed progress (0: never yet).
struct LoopProgress {
  std::string_view name;  // e.g. "agent_api", "election"
  int64_t last_progress_ms = 0;
};

struct WatchdogDecision {
  bool ping = false;
  // Why not, naming each loop behind and by how much; "" when ping.
  std::string why;
};

// A ping is deserved only when every loop in `loops` progressed within
// half the watchdog interval before `now_ms`: systemd kills the service
// after a whole interval without a ping, so a loop stuck for half of one
// gets the agent restarted before it is stuck for two. An interval of 0
// (watchdog off) never pings.
WatchdogDecision DecideWatchdogPing(int64_t now_ms, int64_t watchdog_interval_ms,
                                    std::span<const LoopProgress> loops);

// The STATUS= text for an agent in `mode` ("cluster member", "standalone",
// "refusing") whose election view is `election` (nullopt without a
// cluster: section; `election_answered` false when the election did not
// answer the last probe). Examples:
//   "coordinator term 4; plan p-1 Rolling 2/3"
//   "follower of cp-1 term 4; no plan"
//   "candidate term 5, no coordinator; plan p-1 Halted 1/3"
//   "standalone; no cluster"
// Plan ids are cut to 64 bytes.
std::string ServiceStatusText(std::string_view mode, const std::optional<v1::LeaderView>& election,
                              bool election_answered = true);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_SERVICE_NOTIFY_H_
