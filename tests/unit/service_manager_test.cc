// The systemd ServiceManager on a message bus (a private dbus-daemon, as
// the system bus is): a JobRemoved signal for our job from any peer other
// than org.freedesktop.systemd1 must not decide the job's result.
#include "kmsfleet/node/service_manager.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <systemd/sd-bus.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr char kPath[] = "/org/freedesktop/systemd1";
constexpr char kManager[] = "org.freedesktop.systemd1.Manager";
constexpr char kJob[] = "/org/freedesktop/systemd1/job/7";

// A dbus-daemon of our own, stopped at the end.
class PrivateBus {
 public:
  PrivateBus() {
    FILE* p = popen("dbus-daemon --session --fork --print-address=1 --print-pid=1", "r");
    if (p == nullptr) return;
    char line[512];
    if (fgets(line, sizeof line, p) != nullptr) address_ = Trim(line);
    if (fgets(line, sizeof line, p) != nullptr) pid_ = std::stoi(Trim(line));
    pclose(p);
  }
  ~PrivateBus() {
    if (pid_ > 0) kill(pid_, SIGTERM);
  }
  const std::string& address() const { return address_; }

 private:
  static std::string Trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }
  std::string address_;
  int pid_ = -1;
};

sd_bus* Connect(const std::string& address) {
  sd_bus* bus = nullptr;
  if (sd_bus_new(&bus) < 0) return nullptr;
  if (sd_bus_set_address(bus, address.c_str()) < 0 || sd_bus_set_bus_client(bus, 1) < 0 ||
      sd_bus_start(bus) < 0) {
    sd_bus_unref(bus);
    return nullptr;
  }
  return bus;
}

// Owns org.freedesktop.systemd1 and answers StartUnit with job 7, which it
// ends "done" a little later. Right after the reply, an impostor (another
// peer on the bus) claims the same job ended "failed".
class FakeSystemd {
 public:
  explicit FakeSystemd(const std::string& address)
      : bus_(Connect(address)), impostor_(Connect(address)) {
    if (bus_ == nullptr || impostor_ == nullptr) return;
    ok_ = sd_bus_request_name(bus_, "org.freedesktop.systemd1", 0) >= 0 &&
          sd_bus_add_object_vtable(bus_, nullptr, kPath, kManager, kVtable, this) >= 0;
    if (ok_) thread_ = std::thread([this] { Loop(); });
  }
  ~FakeSystemd() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    sd_bus_flush_close_unref(bus_);
    sd_bus_flush_close_unref(impostor_);
  }
  bool ok() const { return ok_; }

 private:
  static int Subscribe(sd_bus_message* m, void*, sd_bus_error*) {
    return sd_bus_reply_method_return(m, "");
  }
  static int StartUnit(sd_bus_message* m, void* self_ptr, sd_bus_error*) {
    auto* self = static_cast<FakeSystemd*>(self_ptr);
    const char *unit = nullptr, *mode = nullptr;
    if (sd_bus_message_read(m, "ss", &unit, &mode) < 0) return -EINVAL;
    self->unit_ = unit;
    int r = sd_bus_reply_method_return(m, "o", kJob);
    sd_bus_emit_signal(self->impostor_, kPath, kManager, "JobRemoved", "uoss", 7u, kJob,
                       unit, "failed");
    sd_bus_flush(self->impostor_);
    self->done_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    return r;
  }
  void Loop() {
    while (!stop_) {
      while (sd_bus_process(bus_, nullptr) > 0) {
      }
      if (done_at_ && std::chrono::steady_clock::now() >= *done_at_) {
        sd_bus_emit_signal(bus_, kPath, kManager, "JobRemoved", "uoss", 7u, kJob,
                           unit_.c_str(), "done");
        sd_bus_flush(bus_);
        done_at_.reset();
      }
      sd_bus_wait(bus_, 20000);
    }
  }

  static constexpr sd_bus_vtable kVtable[] = {
      SD_BUS_VTABLE_START(0),
      SD_BUS_METHOD("Subscribe", "", "", Subscribe, SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_METHOD("StartUnit", "ss", "o", StartUnit, SD_BUS_VTABLE_UNPRIVILEGED),
      SD_BUS_VTABLE_END};

  sd_bus* bus_;
  sd_bus* impostor_;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::string unit_;
  std::optional<std::chrono::steady_clock::time_point> done_at_;
  std::thread thread_;
};

TEST(SystemdServiceManagerTest, JobRemovedFromAnotherPeerIsIgnored) {
  PrivateBus bus;
  if (bus.address().empty()) GTEST_SKIP() << "dbus-daemon is not available";
  FakeSystemd systemd(bus.address());
  ASSERT_TRUE(systemd.ok()) << "cannot own org.freedesktop.systemd1 on " << bus.address();
  std::unique_ptr<ServiceManager> manager = NewBrokeredSystemdServiceManager(bus.address());
  absl::Status s = manager->Start("bao-kms-provider.service", std::chrono::seconds(5));
  EXPECT_TRUE(s.ok()) << s << " (the impostor's \"failed\" was taken for systemd's)";
}

}  // namespace
}  // namespace kmsfleet
