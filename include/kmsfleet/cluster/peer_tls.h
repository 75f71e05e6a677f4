// mTLS between agents (architecture.md §7): the fleet CA, this agent's
// certificate and key from the `cluster.tls` config. Servers verify a
// client certificate chaining to the CA (a caller without one reaches only
// the services' entry checks, which refuse it: CheckCall); clients verify that the
// server's certificate names the peer they dialled (its SAN), and servers
// accept a call only for the member named in the caller's SAN.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CLUSTER_PEER_TLS_H_
#define KMSFLEET_CLUSTER_PEER_TLS_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/cluster/cluster_config.h"
#include "kmsfleet/core/caller_auth.h"

namespace kmsfleet {

struct PeerCredentials {
  std::shared_ptr<grpc::ServerCredentials> server;
  std::shared_ptr<grpc::ChannelCredentials> channel;
  bool insecure = false;
};

// Reads the PEM files named in `cluster.tls` (each at most 1 MiB), or makes
// plain credentials when `cluster.insecure`. Errors: InvalidArgument with
// reason INVALID_CONFIG naming the key and path that could not be read.
absl::StatusOr<PeerCredentials> LoadPeerCredentials(const ClusterConfig& cluster);

// How a member channel finds, during a call, a peer that went silent
// without closing the connection (its host froze, lost power or dropped
// off the network): with a call open it pings every `interval`, and gives
// the connection up, failing its calls UNAVAILABLE, when a ping goes
// unanswered for `timeout`. Without it a call waits for its deadline: a
// kube-apiserver restart up to two hours, a Stage many minutes.
struct PeerKeepalive {
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds timeout{10000};
};

// Channel arguments for dialling `peer`: its certificate must name `peer`,
// reconnects are fast enough for failover on a LAN, and `keepalive`
// (nullopt: none, for a listener older than AcceptPeerKeepalive).
grpc::ChannelArguments PeerChannelArguments(const std::string& peer,
                                            const std::optional<PeerKeepalive>& keepalive);

// Lets a listener take the pings of members dialling with `keepalive`. By
// default a gRPC server answers a ping sooner than 5 minutes after the
// last with a strike, and after two closes the connection (GOAWAY
// too_many_pings), which would fail the very calls keepalive guards.
void AcceptPeerKeepalive(grpc::ServerBuilder& builder, const PeerKeepalive& keepalive = {});

// The subject alternative names of the verified client certificate of the
// call, or empty on a plain connection.
std::vector<std::string> PeerNamesOf(const grpc::ServerContext& context);

// How a listener identifies its callers (caller_auth.h).
struct CallerPolicy {
  // Every caller is trusted as local: the unix socket (its file mode
  // decides) or an explicitly insecure loopback listener.
  bool local = false;
  std::vector<std::string> members{};   // node names of voters and learners
  std::string operator_trust_domain{};  // "" = no operators
  std::string self{};                   // this node, for log lines
};

// The caller of `context` as `policy` sees it.
Caller CallerOf(const CallerPolicy& policy, const grpc::ServerContext& context);

// Authorises `method` (gRPC's full name) for the caller of `context`. A
// refusal is logged with the identity, method, peer address and reason,
// and returned (caller_auth.h lists the reasons).
absl::Status CheckCall(const CallerPolicy& policy, const grpc::ServerContext& context,
                       std::string_view method);

// Converts a kmsfleet error to a gRPC status: same code, same message, and
// the ErrorInfo as the binary error details.
grpc::Status ToGrpcStatus(const absl::Status& status);

// The other way round, for a call to `peer`: an answer with an ErrorInfo
// keeps its code, reason and metadata; one without (the transport failed,
// or a deadline passed) becomes Unavailable AGENT_UNREACHABLE naming the
// peer.
absl::Status FromGrpcStatus(const grpc::Status& status, const std::string& peer);

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_PEER_TLS_H_
