// kmsfleetd's gRPC server: kmsfleet.v1.Agent plus the standard gRPC health
// service and server reflection, on a local unix socket and optionally an
// explicitly insecure loopback TCP address (architecture.md §1, §7). The
// same Agent service, authorised per caller, is served on the mTLS cluster
// listener through NewAgentService.
// Thread-compatible: Start, Wait and Shutdown are called from one thread.
#ifndef KMSFLEET_DAEMON_AGENT_SERVER_H_
#define KMSFLEET_DAEMON_AGENT_SERVER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "daemon/fetched_sources.h"
#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/node/provider_probe.h"

namespace grpc {
class Server;
class Service;
}

namespace kmsfleet {

struct AgentListenAddresses {
  std::string unix_socket{};  // filesystem path; empty to skip
  // The socket is bound with this mode already (umask around the bind),
  // then chowned to `unix_group` if set; any failure stops Start.
  unsigned unix_mode = 0660;
  std::string unix_group{};
  // host:port of plain TCP (config: listen.insecure on loopback only);
  // port 0 picks one; empty to skip.
  std::string tcp{};
};

class Executor;
class ApiServerRestarter;

// What GetNodeState reports as `agent_mode`, and which callers may call.
struct AgentServiceOptions {
  CallerPolicy policy = {.local = true};
  // "standalone", "cluster member" or "refusing" (see kmsfleetd_main.cc).
  std::string mode{};
  // "systemd" or "static pod": how the provider runs (GetNodeState's
  // provider_mode).
  std::string provider_mode{};
  // Carries out RestartApiServer under the executor's admission; null
  // answers it UNIMPLEMENTED. Must outlive the service.
  ApiServerRestarter* apiserver = nullptr;
  // Fetches coordinator:// Stage sources (a cluster member's listener);
  // empty = such sources are refused (SOURCE_NOT_ALLOWED).
  FetchUpload fetch_upload{};
  // The agent's state directory: fetched sources land below it.
  std::string state_dir{};
  // GetNodeState's call_bounds: what this agent's config lets the
  // coordinator's long calls take (CallBoundsOf).
  v1::CallBounds call_bounds{};
  // GetNodeState's default_stabilization_ms (executor.stabilization_ms).
  int64_t default_stabilization_ms = 0;
  // Told the reason code of every call the caller check refuses and of
  // every Swap, Rollback or RestartApiServer refused (metrics); may be empty.
  std::function<void(std::string_view reason)> on_refusal{};
};

// The Agent service for another listener (the cluster listener).
// `probe` and `executor` must outlive it.
std::unique_ptr<grpc::Service> NewAgentService(ProviderProbe& probe, Executor* executor,
                                               AgentServiceOptions options);

class AgentServer {
 public:
  // `probe` and `executor` must outlive the server. Without an executor the
  // Stage/Preflight/Swap/Rollback/...Operation RPCs answer UNIMPLEMENTED;
  // without `apiserver`, RestartApiServer does.
  explicit AgentServer(ProviderProbe& probe, Executor* executor = nullptr,
                       std::string mode = "", ApiServerRestarter* apiserver = nullptr);
  // The same with every option of the Agent service (policy is local).
  AgentServer(ProviderProbe& probe, Executor* executor, AgentServiceOptions options);
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
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<grpc::Service*> extra_services_;
  std::string unix_socket_;
  int tcp_port_ = 0;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_AGENT_SERVER_H_
