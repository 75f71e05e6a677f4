// KMS v2 Status over the provider's unix socket (reference §4.1), the same
// call the API server makes.
#ifndef KMSFLEET_NODE_KMS_CLIENT_H_
#define KMSFLEET_NODE_KMS_CLIENT_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "k8s/kms/v2/api.pb.h"

namespace grpc {
class Channel;
}

namespace kmsfleet {

// The provider caps gRPC messages at 64 KiB; a Status reply is far smaller,
// so anything larger is refused rather than buffered.
inline constexpr int kMaxKmsMessageBytes = 64 << 10;

// Calls /v2.KeyManagementService/Status on one socket path, keeping the
// connection between calls as the API server does: a new connection costs
// a few milliseconds, and the agent asks on every observation.
//
// A kept connection is used only while it can say nothing stale:
//  - it belongs to the socket file it was opened on (device and inode): a
//    provider that started again made a new socket file, so the next call
//    connects to it even while the old process still serves its unlinked
//    socket;
//  - on any failure it is dropped and the call made again on a new
//    connection, so an answer is never worse than a one-shot call's (a
//    kept channel in reconnect back-off would otherwise report a provider
//    that is back as unreachable).
// Thread-safe.
class KmsStatusClient {
 public:
  explicit KmsStatusClient(std::string socket_path);

  // Status within `timeout`. An unhealthy provider still answers OK with
  // healthz != "ok": the caller judges the response. Errors:
  //   Unavailable, KMS_SOCKET_UNREACHABLE: no listener, or the RPC failed;
  //   DeadlineExceeded, TIMEOUT: no answer within `timeout`.
  absl::StatusOr<v2::StatusResponse> Query(std::chrono::milliseconds timeout);

 private:
  struct SocketId {
    dev_t dev = 0;
    ino_t ino = 0;
    bool operator==(const SocketId&) const = default;
  };
  struct Kept {
    std::shared_ptr<grpc::Channel> channel;
    SocketId id;
  };

  std::shared_ptr<grpc::Channel> KeptFor(const SocketId& now);
  void Keep(Kept kept);
  void Forget(const std::shared_ptr<grpc::Channel>& failed);

  const std::string socket_path_;
  std::mutex mu_;
  Kept kept_;  // guarded by mu_; channel null when none is kept
};

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_KMS_CLIENT_H_
