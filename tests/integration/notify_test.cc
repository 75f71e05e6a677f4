// kmsfleetd as a Type=notify unit of a real systemd --user manager
// (docs/systemd.md): READY=1 only once it serves, STATUS= with its role
// and plan, WATCHDOG=1 only while its loops answer, STOPPING=1 on stop.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>

#include "process_harness.h"
#include "user_manager.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Short, so a few intervals fit in a test: pings every 500 ms, a loop
// silent for 1 s stops them, systemd kills after 2 s without one.
constexpr char kWatchdogSec[] = "2";

class NotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unit_ = "kmsfleetd-" + std::filesystem::path(dir_.path()).filename().string() + ".service";
    manager_ = StartUserManager(dir_.path());
  }
  void TearDown() override {
    UserSystemctl(dir_.path(), {"stop", unit_});
    StopUserManager(manager_);
  }

  std::string socket() const { return dir_.File("agent.sock"); }
  std::string log() const { return ReadFile(dir_.File("agent.log")); }

  // Writes the agent config (`extra` appended) and the unit running it.
  void Install(const std::string& extra) {
    std::filesystem::create_directories(dir_.File("state"));
    // An explicit provider.config must exist (docs/config.md); this one
    // names no registry, so the agent uses the default path.
    WriteFile(dir_.File("provider.yaml"), "configVersion: v1alpha1\n");
    WriteFile(dir_.File("kmsfleet.yaml"),
              "node: cp-1\n"
              "state_dir: " + dir_.File("state") + "\n"
              "listen:\n  unix: " + socket() + "\n"
              "provider:\n  config: " + dir_.File("provider.yaml") + "\n" + extra);
    WriteFile(dir_.File("cfg/systemd/user/") + unit_,
              "[Service]\nType=notify\n"
              "ExecStart=" KMSFLEETD_PATH " --config " + dir_.File("kmsfleet.yaml") + "\n"
              "WatchdogSec=" + std::string(kWatchdogSec) + "\n"
              "TimeoutStartSec=15\nTimeoutStopSec=15\nRestart=no\n"
              "StandardOutput=append:" + dir_.File("agent.log") + "\n"
              "StandardError=append:" + dir_.File("agent.log") + "\n");
    UserSystemctl(dir_.path(), {"daemon-reload"});
  }

  std::string Show(const std::string& property) {
    std::string out = UserSystemctl(dir_.path(), {"show", "-p", property, "--value", unit_});
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  bool WaitForStatus(const std::string& want) {
    return WaitUntil([&] { return Show("StatusText") == want; }, std::chrono::seconds(10));
  }

  TempDir dir_;
  std::string unit_;
  std::unique_ptr<ChildProcess> manager_;
};

TEST_F(NotifyTest, ActiveOnlyOnceServingPingedWhileAliveAndStoppedCleanly) {
  Install("standalone: true\n");
  // Blocks until READY=1: the socket must already be served by then.
  UserSystemctl(dir_.path(), {"start", unit_});
  ASSERT_EQ(Show("ActiveState"), "active") << log();
  EXPECT_TRUE(PathExists(socket()));
  EXPECT_THAT(log(), HasSubstr("agent serving"));
  EXPECT_TRUE(WaitForStatus("standalone; no cluster")) << Show("StatusText");
  const std::string pid = Show("MainPID");
  const std::string first_ping = Show("WatchdogTimestampMonotonic");

  // Three watchdog intervals: a missing ping would have killed it.
  std::this_thread::sleep_for(std::chrono::seconds(6));
  EXPECT_EQ(Show("ActiveState"), "active") << log();
  EXPECT_EQ(Show("MainPID"), pid);
  EXPECT_NE(Show("WatchdogTimestampMonotonic"), first_ping) << "no WATCHDOG=1 seen";
  EXPECT_THAT(log(), Not(HasSubstr("ping skipped")));

  UserSystemctl(dir_.path(), {"stop", unit_});
  EXPECT_EQ(Show("ActiveState"), "inactive");
  EXPECT_EQ(Show("Result"), "success");
  EXPECT_THAT(log(), HasSubstr("msg=stopped"));
}

TEST_F(NotifyTest, AgentThatFailsBeforeServingNeverBecomesActive) {
  // /metrics cannot be served there (the port is held), so kmsfleetd
  // exits before READY=1.
  HeldPort taken;
  ASSERT_NE(taken.port(), 0);
  Install("standalone: true\nmetrics:\n  listen: 127.0.0.1:" + std::to_string(taken.port()) +
          "\n");
  UserSystemctl(dir_.path(), {"start", unit_});
  EXPECT_EQ(Show("ActiveState"), "failed") << log();
  EXPECT_EQ(Show("ActiveEnterTimestampMonotonic"), "0");
  EXPECT_THAT(log(), HasSubstr("metrics.listen"));
}

TEST_F(NotifyTest, StatusShowsTheElection) {
  Install("cluster:\n  listen: 127.0.0.1:" + std::to_string(FreeLoopbackPort()) +
          "\n  insecure: true\n");
  UserSystemctl(dir_.path(), {"start", unit_});
  ASSERT_EQ(Show("ActiveState"), "active") << log();
  // A single voter elects itself.
  EXPECT_TRUE(WaitUntil([&] { return Show("StatusText").starts_with("coordinator term "); },
                        std::chrono::seconds(10)))
      << Show("StatusText") << "\n" << log();
  EXPECT_THAT(Show("StatusText"), ::testing::EndsWith("; no plan"));
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_EQ(Show("ActiveState"), "active") << log();
}

TEST_F(NotifyTest, WatchdogStopsPingingWhenTheAgentApiIsUnreachable) {
  Install("standalone: true\n");
  UserSystemctl(dir_.path(), {"start", unit_});
  ASSERT_EQ(Show("ActiveState"), "active") << log();
  // The process and its timers live on, but the self-call over the socket
  // fails: a bare timer would keep pinging; the agent must not.
  std::filesystem::remove(socket());
  EXPECT_TRUE(WaitUntil([&] { return Show("ActiveState") == "failed"; },
                        std::chrono::seconds(10)))
      << Show("ActiveState") << "\n" << log();
  EXPECT_EQ(Show("Result"), "watchdog");
  EXPECT_THAT(log(), HasSubstr("systemd watchdog ping skipped"));
  EXPECT_THAT(log(), HasSubstr("agent_api: no progress for"));
}

}  // namespace
}  // namespace kmsfleet::testing
