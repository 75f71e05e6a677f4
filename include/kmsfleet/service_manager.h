// The provider's systemd unit, driven over D-Bus with sd-bus (architecture.md
// §4 "Swap"): StopUnit/StartUnit waiting for the job's JobRemoved signal,
// and the unit's ActiveState and InvocationID.
// Thread-safe: each call opens its own bus connection.
#ifndef KMSFLEET_SERVICE_MANAGER_H_
#define KMSFLEET_SERVICE_MANAGER_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kmsfleet {

struct UnitState {
  std::string active_state;  // active, activating, failed, inactive, ...
  std::string sub_state;
  std::string invocation_id;  // hex; "" when the unit never ran
};

class ServiceManager {
 public:
  virtual ~ServiceManager() = default;
  // Starts/stops `unit` and waits up to `timeout` for its job to finish.
  // Errors: Unavailable, SERVICE_MANAGER_ERROR (bus or method failure, naming
  // the unit and the D-Bus error); DeadlineExceeded, TIMEOUT; Aborted,
  // UNIT_FAILED when the job result is not "done" (the result is named).
  virtual absl::Status Start(const std::string& unit,
                             std::chrono::milliseconds timeout) = 0;
  virtual absl::Status Stop(const std::string& unit,
                            std::chrono::milliseconds timeout) = 0;
  virtual absl::StatusOr<UnitState> State(const std::string& unit) = 0;
};

// `bus_address` is a D-Bus address such as
// "unix:path=/run/user/0/systemd/private" (a direct connection to the
// manager); "" means the system bus.
std::unique_ptr<ServiceManager> NewSystemdServiceManager(std::string bus_address);

}  // namespace kmsfleet

#endif  // KMSFLEET_SERVICE_MANAGER_H_
