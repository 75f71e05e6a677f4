// What the executor needs to know about the provider's service, in words
// of its own rather than a service manager's (systemd's "ActiveState",
// a static pod's phase): whether it runs, which run it is, and how the last
// run ended. Filled in by a ServiceManager (src/node); judged by the swap
// machine (src/core).
// Thread-safe: plain values.
#ifndef KMSFLEET_CORE_UNIT_STATE_H_
#define KMSFLEET_CORE_UNIT_STATE_H_

#include <optional>
#include <string>
#include <string_view>

namespace kmsfleet {

enum class UnitActivity {
  kRunning,   // started and not stopping
  kStarting,  // on its way up (systemd: activating, reloading)
  kStopping,  // on its way down
  kStopped,   // not running, and did not fail (systemd: inactive)
  kFailed,    // its last run ended in failure
  kUnknown,   // the manager reported something else
};

// "running", "starting", ..., for messages.
std::string_view ActivityName(UnitActivity activity);

struct UnitState {
  UnitActivity activity = UnitActivity::kUnknown;
  // The manager's own words (systemd: "failed (failed)"), only for messages.
  std::string detail;
  // One value per run of the unit; a new one means it was (re)started.
  // "" when the unit never ran.
  std::string invocation_id;
  // How the main process of the last run exited, when the manager knows.
  std::optional<int> exit_status;
  // The last lines the provider wrote (journal or output), newest last,
  // when the manager can tell; "" otherwise. Bounded by the manager.
  std::string last_output;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_UNIT_STATE_H_
