// kmsfleetd as a Type=notify unit of a real systemd --user manager
// (docs/systemd.md): READY=1 only once it serves, STATUS= with its role
// and plan, WATCHDOG=1 only while its loops answer, STOPPING=1 on stop.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <string>
#include <thread>

#include "kmsfleet/v1/agent.grpc.pb.h"
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

  // Writes the agent config (`extra` appended) and the unit running it,
  // whose TimeoutStopSec= is `stop_sec`.
  void Install(const std::string& extra, const std::string& stop_sec = "15") {
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
              "TimeoutStartSec=15\nTimeoutStopSec=" + stop_sec + "\nRestart=no\n"
              // As systemd/kmsfleetd.service: the stop's SIGTERM is the
              // agent's alone, not its commands'.
              "KillMode=mixed\n"
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

// A kube-apiserver restart command still running when the agent is
// stopped (a package upgrade restarting kmsfleetd mid-plan): systemd would
// kill the command with the agent's cgroup at TimeoutStopSec=, leaving
// kube-apiserver half-restarted. The agent asks systemd for the command's
// time (EXTEND_TIMEOUT_USEC): the stop lasts past TimeoutStopSec=, the
// command finishes, and the unit stops cleanly.
TEST_F(NotifyTest, AStopLetsARunningApiServerRestartCommandFinish) {
  const std::string script = dir_.File("restart-apiserver");
  WriteExecutable(script, "#!/bin/sh\n"
                          "touch " + dir_.File("restart-began") + "\n"
                          "sleep 6\n"
                          "touch " + dir_.File("restart-finished") + "\n");
  // /readyz at a port nobody serves: the wait after the command is cut by
  // the stop.
  Install("standalone: true\n"
          "apiserver:\n"
          "  restart: command:" + script + "\n"
          "  readyz_url: http://127.0.0.1:" + std::to_string(FreeLoopbackPort()) + "/readyz\n"
          "  restart_timeout_ms: 20000\n",
          /*stop_sec=*/"2");
  UserSystemctl(dir_.path(), {"start", unit_});
  ASSERT_EQ(Show("ActiveState"), "active") << log();

  std::thread caller([&] {
    auto stub = v1::Agent::NewStub(
        grpc::CreateChannel("unix:" + socket(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::RestartApiServerRequest request;
    request.set_restart_id("restart-during-stop");
    v1::RestartApiServerResponse response;
    stub->RestartApiServer(&context, request, &response);  // cut by the stop
  });
  const bool began = WaitUntil([&] { return PathExists(dir_.File("restart-began")); },
                               std::chrono::seconds(10));
  EXPECT_TRUE(began) << log();
  // The command has about 6 s left, three times TimeoutStopSec=: without
  // the extension systemd kills it (Result "timeout") long before it ends.
  UserSystemctl(dir_.path(), {"stop", unit_});  // returns once stopped
  caller.join();
  if (!began) return;
  EXPECT_TRUE(PathExists(dir_.File("restart-finished"))) << log();
  EXPECT_EQ(Show("Result"), "success") << log();
  EXPECT_THAT(log(), HasSubstr("msg=stopped"));
}

}  // namespace
}  // namespace kmsfleet::testing
