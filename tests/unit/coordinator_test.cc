// The coordinator's operator commands, in-process: one voter (this node)
// leads at once, and no agent is reachable (no TLS), which leaves the
// plan loop's observation round and its OpenBao probe as the only work.
#include "kmsfleet/cluster/coordinator.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

#include <fstream>

#include "cli/upload_release.h"
#include "kmsfleet/cluster/cluster_server.h"
#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/cluster/upload_store.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"
#include "loopback_server.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using testing::TempDir;
using testing::WaitUntil;

class CoordinatorCommandTest : public ::testing::Test {
 protected:
  static constexpr std::chrono::milliseconds kTick{300};

  void SetUp() override {
    PeerNodeOptions options;
    options.election = ElectionConfig{.self = "a", .voters = {"a"}, .learners = {}};
    options.tick = std::chrono::milliseconds(5);
    options.state_dir = dir_.File("state");
    options.handoff_outcome = [](const v1::Fence&) {
      return HandoffAnswer{v1::HANDOFF_NEVER_STARTED, "scripted"};
    };
    absl::StatusOr<std::unique_ptr<PeerNode>> node = PeerNode::Open(std::move(options));
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = std::move(*node);
    node_->Start();
    CoordinatorOptions c;
    c.self = "a";
    c.voters = {"a"};
    // Long enough that the loop, between two rounds, is found waiting.
    c.tick = kTick;
    c.answer_timeout = AnswerTimeout();
    c.now_unix_ms = [] { return int64_t{1'800'000'000'000}; };
    c.random = [] { return uint64_t{42}; };
    c.probe_openbao = [this]() -> std::optional<OpenBaoProbe> {
      std::unique_lock lock(mu_);
      ++probes_;
      probed_.notify_all();
      released_.wait(lock, [this] { return !hold_; });
      return std::nullopt;
    };
    c.on_refusal = [this](std::string_view reason) {
      std::lock_guard lock(mu_);
      refusals_.emplace_back(reason);
    };
    coordinator_ = std::make_unique<Coordinator>(*node_, std::move(c));
    coordinator_->Start();
  }
  virtual std::chrono::milliseconds AnswerTimeout() const {
    return std::chrono::milliseconds(300);
  }
  void TearDown() override {
    Hold(false);
    coordinator_->Stop();
    node_->Stop();
  }

  void Hold(bool hold) {
    std::lock_guard lock(mu_);
    hold_ = hold;
    released_.notify_all();
  }
  // Waits until the loop has entered `more` further probes.
  bool WaitForProbes(int more) {
    std::unique_lock lock(mu_);
    const int target = probes_ + more;
    return probed_.wait_for(lock, std::chrono::seconds(5), [&] { return probes_ >= target; });
  }
  std::vector<std::string> Refusals() {
    std::lock_guard lock(mu_);
    return refusals_;
  }
  absl::StatusOr<v1::PlanView> Pause(const CommandCaller& caller = {}) {
    v1::PlanCommandRequest pause;
    pause.set_kind(v1::PLAN_COMMAND_PAUSE);
    return coordinator_->Command(pause, "local root", caller);
  }
  int Probes() {
    std::lock_guard lock(mu_);
    return probes_;
  }

  TempDir dir_;
  std::unique_ptr<PeerNode> node_;
  std::unique_ptr<Coordinator> coordinator_;
  std::mutex mu_;
  std::condition_variable probed_, released_;
  int probes_ = 0;
  bool hold_ = false;
  std::vector<std::string> refusals_;
};

// Found in review: a command the loop did not take in time was answered
// "check the plan" yet stayed queued, and took effect whenever the loop
// came back to it (an upgrade could start minutes after its caller gave
// up). It is withdrawn instead, and says so.
TEST_F(CoordinatorCommandTest, ACommandNotTakenInTimeIsWithdrawnAndNeverApplied) {
  ASSERT_TRUE(WaitForProbes(2)) << "the coordinator leads and observes";
  // Taken at once, a pause without a plan is refused, and counted.
  absl::StatusOr<v1::PlanView> answered = Pause();
  ASSERT_FALSE(answered.ok());
  const std::string refused = ReasonOf(answered.status());
  EXPECT_NE(refused, reason::kCommandNotTaken);
  ASSERT_EQ(Refusals(), std::vector<std::string>{refused});

  Hold(true);
  ASSERT_TRUE(WaitForProbes(1)) << "the loop is inside a probe";
  absl::StatusOr<v1::PlanView> late = Pause();
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ReasonOf(late.status()), reason::kCommandNotTaken) << late.status();
  EXPECT_NE(std::string(late.status().message()).find("withdrawn"), std::string::npos);
  Hold(false);
  ASSERT_TRUE(WaitForProbes(3)) << "the loop goes on";
  EXPECT_EQ(Refusals(), std::vector<std::string>{refused}) << "the withdrawn pause never ran";
}

// Found in review: any command with dry_run set was answered as a
// rollback's dry run; from a raw client a pause was silently not applied.
TEST_F(CoordinatorCommandTest, OnlyARollbackHasADryRun) {
  ASSERT_TRUE(WaitForProbes(2)) << "the coordinator leads and observes";
  v1::PlanCommandRequest pause;
  pause.set_kind(v1::PLAN_COMMAND_PAUSE);
  pause.set_dry_run(true);
  absl::StatusOr<v1::PlanView> answered = coordinator_->Command(pause, "local root", {});
  ASSERT_FALSE(answered.ok());
  EXPECT_EQ(ReasonOf(answered.status()), reason::kCommandNotApplicable) << answered.status();
  EXPECT_NE(answered.status().message().find("PLAN_COMMAND_PAUSE"), std::string::npos)
      << answered.status();
  v1::PlanCommandRequest rollback;
  rollback.set_kind(v1::PLAN_COMMAND_ROLLBACK);
  rollback.set_dry_run(true);
  absl::StatusOr<v1::PlanView> evaluated = coordinator_->Command(rollback, "local root", {});
  EXPECT_NE(ReasonOf(evaluated.status()), reason::kCommandNotApplicable) << evaluated.status();
}

// Found in review: a method sent in an upgrade's settings was recorded
// as the plan's and never run (each agent restarts its own configured
// way). It is refused, before anything else is judged.
TEST_F(CoordinatorCommandTest, AnUpgradeNamingARestartMethodOfItsOwnIsRefused) {
  ASSERT_TRUE(WaitForProbes(2)) << "the coordinator leads and observes";
  v1::UpgradeRequest upgrade;
  upgrade.set_target_version("0.2.0");
  upgrade.mutable_settings()->set_apiserver_restart_method("command:/tmp/restart");
  absl::StatusOr<v1::PlanView> answered = coordinator_->StartUpgrade(upgrade, "local root", {});
  ASSERT_FALSE(answered.ok());
  EXPECT_EQ(ReasonOf(answered.status()), reason::kInvalidArgument) << answered.status();
  EXPECT_NE(answered.status().message().find("command:/tmp/restart"), std::string::npos)
      << answered.status();
}

// The coordinator's own wait far longer than the caller's.
class CoordinatorCallerTest : public CoordinatorCommandTest {
  std::chrono::milliseconds AnswerTimeout() const override { return std::chrono::seconds(20); }
};

// Found in review: kmsfleetctl gave up (30 s) before the coordinator
// answered (up to 40 s), and printed AGENT_UNREACHABLE for a command that
// could still apply. The answer reaches a caller whose deadline is nearer
// than the coordinator's own wait: withdrawn a second before it.
TEST_F(CoordinatorCallerTest, ACommandIsWithdrawnBeforeItsCallersDeadline) {
  ASSERT_TRUE(WaitForProbes(2));
  Hold(true);
  ASSERT_TRUE(WaitForProbes(1));
  const auto start = std::chrono::system_clock::now();
  absl::StatusOr<v1::PlanView> late =
      Pause({start + std::chrono::milliseconds(1200), {}});
  const auto took = std::chrono::system_clock::now() - start;
  EXPECT_EQ(ReasonOf(late.status()), reason::kCommandNotTaken) << late.status();
  EXPECT_LT(took, std::chrono::milliseconds(1200)) << "the answer came after the deadline";
  Hold(false);
  ASSERT_TRUE(WaitForProbes(3));
  EXPECT_TRUE(Refusals().empty()) << "the withdrawn pause never ran";
}

// Found in review: a call whose deadline left no time to answer was still
// queued, and an idle loop could apply it while the caller heard nothing.
TEST_F(CoordinatorCallerTest, ACallWithNoTimeToAnswerIsNotQueued) {
  ASSERT_TRUE(WaitForProbes(2));
  absl::StatusOr<v1::PlanView> late =
      Pause({std::chrono::system_clock::now() + std::chrono::milliseconds(500), {}});
  EXPECT_EQ(ReasonOf(late.status()), reason::kCommandNotTaken) << late.status();
  ASSERT_TRUE(WaitForProbes(3));
  EXPECT_TRUE(Refusals().empty()) << "the pause never ran";
}

// A caller that went away (a cancelled call) leaves nothing queued behind.
TEST_F(CoordinatorCallerTest, ACommandWhoseCallerIsGoneIsWithdrawn) {
  ASSERT_TRUE(WaitForProbes(2));
  Hold(true);
  ASSERT_TRUE(WaitForProbes(1));
  std::atomic<bool> gone{false};
  std::thread cancel([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = true;
  });
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<v1::PlanView> late = Pause({std::chrono::system_clock::time_point::max(),
                                             [&] { return gone.load(); }});
  const auto took = std::chrono::steady_clock::now() - start;
  cancel.join();
  EXPECT_EQ(ReasonOf(late.status()), reason::kCommandNotTaken) << late.status();
  EXPECT_LT(took, std::chrono::seconds(5)) << "waited for a caller that was gone";
  Hold(false);
  ASSERT_TRUE(WaitForProbes(3));
  EXPECT_TRUE(Refusals().empty()) << "the withdrawn pause never ran";
}

// Taken, the command is being decided: it may still take effect, and the
// caller is told so rather than that nothing changed.
TEST_F(CoordinatorCommandTest, ACommandTakenButNotAnsweredMayStillApply) {
  // Submitted while the loop waits between rounds (a round without agents
  // takes a few ms, the wait a tick): it wakes, takes the command, and
  // stops in that round's probe.
  ASSERT_TRUE(WaitForProbes(1));
  std::this_thread::sleep_for(kTick / 6);
  Hold(true);
  absl::StatusOr<v1::PlanView> late = Pause();
  EXPECT_EQ(ReasonOf(late.status()), reason::kPlanChangePending) << late.status();
  EXPECT_NE(std::string(late.status().message()).find("may still take effect"),
            std::string::npos);
  Hold(false);
  ASSERT_TRUE(WaitUntil([&] { return !Refusals().empty(); }, std::chrono::seconds(5)))
      << "the taken pause was decided once the round went on";
}

// Found in review: each listener's Fleet service made its own upload
// store over the same directory, so a prune after an upload on one
// listener did not wait for a plan start on the other that had just found
// the upload it names. A node's services share the store they are given:
// an upload's prune waits for a hold on it taken elsewhere.
TEST_F(CoordinatorCommandTest, AnUploadsPruneWaitsForAHoldOnTheSharedStore) {
  ASSERT_TRUE(WaitUntil([&] { return node_->View().role() == "Leader"; },
                        std::chrono::seconds(5)));
  UploadStore uploads(node_->state_dir());
  std::unique_ptr<grpc::Service> fleet = NewFleetService(
      *node_, CallerPolicy{.local = true, .self = "a"}, coordinator_.get(), uploads);
  int port = 0;
  std::unique_ptr<grpc::Server> server = ServeOnLoopback(*fleet, port);
  ASSERT_NE(server, nullptr);
  const std::string file = dir_.File("checksums.txt");
  std::ofstream(file) << std::string(64, 'a') << "  bao-kms-provider_0.2.0_linux_amd64\n";
  absl::StatusOr<LocalUpload> upload = PrepareUpload("--checksums", file, UploadKind::kChecksums);
  ASSERT_TRUE(upload.ok()) << upload.status();

  // As a plan start on the other listener holds it.
  std::shared_lock<std::shared_mutex> held = uploads.HoldUploads();
  std::atomic<bool> answered{false};
  grpc::Status status;
  std::thread client([&] {
    std::unique_ptr<v1::Fleet::Stub> stub = v1::Fleet::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    v1::ArtifactRef ref;
    absl::Status local;
    status = StreamUpload(*stub, context, *upload, &ref, &local);
    answered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_FALSE(answered) << "the upload's prune ran under the hold";
  held.unlock();
  client.join();
  EXPECT_TRUE(status.ok()) << status.error_message();
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kmsfleet
