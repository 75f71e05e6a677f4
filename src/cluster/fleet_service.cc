// kmsfleet.v1.Fleet: the operator's API (fleet.proto). Every method checks
// its caller first (caller_auth.h); plan changes are the coordinator's.
#include <thread>

#include "kmsfleet/cluster/cluster_server.h"
#include "kmsfleet/cluster/coordinator.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {
namespace {

// How often WatchPlan sends the view even when nothing changed, so that a
// client sees elapsed times move and notices a dead stream.
constexpr std::chrono::seconds kWatchRefresh{1};
// How often a follower asks the coordinator for a watcher.
constexpr std::chrono::milliseconds kFollowerPoll{100};

class FleetService final : public v1::Fleet::Service {
 public:
  FleetService(PeerNode& node, CallerPolicy policy, Coordinator* coordinator)
      : node_(node), policy_(std::move(policy)), coordinator_(coordinator) {}

  grpc::Status GetLeader(grpc::ServerContext* context, const v1::GetLeaderRequest*,
                         v1::LeaderView* view) override {
    if (absl::Status s = Check(*context, "GetLeader"); !s.ok()) return ToGrpcStatus(s);
    *view = node_.View();
    return grpc::Status::OK;
  }

  grpc::Status ProposePlan(grpc::ServerContext* context, const v1::ProposePlanRequest* req,
                           v1::ProposePlanReply* reply) override {
    if (absl::Status s = Check(*context, "ProposePlan"); !s.ok()) return ToGrpcStatus(s);
    absl::StatusOr<v1::Fence> fence =
        node_.ProposePlan(req->in_flight(), req->payload(), std::chrono::seconds(5));
    if (!fence.ok()) return ToGrpcStatus(WithLeader(fence.status()));
    *reply->mutable_fence() = *fence;
    return grpc::Status::OK;
  }

  grpc::Status StartUpgrade(grpc::ServerContext* context, const v1::UpgradeRequest* req,
                            v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "StartUpgrade"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    return Reply(coordinator_->StartUpgrade(*req, Who(*context)), reply);
  }

  grpc::Status CommandPlan(grpc::ServerContext* context, const v1::PlanCommandRequest* req,
                           v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "CommandPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    return Reply(coordinator_->Command(*req, Who(*context)), reply);
  }

  grpc::Status GetPlan(grpc::ServerContext* context, const v1::GetPlanRequest*,
                       v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "GetPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    *reply = coordinator_->CoordinatorView();
    return grpc::Status::OK;
  }

  grpc::Status WatchPlan(grpc::ServerContext* context, const v1::GetPlanRequest*,
                         grpc::ServerWriter<v1::PlanView>* writer) override {
    if (absl::Status s = Check(*context, "WatchPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    uint64_t version = 0;
    while (!context->IsCancelled()) {
      if (node_.View().role() != "Leader") {
        // A follower relays the coordinator's view, polled.
        if (!writer->Write(coordinator_->CoordinatorView())) break;
        std::this_thread::sleep_for(kFollowerPoll);
        continue;
      }
      if (!writer->Write(coordinator_->View(&version))) break;
      coordinator_->WaitForChange(version, kWatchRefresh);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListPlans(grpc::ServerContext* context, const v1::ListPlansRequest*,
                         v1::PlanHistory* reply) override {
    if (absl::Status s = Check(*context, "ListPlans"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    *reply = coordinator_->History();
    return grpc::Status::OK;
  }

 private:
  absl::Status Check(const grpc::ServerContext& context, const std::string& method) {
    return CheckCall(policy_, context, "/kmsfleet.v1.Fleet/" + method);
  }

  absl::Status HaveCoordinator() const {
    if (coordinator_ != nullptr) return absl::OkStatus();
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     node_.self() + " runs no coordinator runtime");
  }

  // Who asked, for the plan's audit.
  std::string Who(const grpc::ServerContext& context) const {
    Caller caller = CallerOf(policy_, context);
    switch (caller.kind) {
      case CallerKind::kLocal: return "local root";
      case CallerKind::kOperator: return "operator " + caller.name;
      default: return std::string(CallerKindName(caller.kind)) + " " + caller.name;
    }
  }

  // A follower's NOT_LEADER names the leader, so the caller can go there.
  absl::Status WithLeader(const absl::Status& s) {
    if (ReasonOf(s) != reason::kNotLeader) return s;
    v1::LeaderView view = node_.View();
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     node_.self() + " is not the coordinator; ask " +
                         (view.leader().empty() ? "again once one is elected"
                                                : view.leader() + " at " + view.leader_address()),
                     {{"leader", view.leader()}, {"leader_address", view.leader_address()}});
  }

  grpc::Status Reply(absl::StatusOr<v1::PlanView> view, v1::PlanView* reply) {
    if (!view.ok()) return ToGrpcStatus(WithLeader(view.status()));
    *reply = *std::move(view);
    return grpc::Status::OK;
  }

  PeerNode& node_;
  CallerPolicy policy_;
  Coordinator* coordinator_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewFleetService(PeerNode& node, CallerPolicy policy,
                                               Coordinator* coordinator) {
  return std::make_unique<FleetService>(node, std::move(policy), coordinator);
}

}  // namespace kmsfleet
