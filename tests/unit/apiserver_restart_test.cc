// Restarting kube-apiserver and waiting for /readyz (issue 9), over a fake
// service manager, real commands, and a loopback server whose /readyz
// answers 503 before it answers 200.
#include "kmsfleet/node/apiserver_restart.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;

class FakeServices final : public ServiceManager {
 public:
  absl::Status Start(const std::string&, std::chrono::milliseconds) override {
    return absl::OkStatus();
  }
  absl::Status Stop(const std::string&, std::chrono::milliseconds) override {
    return absl::OkStatus();
  }
  absl::Status Restart(const std::string& unit, std::chrono::milliseconds) override {
    restarted.push_back(unit);
    return restart_result;
  }
  absl::StatusOr<UnitState> State(const std::string&) override { return UnitState{}; }

  std::vector<std::string> restarted;
  absl::Status restart_result;
};

// Answers each connection with the next of `statuses` (the last repeats),
// as a kube-apiserver coming up answers /readyz.
class ReadyzServer {
 public:
  explicit ReadyzServer(std::vector<int> statuses) : statuses_(std::move(statuses)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 8);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ReadyzServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  HttpUrl Url() const { return HttpUrl{"127.0.0.1", port_, "/readyz"}; }
  int served() const { return served_; }

 private:
  void Serve() {
    for (int conn; (conn = accept(fd_, nullptr, nullptr)) >= 0;) {
      char buf[4096];
      std::string request;
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<size_t>(n));
      }
      int status = statuses_[std::min<size_t>(served_, statuses_.size() - 1)];
      std::string body = status == 200 ? "ok" : "[-]poststarthook/rbac failed";
      std::string reply = "HTTP/1.1 " + std::to_string(status) +
                          (status == 200 ? " OK" : " Service Unavailable") +
                          "\r\nContent-Length: " + std::to_string(body.size()) +
                          "\r\nConnection: close\r\n\r\n" + body;
      // Counted before the reply goes out: the client may read it and the
      // test assert on served() before this thread runs again.
      ++served_;
      [[maybe_unused]] ssize_t w = write(conn, reply.data(), reply.size());
      close(conn);
    }
  }

  std::vector<int> statuses_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> served_{0};
  std::thread thread_;
};

absl::Status AdmitAll(const std::function<void()>& work) {
  work();
  return absl::OkStatus();
}

class ApiServerRestartTest : public ::testing::Test {
 protected:
  ApiServerRestarter Make(const std::string& method, HttpUrl readyz) {
    ApiServerRestartOptions o;
    EXPECT_TRUE(ParseApiServerRestartMethod(method, o).ok()) << method;
    o.readyz = std::move(readyz);
    o.poll_interval = std::chrono::milliseconds(20);
    o.ready_timeout = std::chrono::milliseconds(3000);
    o.restart_timeout = std::chrono::milliseconds(5000);
    return ApiServerRestarter(o, {.services = services_, .steady = steady_});
  }

  // A systemd restart whose /readyz wait lasts up to `ready_timeout`.
  ApiServerRestarter MakeAwaiting(HttpUrl readyz, std::chrono::milliseconds ready_timeout) {
    ApiServerRestartOptions o = Make("systemd:kube-apiserver.service", std::move(readyz)).options();
    o.ready_timeout = ready_timeout;
    return ApiServerRestarter(o, {.services = services_, .steady = steady_});
  }

  std::string Script(const std::string& name, const std::string& body) {
    std::string path = dir_.File(name);
    testing::WriteFile(path, "#!/bin/sh\n" + body);
    chmod(path.c_str(), 0755);
    return path;
  }

  FakeServices services_;
  SteadyClock steady_;
  testing::TempDir dir_;
};

TEST_F(ApiServerRestartTest, SystemdRestartsTheUnitThenWaitsForReadyz) {
  ReadyzServer readyz({503, 503, 200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  absl::StatusOr<ApiServerRestartReport> r = restarter.Restart("op-1", AdmitAll);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(services_.restarted, std::vector<std::string>{"kube-apiserver.service"});
  EXPECT_EQ(r->method, "systemd:kube-apiserver.service");
  EXPECT_EQ(r->done, "restarted unit kube-apiserver.service");
  EXPECT_EQ(r->readyz_attempts, 3);
  EXPECT_EQ(readyz.served(), 3);
  EXPECT_GE(r->ready_ms, 40);  // two polls of 20 ms before the 200
}

TEST_F(ApiServerRestartTest, CommandRunsWithNoArgumentsAndAClearedEnvironment) {
  ReadyzServer readyz({200});
  const std::string seen = dir_.File("seen");
  ApiServerRestarter restarter = Make(
      "command:" + Script("restart.sh", "echo \"args=$# home=$HOME\" > " + seen + "\n"),
      readyz.Url());
  absl::StatusOr<ApiServerRestartReport> r = restarter.Restart("op-1", AdmitAll);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(testing::ReadFile(seen), "args=0 home=\n");
  EXPECT_THAT(r->done, HasSubstr("restart.sh (exit 0)"));
  EXPECT_TRUE(services_.restarted.empty());
}

TEST_F(ApiServerRestartTest, FailingCommandIsRestartFailedNamingItAndWhatItSaid) {
  ReadyzServer readyz({200});
  const std::string command = Script("restart.sh", "echo 'crictl: no such pod' >&2\nexit 3\n");
  ApiServerRestarter restarter = Make("command:" + command, readyz.Url());
  absl::StatusOr<ApiServerRestartReport> r = restarter.Restart("op-1", AdmitAll);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReasonOf(r.status()), reason::kApiServerRestartFailed);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr(command + " exited 3"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("crictl: no such pod"));
  EXPECT_EQ(readyz.served(), 0) << "readyz is not awaited after a failed restart";
}

TEST_F(ApiServerRestartTest, FailingUnitRestartNamesTheUnitAndTheError) {
  ReadyzServer readyz({200});
  services_.restart_result = MakeError(absl::StatusCode::kAborted, reason::kUnitFailed,
                                       "RestartUnit kube-apiserver.service ended \"failed\"");
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  absl::StatusOr<ApiServerRestartReport> r = restarter.Restart("op-1", AdmitAll);
  EXPECT_EQ(ReasonOf(r.status()), reason::kApiServerRestartFailed);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("restarting unit kube-apiserver.service failed"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("UNIT_FAILED"));
}

TEST_F(ApiServerRestartTest, ReadyzThatNeverAnswers200IsNotReadyNamingTheUrlAndLastAnswer) {
  ReadyzServer readyz({503});
  ApiServerRestarter quick = MakeAwaiting(readyz.Url(), std::chrono::milliseconds(200));
  absl::StatusOr<ApiServerRestartReport> r = quick.Restart("op-1", AdmitAll);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ReasonOf(r.status()), reason::kApiServerNotReady);
  const std::string message(r.status().message());
  EXPECT_THAT(message, HasSubstr(readyz.Url().ToString()));
  EXPECT_THAT(message, HasSubstr("HTTP 503: [-]poststarthook/rbac failed"));
  EXPECT_THAT(message, HasSubstr("within 200 ms after restarted unit kube-apiserver.service"));
}

// Found in review: a stopping agent's drain waited for a restart's /readyz
// wait (up to ready_timeout, an hour at most), past systemd's
// TimeoutStopSec, and ended in SIGKILL.
TEST_F(ApiServerRestartTest, AStoppingAgentStopsWaitingForReadyz) {
  ReadyzServer readyz({503});
  ApiServerRestarter slow = MakeAwaiting(readyz.Url(), std::chrono::minutes(10));
  std::thread stop([&] {
    testing::WaitUntil([&] { return readyz.served() >= 2; }, std::chrono::seconds(10));
    slow.StopWaiting();
  });
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<ApiServerRestartReport> r = slow.Restart("op-1", AdmitAll);
  stop.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(r.status()), reason::kAgentStopping);
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("after restarted unit kube-apiserver.service (last: HTTP 503"));
  EXPECT_EQ(services_.restarted.size(), 1u);
}

// Found in review: the record of a restart lived in memory only, so the
// coordinator asking again after a stop in the /readyz wait (or a crash)
// made the agent, back up, restart kube-apiserver a second time.
TEST_F(ApiServerRestartTest, ARestartThatRanBeforeTheAgentRestartedIsNotRunAgain) {
  const std::string record = dir_.File("apiserver-restart");
  {
    ReadyzServer unready({503});
    ApiServerRestartOptions o = MakeAwaiting(unready.Url(), std::chrono::minutes(10)).options();
    o.record_file = record;
    ApiServerRestarter before(o, {.services = services_, .steady = steady_});
    std::thread stop([&] {
      testing::WaitUntil([&] { return unready.served() >= 1; }, std::chrono::seconds(10));
      before.StopWaiting();
    });
    EXPECT_EQ(ReasonOf(before.Restart("op-1", AdmitAll).status()), reason::kAgentStopping);
    stop.join();
  }
  ASSERT_EQ(services_.restarted.size(), 1u);
  // The agent is back: a new restarter over the same state directory.
  ReadyzServer ready({200});
  ApiServerRestartOptions o = Make("systemd:kube-apiserver.service", ready.Url()).options();
  o.record_file = record;
  ApiServerRestarter after(o, {.services = services_, .steady = steady_});
  absl::StatusOr<ApiServerRestartReport> again = after.Restart("op-1", AdmitAll);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(services_.restarted.size(), 1u);
  EXPECT_EQ(again->done,
            "restarted unit kube-apiserver.service (run earlier for this step; not run again)");
  EXPECT_EQ(ready.served(), 1);  // it still waited for /readyz
  // Another step's restart runs.
  ASSERT_TRUE(after.Restart("op-2", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 2u);
}

// A restart that failed to run is not recorded as run, and an unreadable
// record is as none: asked again, the restart runs (as without a record).
TEST_F(ApiServerRestartTest, AFailedOrUnrecordedRestartRunsAgainWhenAskedAgain) {
  ReadyzServer readyz({200});
  const std::string record = dir_.File("apiserver-restart");
  ApiServerRestartOptions o = Make("systemd:kube-apiserver.service", readyz.Url()).options();
  o.record_file = record;
  services_.restart_result = MakeError(absl::StatusCode::kUnavailable, "", "job failed");
  {
    ApiServerRestarter failing(o, {.services = services_, .steady = steady_});
    EXPECT_EQ(ReasonOf(failing.Restart("op-1", AdmitAll).status()),
              reason::kApiServerRestartFailed);
  }
  services_.restart_result = absl::OkStatus();
  ApiServerRestarter after(o, {.services = services_, .steady = steady_});
  ASSERT_TRUE(after.Restart("op-1", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 2u);
  // A directory where the record should be: it cannot be read, nor written.
  ASSERT_EQ(unlink(record.c_str()), 0);
  ASSERT_EQ(mkdir(record.c_str(), 0700), 0);
  ApiServerRestarter unreadable(o, {.services = services_, .steady = steady_});
  ASSERT_TRUE(unreadable.Restart("op-1", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 3u);
}

// A restart command is recorded as started before it runs: the record as
// the command sees it is what an agent stopped or killed meanwhile leaves.
TEST_F(ApiServerRestartTest, TheCommandsStartIsRecordedBeforeItRuns) {
  ReadyzServer readyz({200});
  const std::string record = dir_.File("apiserver-restart");
  const std::string seen = dir_.File("seen");
  const std::string script = Script("restart", "cat '" + record + "' > '" + seen + "'\n");
  ApiServerRestartOptions o = Make("command:" + script, readyz.Url()).options();
  o.record_file = record;
  ApiServerRestarter restarter(o, {.services = services_, .steady = steady_});
  ASSERT_TRUE(restarter.Restart("op-1", AdmitAll).ok());
  // "op-1 started": an older agent, after a downgrade, reads no run of
  // op-1 there and runs the command again, as it always did.
  EXPECT_EQ(testing::ReadFile(seen), "op-1 started\n");
  EXPECT_EQ(testing::ReadFile(record), "op-1\nran " + script + " (exit 0)\n");
}

// Found in review: a restart command cut short by the agent's stop (a
// rename of the manifest away and back, killed between the two) ran again
// from its half-done state when asked again. It is said, not run again; a
// failure the agent saw is forgotten, and asked again runs again.
TEST_F(ApiServerRestartTest, ACommandCutShortIsReportedNotRunAgain) {
  ReadyzServer readyz({200});
  const std::string record = dir_.File("apiserver-restart");
  const std::string runs = dir_.File("runs");
  const std::string script = Script("restart", "echo run >> '" + runs + "'\n");
  ApiServerRestartOptions o = Make("command:" + script, readyz.Url()).options();
  o.record_file = record;
  testing::WriteFile(record, "op-1 started\n");  // as a kill while it ran leaves it
  ApiServerRestarter after(o, {.services = services_, .steady = steady_});
  absl::StatusOr<ApiServerRestartReport> cut = after.Restart("op-1", AdmitAll);
  EXPECT_EQ(ReasonOf(cut.status()), reason::kApiServerRestartFailed) << cut.status();
  EXPECT_THAT(std::string(cut.status().message()), HasSubstr("was cut short"));
  EXPECT_EQ(testing::ReadFile(runs), "") << "not run again";
  ASSERT_TRUE(after.Restart("op-1.retry-1", AdmitAll).ok());  // resume's new id runs
  EXPECT_EQ(testing::ReadFile(runs), "run\n");

  const std::string failing = Script("failing", "echo run >> '" + runs + "'\nexit 3\n");
  o = Make("command:" + failing, readyz.Url()).options();
  o.record_file = record;
  ApiServerRestarter failed(o, {.services = services_, .steady = steady_});
  EXPECT_EQ(ReasonOf(failed.Restart("op-2", AdmitAll).status()), reason::kApiServerRestartFailed);
  ApiServerRestarter again(o, {.services = services_, .steady = steady_});
  absl::StatusOr<ApiServerRestartReport> rerun = again.Restart("op-2", AdmitAll);
  EXPECT_THAT(std::string(rerun.status().message()), ::testing::Not(HasSubstr("cut short")));
  EXPECT_EQ(testing::ReadFile(runs), "run\nrun\nrun\n") << "a failure seen runs again";
}

// A record that cannot be written (its path a directory) is logged, not a
// failure: the command runs and the restart is answered; asked again by an
// agent started afresh, it runs again, as without a record.
TEST_F(ApiServerRestartTest, ACommandRunsWhenItsStartCannotBeRecorded) {
  ReadyzServer readyz({200});
  const std::string record = dir_.File("apiserver-restart");
  ASSERT_EQ(mkdir(record.c_str(), 0700), 0);
  const std::string runs = dir_.File("runs");
  const std::string script = Script("restart", "echo run >> '" + runs + "'\n");
  ApiServerRestartOptions o = Make("command:" + script, readyz.Url()).options();
  o.record_file = record;
  ApiServerRestarter first(o, {.services = services_, .steady = steady_});
  ASSERT_TRUE(first.Restart("op-1", AdmitAll).ok());
  ApiServerRestarter again(o, {.services = services_, .steady = steady_});
  ASSERT_TRUE(again.Restart("op-1", AdmitAll).ok());
  EXPECT_EQ(testing::ReadFile(runs), "run\nrun\n");
}

TEST_F(ApiServerRestartTest, WithoutAMethodTheNodeSaysSoAndNothingIsAdmitted) {
  ApiServerRestarter restarter(ApiServerRestartOptions{},
                               {.services = services_, .steady = steady_});
  bool admitted = false;
  absl::StatusOr<ApiServerRestartReport> r =
      restarter.Restart("op-1", [&](const std::function<void()>&) {
        admitted = true;
        return absl::OkStatus();
      });
  EXPECT_EQ(ReasonOf(r.status()), reason::kApiServerRestartUnconfigured);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("apiserver.restart"));
  EXPECT_FALSE(admitted);
}

TEST_F(ApiServerRestartTest, ARepeatedRestartIdIsAnsweredWithoutRestartingAgain) {
  ReadyzServer readyz({200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  ASSERT_TRUE(restarter.Restart("op-1", AdmitAll).ok());
  absl::StatusOr<ApiServerRestartReport> again = restarter.Restart("op-1", AdmitAll);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->done, "restarted unit kube-apiserver.service");
  EXPECT_EQ(services_.restarted.size(), 1u);
  ASSERT_TRUE(restarter.Restart("op-2", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 2u);
}

// Found in review: the id, from the network, went unchecked into the
// restarter's memory, messages and logs (up to the gRPC message bound).
TEST_F(ApiServerRestartTest, AMalformedRestartIdIsRefusedAndNothingRestarts) {
  ReadyzServer readyz({200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  for (const std::string& bad : {std::string(300, 'a'), std::string("op/../1"),
                                 std::string("op 1\n")}) {
    absl::StatusOr<ApiServerRestartReport> r = restarter.Restart(bad, AdmitAll);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(ReasonOf(r.status()), reason::kInvalidOperationId) << bad;
  }
  EXPECT_TRUE(services_.restarted.empty());
  EXPECT_TRUE(restarter.Restart("plan-1.cp-2.swap.7.apiserver", AdmitAll).ok());
}

TEST_F(ApiServerRestartTest, AnUnnamedRestartRunsEveryTime) {
  ReadyzServer readyz({200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  ASSERT_TRUE(restarter.Restart("", AdmitAll).ok());
  ASSERT_TRUE(restarter.Restart("", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 2u);
}

// Starts restart `id` on a thread of its own, held inside its admission
// until `release`; returns once it is held there.
std::thread RestartHeldUntil(ApiServerRestarter& restarter, const std::string& id,
                             std::atomic<bool>& release) {
  auto entered = std::make_shared<std::atomic<bool>>(false);
  std::thread held([&restarter, id, &release, entered] {
    EXPECT_TRUE(restarter
                    .Restart(id,
                             [&](const std::function<void()>& work) {
                               *entered = true;
                               while (!release) std::this_thread::yield();
                               work();
                               return absl::OkStatus();
                             })
                    .ok());
  });
  while (!*entered) std::this_thread::yield();
  return held;
}

TEST_F(ApiServerRestartTest, ARequestForTheRestartRunningNowWaitsForItsAnswer) {
  ReadyzServer readyz({200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  std::atomic<bool> release{false};
  std::thread first = RestartHeldUntil(restarter, "op-1", release);
  absl::StatusOr<ApiServerRestartReport> other = restarter.Restart("op-2", AdmitAll);
  EXPECT_EQ(ReasonOf(other.status()), reason::kOperationInProgress);
  std::thread again([&] { EXPECT_TRUE(restarter.Restart("op-1", AdmitAll).ok()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release = true;
  first.join();
  again.join();
  EXPECT_EQ(services_.restarted.size(), 1u);
}

// Found in review: a request for the restart running now waited for its
// whole length, so a caller asking again and again parked a thread each
// time. Past repeat_wait it is told to ask again; the restart runs once.
TEST_F(ApiServerRestartTest, ARequestForTheRestartRunningNowWaitsOnlySoLong) {
  ReadyzServer readyz({200});
  ApiServerRestartOptions o = Make("systemd:kube-apiserver.service", readyz.Url()).options();
  o.repeat_wait = std::chrono::milliseconds(100);
  ApiServerRestarter restarter(o, {.services = services_, .steady = steady_});
  std::atomic<bool> release{false};
  std::thread first = RestartHeldUntil(restarter, "op-1", release);
  const auto asked = std::chrono::steady_clock::now();
  absl::StatusOr<ApiServerRestartReport> again = restarter.Restart("op-1", AdmitAll);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable) << again.status();
  EXPECT_EQ(ReasonOf(again.status()), reason::kOperationInProgress);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, std::chrono::seconds(5));
  release = true;
  first.join();
  EXPECT_TRUE(restarter.Restart("op-1", AdmitAll).ok()) << "answered from the run";
  EXPECT_EQ(services_.restarted.size(), 1u);
}

TEST_F(ApiServerRestartTest, ARefusedAdmissionRunsNothingAndIsNotRemembered) {
  ReadyzServer readyz({200});
  ApiServerRestarter restarter = Make("systemd:kube-apiserver.service", readyz.Url());
  absl::StatusOr<ApiServerRestartReport> refused =
      restarter.Restart("op-1", [](const std::function<void()>&) {
        return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotInFlight,
                         "plan record 2/7 names cp-2");
      });
  EXPECT_EQ(ReasonOf(refused.status()), reason::kNotInFlight);
  EXPECT_TRUE(services_.restarted.empty());
  ASSERT_TRUE(restarter.Restart("op-1", AdmitAll).ok());
  EXPECT_EQ(services_.restarted.size(), 1u);
}

}  // namespace
}  // namespace kmsfleet
