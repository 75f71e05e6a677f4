// FleetActions against an in-process Agent service: the deadline each
// call is given.
#include "fleet_actions.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>

#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {
namespace {

using std::chrono::milliseconds;

// Answers Stage at once, recording how long the caller gave the call.
class DeadlineRecorder final : public v1::Agent::Service {
 public:
  grpc::Status Stage(grpc::ServerContext* context, const v1::StageRequest*,
                     v1::StageResponse*) override {
    given_ms_ = std::chrono::duration_cast<milliseconds>(context->deadline() -
                                                         std::chrono::system_clock::now())
                    .count();
    return grpc::Status::OK;
  }
  int64_t given_ms() const { return given_ms_; }

 private:
  std::atomic<int64_t> given_ms_{-1};
};

// Found in review: Stage was given ten plain call timeouts (30 s), so a
// 100 MB artifact fetched by several nodes over a slow link never staged:
// each attempt was cut and started again from its first byte.
TEST(FleetActionsTest, AStageCallIsGivenTheStageTimeoutNotAPlainCallsBound) {
  DeadlineRecorder agent;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&agent);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  FleetActions actions({{"cp-1", "127.0.0.1:" + std::to_string(port)}},
                       grpc::InsecureChannelCredentials(), milliseconds(3000),
                       milliseconds(16000), std::chrono::minutes(11));
  PlanAction stage;
  stage.kind = ActionKind::kStage;
  stage.node = "cp-1";
  stage.version = "0.2.0";
  ActionResult r = actions.Run(stage, v1::Fence(), v1::PlanSettings(), "", [] { return true; });
  EXPECT_TRUE(r.status.ok()) << r.status;
  EXPECT_GT(agent.given_ms(), std::chrono::duration_cast<milliseconds>(
                                  std::chrono::minutes(10)).count());
  server->Shutdown(std::chrono::system_clock::now());
}

}  // namespace
}  // namespace kmsfleet
