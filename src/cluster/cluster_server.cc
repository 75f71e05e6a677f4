#include "kmsfleet/cluster_server.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_join.h"
#include "kmsfleet/log.h"
#include "kmsfleet/peer_tls.h"
#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"
#include "kmsfleet/v1/peer.grpc.pb.h"

namespace kmsfleet {
namespace {

// Two plan payloads and their envelope; anything larger is refused by gRPC
// before a handler sees it.
constexpr int kMaxMessageBytes = 2 << 20;

// Checks the caller's certificate: with `claimed` set it must name exactly
// that member, otherwise any member will do.
absl::Status CheckCaller(PeerNode& node, grpc::ServerContext& context, bool check,
                         const std::optional<std::string>& claimed, std::string_view call) {
  if (!check) return absl::OkStatus();
  std::vector<std::string> names = PeerNamesOf(context);
  bool ok = !claimed
                ? std::any_of(names.begin(), names.end(),
                              [&](const std::string& n) { return node.IsMember(n); })
                : std::find(names.begin(), names.end(), *claimed) != names.end();
  if (ok) return absl::OkStatus();
  std::string certified = names.empty() ? "(none)" : absl::StrJoin(names, ",");
  std::string sent = claimed ? claimed->substr(0, 253) : std::string();
  absl::Status s = MakeError(
      absl::StatusCode::kPermissionDenied, reason::kPeerIdentityMismatch,
      std::string(call) + " refused by " + node.self() + ": caller certificate names " +
          certified + (claimed ? ", not '" + sent + "'" : ", no member"),
      {{"claimed", sent}, {"certified", certified}});
  Log(LogLevel::kWarn, "peer call refused",
      {{"node", node.self()}, {"call", std::string(call)}, {"peer", context.peer()},
       {"claimed", sent}, {"certified", certified}, {"reason", ReasonOf(s)}});
  return s;
}

class PeerService final : public v1::Peer::Service {
 public:
  PeerService(PeerNode& node, bool check) : node_(node), check_(check) {}

  // kmsfleet.v1.Peer
  grpc::Status Send(grpc::ServerContext* context, const v1::PeerMessage* m,
                    v1::SendReply*) override {
    if (absl::Status s = CheckCaller(node_, *context, check_, m->from(), "Peer.Send");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    absl::Status s = node_.Receive(*m);
    if (!s.ok()) {
      Log(LogLevel::kWarn, "peer message refused",
          {{"node", node_.self()}, {"peer", context->peer()}, {"reason", ReasonOf(s)},
           {"error", std::string(s.message())}});
    }
    return ToGrpcStatus(s);
  }

  grpc::Status Release(grpc::ServerContext* context, const v1::ReleaseRequest* req,
                       v1::ReleaseReply* reply) override {
    if (absl::Status s = CheckCaller(node_, *context, check_, std::nullopt, "Peer.Release");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    absl::StatusOr<v1::ReleaseReply> r = node_.Release(req->fence());
    if (!r.ok()) return ToGrpcStatus(r.status());
    *reply = *r;
    return grpc::Status::OK;
  }

 private:
  PeerNode& node_;
  bool check_;
};

class FleetService final : public v1::Fleet::Service {
 public:
  FleetService(PeerNode& node, bool check) : node_(node), check_(check) {}

  // kmsfleet.v1.Fleet
  grpc::Status GetLeader(grpc::ServerContext* context, const v1::GetLeaderRequest*,
                         v1::LeaderView* view) override {
    if (absl::Status s = CheckCaller(node_, *context, check_, std::nullopt, "Fleet.GetLeader");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    *view = node_.View();
    return grpc::Status::OK;
  }

  grpc::Status ProposePlan(grpc::ServerContext* context, const v1::ProposePlanRequest* req,
                           v1::ProposePlanReply* reply) override {
    if (absl::Status s = CheckCaller(node_, *context, check_, std::nullopt, "Fleet.ProposePlan");
        !s.ok()) {
      return ToGrpcStatus(s);
    }
    absl::StatusOr<v1::Fence> fence =
        node_.ProposePlan(req->in_flight(), req->payload(), std::chrono::seconds(5));
    if (!fence.ok() && ReasonOf(fence.status()) == reason::kNotLeader) {
      // Answer with the leader's address so the caller can go there.
      v1::LeaderView view = node_.View();
      return ToGrpcStatus(MakeError(
          absl::StatusCode::kUnavailable, reason::kNotLeader,
          node_.self() + " is not the coordinator; ask " +
              (view.leader().empty() ? "again once one is elected"
                                     : view.leader() + " at " + view.leader_address()),
          {{"leader", view.leader()}, {"leader_address", view.leader_address()}}));
    }
    if (!fence.ok()) return ToGrpcStatus(fence.status());
    *reply->mutable_fence() = *fence;
    return grpc::Status::OK;
  }

 private:
  PeerNode& node_;
  bool check_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewFleetService(PeerNode& node, bool check_identity) {
  return std::make_unique<FleetService>(node, check_identity);
}

ClusterServer::ClusterServer(PeerNode& node) : node_(node) {}

ClusterServer::~ClusterServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status ClusterServer::Start(const std::string& listen,
                                  std::shared_ptr<grpc::ServerCredentials> credentials,
                                  bool insecure) {
  peer_service_ = std::make_unique<PeerService>(node_, !insecure);
  fleet_service_ = NewFleetService(node_, !insecure);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.AddListeningPort(listen, credentials, &port_);
  builder.RegisterService(peer_service_.get());
  builder.RegisterService(fleet_service_.get());
  server_ = builder.BuildAndStart();
  if (!server_ || port_ == 0) {
    server_.reset();
    return MakeError(absl::StatusCode::kUnavailable, reason::kInvalidConfig,
                     "cannot bind the cluster listener " + listen, {{"listen", listen}});
  }
  return absl::OkStatus();
}

void ClusterServer::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
}

}  // namespace kmsfleet
