#include "kmsfleet/node/kms_client.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <optional>

#include "k8s/kms/v2/api.grpc.pb.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using Deadline = std::chrono::system_clock::time_point;

std::shared_ptr<grpc::Channel> NewChannel(const std::string& socket_path) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxKmsMessageBytes);
  // Its own connection: from gRPC's process-wide pool a new channel could
  // get the very connection (and reconnect back-off) it replaces.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("unix:" + socket_path,
                                   grpc::InsecureChannelCredentials(), args);
}

grpc::Status CallStatus(const std::shared_ptr<grpc::Channel>& channel, Deadline deadline,
                        v2::StatusResponse& response) {
  auto stub = v2::KeyManagementService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(deadline);
  return stub->Status(&context, v2::StatusRequest(), &response);
}

absl::Status ErrorOf(const grpc::Status& status, const std::string& socket_path,
                     std::chrono::milliseconds timeout) {
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kTimeout,
                     "KMS Status on " + socket_path + " timed out after " +
                         std::to_string(timeout.count()) + " ms",
                     {{"socket", socket_path}});
  }
  return MakeError(absl::StatusCode::kUnavailable, reason::kKmsSocketUnreachable,
                   "KMS Status on " + socket_path + " failed: " + status.error_message(),
                   {{"socket", socket_path},
                    {"grpc_code", std::to_string(status.error_code())}});
}

}  // namespace

KmsStatusClient::KmsStatusClient(std::string socket_path)
    : socket_path_(std::move(socket_path)) {}

absl::StatusOr<v2::StatusResponse> KmsStatusClient::Query(std::chrono::milliseconds timeout) {
  const Deadline deadline = std::chrono::system_clock::now() + timeout;
  std::optional<SocketId> id;
  if (struct stat st; stat(socket_path_.c_str(), &st) == 0) id = SocketId{st.st_dev, st.st_ino};
  v2::StatusResponse response;
  if (std::shared_ptr<grpc::Channel> kept = id ? KeptFor(*id) : nullptr) {
    grpc::Status status = CallStatus(kept, deadline, response);
    if (status.ok()) return response;
    Forget(kept);
    // The time is spent: asking again could only answer late.
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return ErrorOf(status, socket_path_, timeout);
    }
    response.Clear();
  }
  std::shared_ptr<grpc::Channel> channel = NewChannel(socket_path_);
  grpc::Status status = CallStatus(channel, deadline, response);
  if (!status.ok()) return ErrorOf(status, socket_path_, timeout);
  // Kept against the file seen before connecting: if the socket was
  // replaced in between, the next call sees another file and reconnects.
  if (id) Keep({std::move(channel), *id});
  return response;
}

// The kept channel if it was opened on socket file `now`; a channel kept
// for another file is dropped.
std::shared_ptr<grpc::Channel> KmsStatusClient::KeptFor(const SocketId& now) {
  std::lock_guard lock(mu_);
  if (!(kept_.id == now)) kept_ = Kept{};
  return kept_.channel;
}

void KmsStatusClient::Keep(Kept kept) {
  std::lock_guard lock(mu_);
  kept_ = std::move(kept);
}

// Drops `failed` unless another call has kept a newer channel meanwhile.
void KmsStatusClient::Forget(const std::shared_ptr<grpc::Channel>& failed) {
  std::lock_guard lock(mu_);
  if (kept_.channel == failed) kept_ = Kept{};
}

}  // namespace kmsfleet
