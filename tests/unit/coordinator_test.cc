// The coordinator's operator commands, in-process: one voter (this node)
// leads at once, and no agent is reachable (no TLS), which leaves the
// plan loop's observation round and its OpenBao probe as the only work.
#include "kmsfleet/cluster/coordinator.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "process_harness.h"

namespace kmsfleet {
namespace {

using testing::TempDir;
using testing::WaitUntil;

class CoordinatorCommandTest : public ::testing::Test {
 protected:
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
    c.tick = std::chrono::milliseconds(5);
    c.answer_timeout = std::chrono::milliseconds(300);
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
  absl::StatusOr<v1::PlanView> Pause() {
    v1::PlanCommandRequest pause;
    pause.set_kind(v1::PLAN_COMMAND_PAUSE);
    return coordinator_->Command(pause, "local root");
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

}  // namespace
}  // namespace kmsfleet
