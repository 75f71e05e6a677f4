// The gRPC side of the election shell: kmsfleet.v1.Peer and Fleet on the
// cluster listener (mTLS unless `insecure: true`), and Fleet alone for the
// local unix socket (architecture.md §6, §7).
//
// With TLS, a call is served only for the member its certificate's SAN
// names: Peer.Send only when the message's `from` is a SAN of the caller,
// the other calls only when some SAN is a member. Every refusal is logged
// with the peer's address, the names claimed and certified, and changes
// nothing.
// Thread-compatible: Start and Shutdown from one thread.
#ifndef KMSFLEET_CLUSTER_SERVER_H_
#define KMSFLEET_CLUSTER_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <grpcpp/impl/codegen/service_type.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "kmsfleet/peer_node.h"

namespace kmsfleet {

// The Fleet service over `node`. `check_identity` requires a member's
// certificate (for TCP); the unix socket relies on file permissions.
std::unique_ptr<grpc::Service> NewFleetService(PeerNode& node, bool check_identity);

class ClusterServer {
 public:
  explicit ClusterServer(PeerNode& node);
  ~ClusterServer();

  // Binds `listen` with `credentials`. Unavailable naming the address if
  // the bind fails.
  absl::Status Start(const std::string& listen,
                     std::shared_ptr<grpc::ServerCredentials> credentials,
                     bool insecure);
  int port() const { return port_; }
  void Shutdown(std::chrono::milliseconds grace);

 private:
  PeerNode& node_;
  std::unique_ptr<grpc::Service> peer_service_;
  std::unique_ptr<grpc::Service> fleet_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_SERVER_H_
