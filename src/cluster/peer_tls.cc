#include "kmsfleet/cluster/peer_tls.h"

#include <grpcpp/security/server_credentials.h>

#include "absl/strings/cord.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxPemBytes = 1 << 20;

absl::StatusOr<std::string> ReadPem(const std::string& key, const std::string& path) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxPemBytes, Symlinks::kFollow);
  if (!text.ok() || text->empty()) {
    std::string why = text.ok() ? "it is empty" : std::string(text.status().message());
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "cluster.tls." + key + ": cannot read PEM file " + path + ": " + why,
                     {{"key", "cluster.tls." + key}, {"path", path}});
  }
  return *text;
}

}  // namespace

absl::StatusOr<PeerCredentials> LoadPeerCredentials(const ClusterConfig& cluster) {
  PeerCredentials creds;
  if (cluster.insecure) {
    creds.server = grpc::InsecureServerCredentials();
    creds.channel = grpc::InsecureChannelCredentials();
    creds.insecure = true;
    return creds;
  }
  absl::StatusOr<std::string> ca = ReadPem("ca", cluster.tls.ca);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert = ReadPem("cert", cluster.tls.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("key", cluster.tls.key);
  if (!key.ok()) return key.status();

  // A presented certificate must chain to the CA (else the handshake
  // fails); a caller without one gets through the handshake only so that
  // every service's entry check refuses it with a reason and a log line
  // (caller_auth: anonymous is UNAUTHENTICATED for every method).
  grpc::SslServerCredentialsOptions server(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  server.pem_root_certs = *ca;
  server.pem_key_cert_pairs.push_back({*key, *cert});
  creds.server = grpc::SslServerCredentials(server);

  grpc::SslCredentialsOptions client;
  client.pem_root_certs = *ca;
  client.pem_private_key = *key;
  client.pem_cert_chain = *cert;
  creds.channel = grpc::SslCredentials(client);
  return creds;
}

grpc::ChannelArguments PeerChannelArguments(const std::string& peer,
                                            const std::optional<PeerKeepalive>& keepalive) {
  grpc::ChannelArguments args;
  // The peer is dialled by address, but its certificate must name it.
  args.SetSslTargetNameOverride(peer);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetMaxReceiveMessageSize(2 << 20);
  if (!keepalive) return args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(keepalive->interval.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(keepalive->timeout.count()));
  // gRPC stops pinging after two pings with no data sent between them
  // (its default): a call that waits for minutes without a byte either
  // way, a restart's, would be guarded for its first two intervals only.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return args;
}

void AcceptPeerKeepalive(grpc::ServerBuilder& builder, const PeerKeepalive& keepalive) {
  // Half the interval: timers are not exact, and a strike closes calls.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(keepalive.interval.count() / 2));
  // A ping may cross a call's end on the wire and arrive with none open.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
}

std::vector<std::string> PeerNamesOf(const grpc::ServerContext& context) {
  std::vector<std::string> names;
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return names;
  for (const grpc::string_ref& san :
       auth->FindPropertyValues("x509_subject_alternative_name")) {
    names.emplace_back(san.data(), san.size());
  }
  return names;
}

Caller CallerOf(const CallerPolicy& policy, const grpc::ServerContext& context) {
  if (policy.local) return Caller{.kind = CallerKind::kLocal};
  return ClassifyCertificate(PeerNamesOf(context), policy.members,
                             policy.operator_trust_domain);
}

absl::Status CheckCall(const CallerPolicy& policy, const grpc::ServerContext& context,
                       std::string_view method) {
  Caller caller = CallerOf(policy, context);
  absl::Status s = AuthorizeCall(method, caller);
  if (!s.ok()) {
    Log(LogLevel::kWarn, "call refused",
        {{"node", policy.self}, {"method", std::string(method)},
         {"peer", context.peer()}, {"caller_kind", std::string(CallerKindName(caller.kind))},
         {"caller", caller.name}, {"certified", caller.certified},
         {"reason", ReasonOf(s)}});
  }
  return s;
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  std::string details;
  if (absl::optional<absl::Cord> info = status.GetPayload(kErrorInfoTypeUrl)) {
    details = std::string(*info);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()), details);
}

absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& peer) {
  if (status.ok()) return absl::OkStatus();
  v1::ErrorInfo info;
  if (!status.error_details().empty() && info.ParseFromString(status.error_details()) &&
      !info.reason().empty()) {
    absl::Status out(static_cast<absl::StatusCode>(status.error_code()),
                     status.error_message());
    out.SetPayload(kErrorInfoTypeUrl, absl::Cord(status.error_details()));
    return out;
  }
  return MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable,
                   "agent " + peer + " did not answer: " + status.error_message(),
                   {{"node", peer}});
}

}  // namespace kmsfleet
