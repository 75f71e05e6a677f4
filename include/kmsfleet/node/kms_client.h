// KMS v2 Status over the provider's unix socket (reference §4.1), the same
// call the API server makes.
// Thread-safe.
#ifndef KMSFLEET_NODE_KMS_CLIENT_H_
#define KMSFLEET_NODE_KMS_CLIENT_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <string>

#include "absl/status/statusor.h"
#include "k8s/kms/v2/api.pb.h"

namespace kmsfleet {

// The provider caps gRPC messages at 64 KiB; a Status reply is far smaller,
// so anything larger is refused rather than buffered.
inline constexpr int kMaxKmsMessageBytes = 64 << 10;

// Calls /v2.KeyManagementService/Status on `socket_path` (an absolute
// filesystem path) within `timeout`. An unhealthy provider still answers OK
// with healthz != "ok": the caller judges the response. Errors:
//   Unavailable, KMS_SOCKET_UNREACHABLE: no listener, or the RPC failed;
//   DeadlineExceeded, TIMEOUT: no answer within `timeout`.
absl::StatusOr<v2::StatusResponse> QueryKmsStatus(
    const std::string& socket_path, std::chrono::milliseconds timeout);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_KMS_CLIENT_H_
