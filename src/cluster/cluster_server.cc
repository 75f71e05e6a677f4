#include "kmsfleet/cluster/cluster_server.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/health_check_service_server_builder_option.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_join.h"
#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/caller_auth.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/peer.grpc.pb.h"

namespace kmsfleet {
namespace {

// Two plan payloads and their envelope; anything larger is refused by gRPC
// before a handler sees it.
constexpr int kMaxMessageBytes = static_cast<int>(kMaxPeerMessageBytes);

// Peer.Send speaks for the member named in the message: that name must be
// one the caller's certificate carries (CheckCall already made it a member).
absl::Status CheckClaim(PeerNode& node, const CallerPolicy& policy,
                        grpc::ServerContext& context, const std::string& claimed) {
  if (policy.local) return absl::OkStatus();
  std::vector<std::string> names = PeerNamesOf(context);
  if (std::find(names.begin(), names.end(), claimed) != names.end()) {
    return absl::OkStatus();
  }
  std::string certified = names.empty() ? "(none)" : absl::StrJoin(names, ",");
  std::string sent = claimed.substr(0, 253);
  absl::Status s = MakeError(
      absl::StatusCode::kPermissionDenied, reason::kPeerIdentityMismatch,
      "Peer.Send refused by " + node.self() + ": caller certificate names " + certified +
          ", not '" + sent + "'",
      {{"claimed", sent}, {"certified", certified}});
  Log(LogLevel::kWarn, "peer call refused",
      {{"node", node.self()}, {"call", "Peer.Send"}, {"peer", context.peer()},
       {"claimed", sent}, {"certified", certified}, {"reason", ReasonOf(s)}});
  return s;
}

class PeerService final : public v1::Peer::Service {
 public:
  PeerService(PeerNode& node, CallerPolicy policy) : node_(node), policy_(std::move(policy)) {}

  // kmsfleet.v1.Peer
  grpc::Status Send(grpc::ServerContext* context, const v1::PeerMessage* m,
                    v1::SendReply*) override {
    if (absl::Status s = CheckCall(policy_, *context, "/kmsfleet.v1.Peer/Send"); !s.ok()) {
      return ToGrpcStatus(s);
    }
    if (absl::Status s = CheckClaim(node_, policy_, *context, m->from()); !s.ok()) {
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
    if (absl::Status s = CheckCall(policy_, *context, "/kmsfleet.v1.Peer/Release"); !s.ok()) {
      return ToGrpcStatus(s);
    }
    const Caller caller = CallerOf(policy_, *context);
    if (absl::Status s = AuthorizeHandoffQuery(caller, node_.voters()); !s.ok()) {
      Log(LogLevel::kWarn, "call refused",
          {{"node", node_.self()}, {"method", "/kmsfleet.v1.Peer/Release"},
           {"peer", context->peer()}, {"caller", caller.name},
           {"certified", caller.certified}, {"reason", ReasonOf(s)}});
      return ToGrpcStatus(s);
    }
    absl::StatusOr<v1::ReleaseReply> r = node_.Release(req->fence());
    if (!r.ok()) return ToGrpcStatus(r.status());
    *reply = *r;
    return grpc::Status::OK;
  }

 private:
  PeerNode& node_;
  CallerPolicy policy_;
};

}  // namespace

ClusterServer::ClusterServer(PeerNode& node, const UploadStore& uploads, Coordinator* coordinator)
    : node_(node), uploads_(uploads), coordinator_(coordinator) {}

ClusterServer::~ClusterServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status ClusterServer::Start(const std::string& listen,
                                  std::shared_ptr<grpc::ServerCredentials> credentials,
                                  const CallerPolicy& policy,
                                  const std::vector<grpc::Service*>& extra_services) {
  peer_service_ = std::make_unique<PeerService>(node_, policy);
  fleet_service_ = NewFleetService(node_, policy, coordinator_, uploads_);
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  // Only services whose every method checks its caller are served here:
  // no default health service (it cannot check), and kmsfleetd starts this
  // listener before the agent server turns on reflection for later builders.
  builder.SetOption(std::make_unique<grpc::HealthCheckServiceServerBuilderOption>(nullptr));
  // gRPC binds with SO_REUSEPORT by default: a second process could then
  // share this port and answer peers as this node. A port in use must fail.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  AcceptPeerKeepalive(builder);
  builder.AddListeningPort(listen, credentials, &port_);
  builder.RegisterService(peer_service_.get());
  builder.RegisterService(fleet_service_.get());
  for (grpc::Service* extra : extra_services) builder.RegisterService(extra);
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
