// The provider's systemd unit, driven over D-Bus with sd-bus (architecture.md
// §4 "Swap"): StopUnit/StartUnit/RestartUnit waiting for the job's JobRemoved signal,
// and the unit's state (activity, InvocationID, exit status) in the
// executor's words (unit_state.h): no systemd vocabulary leaks past here.
// Thread-safe: each call opens its own bus connection.
#ifndef KMSFLEET_NODE_SERVICE_MANAGER_H_
#define KMSFLEET_NODE_SERVICE_MANAGER_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/unit_state.h"

namespace kmsfleet {

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
  // Restarts `unit` (starts it if it is not running) and waits up to
  // `timeout` for the job, as Start. For kube-apiserver (apiserver_restart.h).
  virtual absl::Status Restart(const std::string& unit,
                               std::chrono::milliseconds timeout) = 0;
  // Errors: Unavailable, SERVICE_MANAGER_ERROR.
  virtual absl::StatusOr<UnitState> State(const std::string& unit) = 0;
};

// `bus_address` is a D-Bus address such as
// "unix:path=/run/user/0/systemd/private" (a direct connection to the
// manager); "" means the system bus.
std::unique_ptr<ServiceManager> NewSystemdServiceManager(std::string bus_address);

// The manager reached through a message bus (a broker) at `bus_address`,
// as on the system bus: job signals are accepted only from the bus name
// org.freedesktop.systemd1. For tests with a private dbus-daemon.
std::unique_ptr<ServiceManager> NewBrokeredSystemdServiceManager(std::string bus_address);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_SERVICE_MANAGER_H_
