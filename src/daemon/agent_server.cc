#include "kmsfleet/agent_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "kmsfleet/log.h"
#include "kmsfleet/reasons.h"
#include "kmsfleet/status.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {
namespace {

// Requests are tiny; the cap bounds what a peer can make us buffer.
constexpr int kMaxRequestBytes = 1 << 20;

absl::Status SocketPathError(const std::string& path, std::string_view why) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInvalidConfig,
                   "cannot listen on unix socket " + path + ": " +
                       std::string(why),
                   {{"path", path}});
}

// True if a process accepts connections on the unix socket at `path`.
bool SomeoneListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool connected =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return connected;
}

// Makes `path` bindable: creates its directory and removes a socket file
// that no process listens on any more (an agent killed without cleanup).
absl::Status PrepareUnixSocketPath(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return SocketPathError(path, "path is longer than the 107 bytes allowed");
  }
  std::error_code ec;
  std::filesystem::create_directories(
      std::filesystem::path(path).parent_path(), ec);
  if (ec) return SocketPathError(path, ec.message());
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return SocketPathError(path, "a file that is not a socket is in the way");
  }
  if (SomeoneListens(path)) {
    return SocketPathError(path, "another process is listening on it");
  }
  if (unlink(path.c_str()) != 0) return SocketPathError(path, std::strerror(errno));
  return absl::OkStatus();
}

}  // namespace

// The Agent service. Synchronous handlers, since an observation blocks on
// HTTP, gRPC and subprocess I/O with their own timeouts; gRPC's sync server
// gives each call its own thread from its pool.
class AgentServer::Service final : public v1::Agent::Service {
 public:
  explicit Service(ProviderProbe& probe) : probe_(probe) {}

  // kmsfleet.v1.Agent
  grpc::Status GetNodeState(grpc::ServerContext*, const v1::GetNodeStateRequest*,
                            v1::NodeState* response) override {
    *response = probe_.Observe();
    return grpc::Status::OK;
  }

 private:
  ProviderProbe& probe_;
};

AgentServer::AgentServer(ProviderProbe& probe)
    : service_(std::make_unique<Service>(probe)) {}

AgentServer::~AgentServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status AgentServer::Start(const AgentListenAddresses& addresses) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  if (!addresses.unix_socket.empty()) {
    if (absl::Status s = PrepareUnixSocketPath(addresses.unix_socket); !s.ok()) {
      return s;
    }
    builder.AddListeningPort("unix:" + addresses.unix_socket,
                             grpc::InsecureServerCredentials());
  }
  if (!addresses.tcp.empty()) {
    // Plain TCP until the mTLS issue lands; kmsfleetd warns at start-up.
    builder.AddListeningPort(addresses.tcp, grpc::InsecureServerCredentials(),
                             &tcp_port_);
  }
  builder.RegisterService(service_.get());
  for (grpc::Service* extra : extra_services_) builder.RegisterService(extra);
  server_ = builder.BuildAndStart();
  if (!server_ || (!addresses.tcp.empty() && tcp_port_ == 0)) {
    server_.reset();
    return MakeError(absl::StatusCode::kUnavailable, reason::kInvalidConfig,
                     "cannot bind the agent listeners (unix " +
                         addresses.unix_socket + ", tcp " + addresses.tcp + ")",
                     {{"unix", addresses.unix_socket}, {"tcp", addresses.tcp}});
  }
  unix_socket_ = addresses.unix_socket;
  if (!unix_socket_.empty()) {
    // Only root and the socket's group may ask the agent anything.
    chmod(unix_socket_.c_str(), 0660);
  }
  return absl::OkStatus();
}

void AgentServer::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
  if (!unix_socket_.empty()) unlink(unix_socket_.c_str());
}

}  // namespace kmsfleet
