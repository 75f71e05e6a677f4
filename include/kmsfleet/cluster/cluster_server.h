// The gRPC side of the election shell: kmsfleet.v1.Peer and Fleet (and the
// agent's kmsfleet.v1.Agent, passed in) on the cluster listener (mTLS
// unless `insecure: true` on loopback), and Fleet alone for the local unix
// socket (architecture.md §6, §7).
//
// With TLS, every call is authorised by caller_auth.h for the identity its
// certificate carries: Peer.* for members only, and Peer.Send only when
// the message's `from` is a SAN of the caller; Fleet.ProposePlan for
// operators only. Every refusal is logged with the peer's address, the
// identity, the method and the reason, and changes nothing.
// Thread-compatible: Start and Shutdown from one thread.
#ifndef KMSFLEET_CLUSTER_CLUSTER_SERVER_H_
#define KMSFLEET_CLUSTER_CLUSTER_SERVER_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <grpcpp/impl/codegen/service_type.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include <vector>

#include "kmsfleet/cluster/peer_node.h"
#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/cluster/upload_store.h"

namespace kmsfleet {

class Coordinator;

// The Fleet service over `node`, authorising callers by `policy` (the unix
// socket's is `local`: it relies on the socket's file mode). Plan calls go
// to `coordinator`; without one (null) they are refused as unavailable.
// Operators' uploads go to `uploads`, which must outlive the service and be
// the one every Fleet service of this node shares: its lock is what keeps
// one listener's prune from removing an upload another listener's plan
// start has just found.
std::unique_ptr<grpc::Service> NewFleetService(PeerNode& node, CallerPolicy policy,
                                               Coordinator* coordinator,
                                               const UploadStore& uploads);

class ClusterServer {
 public:
  // `uploads` and `coordinator` (may be null) must outlive the server.
  ClusterServer(PeerNode& node, const UploadStore& uploads, Coordinator* coordinator = nullptr);
  ~ClusterServer();

  // Binds `listen` with `credentials`, serving Peer, Fleet and
  // `extra_services` (which must outlive the server). Unavailable naming
  // the address if the bind fails.
  absl::Status Start(const std::string& listen,
                     std::shared_ptr<grpc::ServerCredentials> credentials,
                     const CallerPolicy& policy,
                     const std::vector<grpc::Service*>& extra_services = {});
  int port() const { return port_; }
  void Shutdown(std::chrono::milliseconds grace);

 private:
  PeerNode& node_;
  const UploadStore& uploads_;
  Coordinator* coordinator_;
  std::unique_ptr<grpc::Service> peer_service_;
  std::unique_ptr<grpc::Service> fleet_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_CLUSTER_SERVER_H_
