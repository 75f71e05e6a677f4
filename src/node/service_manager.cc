#include "kmsfleet/node/service_manager.h"

#include <systemd/sd-bus.h>
#include <systemd/sd-journal.h>

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <map>
#include <string_view>
#include <vector>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

constexpr char kService[] = "org.freedesktop.systemd1";
constexpr char kPath[] = "/org/freedesktop/systemd1";
constexpr char kManager[] = "org.freedesktop.systemd1.Manager";
constexpr char kUnitIface[] = "org.freedesktop.systemd1.Unit";
constexpr char kServiceIface[] = "org.freedesktop.systemd1.Service";

// systemd's ActiveState in the executor's words.
UnitActivity ActivityOf(std::string_view active_state) {
  if (active_state == "active") return UnitActivity::kRunning;
  if (active_state == "activating" || active_state == "reloading") {
    return UnitActivity::kStarting;
  }
  if (active_state == "deactivating") return UnitActivity::kStopping;
  if (active_state == "inactive") return UnitActivity::kStopped;
  if (active_state == "failed") return UnitActivity::kFailed;
  return UnitActivity::kUnknown;
}

struct BusUnref {
  void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};
using Bus = std::unique_ptr<sd_bus, BusUnref>;

absl::Status BusError(std::string_view what, const std::string& unit, int r,
                      const sd_bus_error* e = nullptr) {
  std::string detail = e != nullptr && e->message != nullptr
                           ? std::string(e->name ? e->name : "") + ": " + e->message
                           : std::strerror(-r);
  return MakeError(absl::StatusCode::kUnavailable, reason::kServiceManagerError,
                   std::string(what) + " " + unit + ": " + detail,
                   {{"unit", unit}});
}

// The last lines the run `invocation_id` wrote to the journal, oldest
// first, each cut at kMaxLineBytes; "" when there is no journal (journald
// not running) or nothing was logged. Bounded: at most kMaxLines entries
// are read.
constexpr int kMaxLines = 5;
constexpr size_t kMaxLineBytes = 240;

std::string LastJournalLines(const std::string& invocation_id) {
  if (invocation_id.empty()) return "";
  sd_journal* j = nullptr;
  if (sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0) return "";
  std::unique_ptr<sd_journal, decltype(&sd_journal_close)> closer(j, sd_journal_close);
  // System units carry _SYSTEMD_INVOCATION_ID, user units USER_INVOCATION_ID.
  std::string system_match = "_SYSTEMD_INVOCATION_ID=" + invocation_id;
  std::string user_match = "USER_INVOCATION_ID=" + invocation_id;
  if (sd_journal_add_match(j, system_match.data(), system_match.size()) < 0 ||
      sd_journal_add_disjunction(j) < 0 ||
      sd_journal_add_match(j, user_match.data(), user_match.size()) < 0 ||
      sd_journal_seek_tail(j) < 0) {
    return "";
  }
  std::vector<std::string> lines;
  while (static_cast<int>(lines.size()) < kMaxLines && sd_journal_previous(j) > 0) {
    const void* data = nullptr;
    size_t size = 0;
    if (sd_journal_get_data(j, "MESSAGE", &data, &size) < 0) continue;
    std::string_view field(static_cast<const char*>(data), size);
    field.remove_prefix(std::min(field.size(), sizeof("MESSAGE=") - 1));
    lines.emplace_back(field.substr(0, kMaxLineBytes));
  }
  std::string out;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    out += (out.empty() ? "" : " | ") + *it;
  }
  return out;
}

// JobRemoved(u id, o job, s unit, s result) signals seen on this connection.
struct JobWatch {
  std::map<std::string, std::string> results;  // job path -> result
};

int OnJobRemoved(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto* watch = static_cast<JobWatch*>(userdata);
  uint32_t id = 0;
  const char *job = nullptr, *unit = nullptr, *result = nullptr;
  if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) >= 0) {
    watch->results[job] = result;
  }
  return 0;
}

class SystemdServiceManager final : public ServiceManager {
 public:
  // `brokered`: `address` is a message bus (with sender names), not the
  // manager's private socket. "" is always the system bus.
  SystemdServiceManager(std::string address, bool brokered)
      : address_(std::move(address)), brokered_(brokered || address_.empty()) {}

  absl::Status Start(const std::string& unit,
                     std::chrono::milliseconds timeout) override {
    // A provider that crash-looped (while kmsfleetd was down, or the
    // target before a rollback) may have hit its unit's start limit, and
    // the manager would refuse this deliberate start until the limit's
    // interval passes. As `systemctl reset-failed`; a unit that is not
    // failed is left as it is, and an error here shows in the start.
    ResetFailed(unit);
    return RunJob("StartUnit", unit, timeout);
  }
  absl::Status Stop(const std::string& unit,
                    std::chrono::milliseconds timeout) override {
    return RunJob("StopUnit", unit, timeout);
  }
  absl::Status Restart(const std::string& unit,
                       std::chrono::milliseconds timeout) override {
    return RunJob("RestartUnit", unit, timeout);
  }

  absl::StatusOr<UnitState> State(const std::string& unit) override {
    KMSFLEET_ASSIGN_OR_RETURN(Bus bus, Connect(unit));
    KMSFLEET_ASSIGN_OR_RETURN(std::string path, UnitPath(bus.get(), unit));
    KMSFLEET_ASSIGN_OR_RETURN(std::string active,
                              StringProperty(bus.get(), path, unit, "ActiveState"));
    KMSFLEET_ASSIGN_OR_RETURN(std::string sub,
                              StringProperty(bus.get(), path, unit, "SubState"));
    UnitState state;
    state.activity = ActivityOf(active);
    state.detail = active + " (" + sub + ")";
    KMSFLEET_ASSIGN_OR_RETURN(state.invocation_id, InvocationId(bus.get(), path, unit));
    // Only services have a main process; for other units it is unknown.
    int32_t status = 0;
    sd_bus_error e{};  // SD_BUS_ERROR_NULL, without a C compound literal
    if (sd_bus_get_property_trivial(bus.get(), kService, path.c_str(), kServiceIface,
                                    "ExecMainStatus", &e, 'i', &status) >= 0 &&
        state.activity == UnitActivity::kFailed) {
      state.exit_status = status;
    }
    sd_bus_error_free(&e);
    if (state.activity == UnitActivity::kFailed) {
      state.last_output = LastJournalLines(state.invocation_id);
    }
    return state;
  }

 private:
  absl::StatusOr<Bus> Connect(const std::string& unit) const {
    sd_bus* raw = nullptr;
    int r = 0;
    if (address_.empty()) {
      r = sd_bus_open_system(&raw);
    } else {
      // A direct (peer) connection to the manager's private socket: no
      // broker, so no Hello and no sender names on messages.
      r = sd_bus_new(&raw);
      if (r >= 0) r = sd_bus_set_address(raw, address_.c_str());
      if (r >= 0 && brokered_) r = sd_bus_set_bus_client(raw, 1);
      if (r >= 0) r = sd_bus_start(raw);
    }
    Bus bus(raw);
    if (r < 0) return BusError("connect to the service manager at " +
                                   (address_.empty() ? "the system bus" : address_) +
                                   " for",
                               unit, r);
    return bus;
  }

  absl::StatusOr<std::string> UnitPath(sd_bus* bus, const std::string& unit) {
    sd_bus_error e{};  // SD_BUS_ERROR_NULL, without a C compound literal
    sd_bus_message* reply = nullptr;
    int r = sd_bus_call_method(bus, kService, kPath, kManager, "LoadUnit", &e,
                               &reply, "s", unit.c_str());
    absl::Status s = r < 0 ? BusError("LoadUnit", unit, r, &e) : absl::OkStatus();
    sd_bus_error_free(&e);
    const char* path = nullptr;
    if (s.ok() && sd_bus_message_read(reply, "o", &path) < 0) {
      s = BusError("LoadUnit reply", unit, -EBADMSG);
    }
    std::string out = s.ok() ? path : "";
    sd_bus_message_unref(reply);
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::string> StringProperty(sd_bus* bus, const std::string& path,
                                             const std::string& unit,
                                             const char* name) {
    sd_bus_error e{};  // SD_BUS_ERROR_NULL, without a C compound literal
    char* value = nullptr;
    int r = sd_bus_get_property_string(bus, kService, path.c_str(), kUnitIface,
                                       name, &e, &value);
    absl::Status s = r < 0 ? BusError(name, unit, r, &e) : absl::OkStatus();
    sd_bus_error_free(&e);
    std::string out = value != nullptr ? value : "";
    free(value);
    if (!s.ok()) return s;
    return out;
  }

  absl::StatusOr<std::string> InvocationId(sd_bus* bus, const std::string& path,
                                           const std::string& unit) {
    sd_bus_error e{};  // SD_BUS_ERROR_NULL, without a C compound literal
    sd_bus_message* reply = nullptr;
    int r = sd_bus_get_property(bus, kService, path.c_str(), kUnitIface,
                                "InvocationID", &e, &reply, "ay");
    absl::Status s = r < 0 ? BusError("InvocationID", unit, r, &e) : absl::OkStatus();
    sd_bus_error_free(&e);
    std::string hex;
    const void* data = nullptr;
    size_t size = 0;
    if (s.ok() && sd_bus_message_read_array(reply, 'y', &data, &size) >= 0) {
      static constexpr char kHex[] = "0123456789abcdef";
      for (size_t i = 0; i < size; ++i) {
        unsigned char b = static_cast<const unsigned char*>(data)[i];
        hex += kHex[b >> 4];
        hex += kHex[b & 15];
      }
    }
    sd_bus_message_unref(reply);
    if (!s.ok()) return s;
    return hex;
  }

  // ResetFailedUnit, best effort: Start reports what the start gives.
  void ResetFailed(const std::string& unit) {
    absl::StatusOr<Bus> bus = Connect(unit);
    if (!bus.ok()) return;
    sd_bus_error e{};
    sd_bus_call_method(bus->get(), kService, kPath, kManager, "ResetFailedUnit", &e, nullptr,
                       "s", unit.c_str());
    sd_bus_error_free(&e);
  }

  // Calls `method` (StartUnit/StopUnit/RestartUnit) in "replace" mode and waits for the
  // JobRemoved signal of the job it returns.
  absl::Status RunJob(const char* method, const std::string& unit,
                      std::chrono::milliseconds timeout) {
    KMSFLEET_ASSIGN_OR_RETURN(Bus bus, Connect(unit));
    JobWatch watch;
    sd_bus_slot* slot = nullptr;
    // Installed before the call, so a job that ends at once is not missed.
    // On the system bus only systemd itself may end our job: match its
    // name, or any peer could send a forged JobRemoved. A direct connection
    // to the manager's private socket has no broker and no sender names;
    // its only peer is the manager.
    const char* sender = brokered_ ? kService : nullptr;
    int r = sd_bus_match_signal(bus.get(), &slot, sender, kPath, kManager,
                                "JobRemoved", OnJobRemoved, &watch);
    if (r < 0) return BusError("subscribe to JobRemoved for", unit, r);
    std::unique_ptr<sd_bus_slot, decltype(&sd_bus_slot_unref)> slot_ref(
        slot, sd_bus_slot_unref);
    sd_bus_error e{};  // SD_BUS_ERROR_NULL, without a C compound literal
    r = sd_bus_call_method(bus.get(), kService, kPath, kManager, "Subscribe", &e,
                           nullptr, "");
    sd_bus_error_free(&e);
    if (r < 0) return BusError("Subscribe", unit, r);
    sd_bus_message* reply = nullptr;
    r = sd_bus_call_method(bus.get(), kService, kPath, kManager, method, &e,
                           &reply, "ss", unit.c_str(), "replace");
    if (r < 0) {
      absl::Status s = BusError(method, unit, r, &e);
      sd_bus_error_free(&e);
      return s;
    }
    const char* job_path = nullptr;
    r = sd_bus_message_read(reply, "o", &job_path);
    std::string job = r >= 0 ? job_path : "";
    sd_bus_message_unref(reply);
    if (r < 0) return BusError(method, unit, r);
    return WaitForJob(bus.get(), watch, job, method, unit, timeout);
  }

  absl::Status WaitForJob(sd_bus* bus, JobWatch& watch, const std::string& job,
                          const char* method, const std::string& unit,
                          std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!watch.results.contains(job)) {
      int r = sd_bus_process(bus, nullptr);
      if (r < 0) return BusError("wait for the job of", unit, r);
      if (r > 0) continue;
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) {
        return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kTimeout,
                         std::string(method) + " " + unit + " did not finish within " +
                             std::to_string(timeout.count()) + " ms",
                         {{"unit", unit}});
      }
      uint64_t usec = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(left).count());
      r = sd_bus_wait(bus, usec);
      if (r < 0 && r != -EINTR) return BusError("wait for the job of", unit, r);
    }
    const std::string& result = watch.results[job];
    if (result != "done") {
      return MakeError(absl::StatusCode::kAborted, reason::kUnitFailed,
                       std::string(method) + " " + unit + " ended with result \"" +
                           result + "\"",
                       {{"unit", unit}, {"result", result}});
    }
    return absl::OkStatus();
  }

  std::string address_;
  bool brokered_;
};

}  // namespace

std::unique_ptr<ServiceManager> NewSystemdServiceManager(std::string bus_address) {
  return std::make_unique<SystemdServiceManager>(std::move(bus_address), false);
}

std::unique_ptr<ServiceManager> NewBrokeredSystemdServiceManager(std::string bus_address) {
  return std::make_unique<SystemdServiceManager>(std::move(bus_address), true);
}

}  // namespace kmsfleet
