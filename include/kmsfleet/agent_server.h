// kmsfleetd's gRPC server: kmsfleet.v1.Agent plus the standard gRPC health
// service and server reflection, on a local unix socket and optionally a TCP
// address (architecture.md §1, §7).
// Thread-compatible: Start, Wait and Shutdown are called from one thread.
#ifndef KMSFLEET_AGENT_SERVER_H_
#define KMSFLEET_AGENT_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kmsfleet/provider_probe.h"

namespace grpc {
class Server;
class Service;
}

namespace kmsfleet {

struct AgentListenAddresses {
  std::string unix_socket;  // filesystem path; empty to skip
  std::string tcp;          // host:port; port 0 picks one; empty to skip
};

class Executor;

class AgentServer {
 public:
  // `probe` and `executor` must outlive the server. Without an executor the
  // Stage/Preflight/Swap/Rollback/...Operation RPCs answer UNIMPLEMENTED.
  explicit AgentServer(ProviderProbe& probe, Executor* executor = nullptr);
  ~AgentServer();
  AgentServer(const AgentServer&) = delete;
  AgentServer& operator=(const AgentServer&) = delete;

  // Also serves `service` (e.g. kmsfleet.v1.Fleet) on the same listeners.
  // REQUIRES: called before Start; `service` outlives the server.
  void AddService(grpc::Service* service) { extra_services_.push_back(service); }

  // Binds and starts serving. A stale socket file left by a dead agent is
  // removed; a live one, or a non-socket file at the path, is an error
  // (FailedPrecondition naming the path). Unavailable if a bind fails.
  absl::Status Start(const AgentListenAddresses& addresses);

  // The TCP port actually bound (after Start), or 0.
  int tcp_port() const { return tcp_port_; }

  // Stops accepting calls, lets running ones finish for up to `grace`, and
  // removes the unix socket file.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  class Service;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<grpc::Service*> extra_services_;
  std::string unix_socket_;
  int tcp_port_ = 0;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_AGENT_SERVER_H_
