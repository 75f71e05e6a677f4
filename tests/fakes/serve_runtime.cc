#include "serve_runtime.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <boost/json.hpp>

#include "json_pretty.h"
#include "key_material.h"

namespace kmsfleet::fake {
namespace {

// True when something accepts connections on the unix socket at `path`.
bool SomeoneListens(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  bool connected =
      ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  ::close(fd);
  return connected;
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string ReadAll(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

absl::Status WriteIfChanged(const std::string& path, const std::string& content) {
  if (ReadAll(path) == content) return absl::OkStatus();
  return WriteFileAtomically(path, content);
}

}  // namespace

absl::Status ReclaimStaleSocket(const std::string& path, bool* reclaimed) {
  *reclaimed = false;
  struct stat info {};
  if (::stat(ParentOf(path).c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::InvalidArgumentError("socket directory " + ParentOf(path) +
                                      " does not exist");
  }
  if (::lstat(path.c_str(), &info) != 0) return absl::OkStatus();  // nothing there
  if (!S_ISSOCK(info.st_mode)) {
    return absl::InvalidArgumentError("refusing to replace " + path +
                                      ": not a unix socket");
  }
  // gRPC would unlink any socket file it binds over, live or not; check
  // first so two providers never steal each other's socket.
  if (SomeoneListens(path)) {
    return absl::FailedPreconditionError("socket " + path +
                                         " is in use by a live listener");
  }
  if (::unlink(path.c_str()) != 0) {
    return absl::FailedPreconditionError("remove stale socket " + path + ": " +
                                         std::strerror(errno));
  }
  *reclaimed = true;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartKmsServer(
    const std::string& path, const std::string& mode, grpc::Service& service) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + path, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(65536);  // the real provider's limit
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return absl::UnavailableError("listen unix " + path + ": gRPC bind failed");
  unsigned long bits = std::strtoul(mode.c_str(), nullptr, 8);
  ::chmod(path.c_str(), static_cast<mode_t>(bits ? bits : 0660));
  return server;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream file(temp, std::ios::binary | std::ios::trunc);
    file << content;
    if (!file.flush()) {
      std::remove(temp.c_str());
      return absl::UnavailableError("write " + temp + " failed");
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    return absl::UnavailableError("rename " + temp + " to " + path + ": " +
                                  std::strerror(errno));
  }
  return absl::OkStatus();
}

absl::Status SyncRegistryState(const ProviderConfig& config, const Scenario& scenario) {
  const std::string active = scenario.ActiveKeyId();
  if (config.state_path.empty() || active.empty()) return absl::OkStatus();
  const int generation = scenario.key_version + (scenario.rotation_state == "pending");
  boost::json::object snapshot{
      {"providerName", config.provider_name},
      {"clusterId", config.cluster_id},
      {"openbaoInstanceId", config.instance_id},
      {"transitMountId", config.transit_mount_id},
      {"transitKeyLineageId", config.key_lineage_id},
      {"transitVersion", scenario.key_version},
      {"kubernetesKeyId", active},
      {"state", "active"},
      {"aadMode", "aad.required"}};
  boost::json::object state{
      {"schemaVersion", "keyregistry.openbao-kms/v1alpha1"},
      {"generation", generation},
      {"currentHash", StateHash(active, generation)},
      {"activeKeyId", active},
      {"snapshots", boost::json::array{snapshot}}};
  boost::json::object checkpoint{
      {"schemaVersion", "keyregistry.openbao-kms/checkpoint/v1alpha1"},
      {"generation", generation},
      {"currentHash", StateHash(active, generation)}};
  if (absl::Status s = WriteIfChanged(config.state_path, PrettyJson(state) + "\n"); !s.ok()) {
    return s;
  }
  return WriteIfChanged(config.state_path + ".checkpoint", PrettyJson(checkpoint) + "\n");
}

}  // namespace kmsfleet::fake
