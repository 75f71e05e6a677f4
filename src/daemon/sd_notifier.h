// kmsfleetd's side of systemd's Type=notify protocol (docs/systemd.md):
// READY=1 once the agent serves, STATUS= kept current with the election
// role and the committed plan, WATCHDOG=1 while the agent's loops answer,
// STOPPING=1 on the way out. Outside systemd ($NOTIFY_SOCKET unset) every
// message is a no-op, but the probes still run and their findings are
// logged.
//
// The watchdog thread does not ping on a timer alone: every round it
// connects to the agent's own socket afresh and calls Agent.GetOperation
// with no id (refused at once by a gRPC server thread: the listener accepts
// and the server's threads answer) and, for a cluster member,
// Fleet.GetLeader (through the election node's lock, which its
// tick loop takes every tick). DecideWatchdogPing then pings only if each
// answered within half the watchdog interval; otherwise it logs why and
// lets systemd's timer run out.
//
// Thread-compatible: Ready and Stopping from one thread.
#ifndef KMSFLEET_DAEMON_SD_NOTIFIER_H_
#define KMSFLEET_DAEMON_SD_NOTIFIER_H_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <functional>
#include <string>
#include <vector>
#include <thread>

#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

struct ServiceNotifierOptions {
  std::string node;
  std::string mode;          // AgentMode(): "cluster member", "standalone", ...
  std::string agent_target;  // gRPC target of the agent itself, "unix:/run/..."
  bool cluster = false;      // probe Fleet.GetLeader too
  // How often STATUS= is refreshed when the watchdog is off; with it on,
  // rounds are a quarter of the watchdog interval when that is shorter.
  std::chrono::milliseconds status_period{1000};
  // Loops that count their rounds (the election's tick loop, the plan
  // loop): each must have counted on since the previous probe round.
  struct Counter {
    std::string name;
    std::function<uint64_t()> read;
  };
  std::vector<Counter> counters{};
};

class ServiceNotifier {
 public:
  explicit ServiceNotifier(ServiceNotifierOptions options);
  ~ServiceNotifier();  // stops the thread (as Stopping, without the message)

  // Sends READY=1 with the first STATUS= and starts the thread.
  void Ready();
  // Stops the thread, then sends STOPPING=1 and STATUS=stopping.
  void Stopping();

 private:
  struct Round {
    bool agent_answered = false;
    bool election_answered = false;
    std::optional<v1::LeaderView> view;
  };
  Round Probe(std::chrono::milliseconds deadline);
  // Notes which loops answered in `round`; returns the time now.
  int64_t Record(const Round& round);
  void Loop();
  void Notify(const std::string& message);
  void StopThread();

  ServiceNotifierOptions options_;
  std::chrono::microseconds watchdog_{0};  // 0: off
  // Touched by Ready before the thread starts, then by the thread only.
  std::string last_status_;
  int64_t agent_ms_ = 0, election_ms_ = 0;  // last answers, steady ms
  // Per options_.counters: the value seen last, and when it last moved.
  std::vector<uint64_t> counter_values_;
  std::vector<int64_t> counter_ms_;

  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_SD_NOTIFIER_H_
