#include "kmsfleet/node/kms_client.h"

#include <grpcpp/grpcpp.h>

#include "k8s/kms/v2/api.grpc.pb.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

absl::StatusOr<v2::StatusResponse> QueryKmsStatus(
    const std::string& socket_path, std::chrono::milliseconds timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxKmsMessageBytes);
  // One short-lived channel per probe: the provider may have been restarted
  // since the last observation, and a cached channel would hide that.
  auto channel = grpc::CreateCustomChannel(
      "unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
  auto stub = v2::KeyManagementService::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  v2::StatusResponse response;
  grpc::Status status = stub->Status(&context, v2::StatusRequest(), &response);
  if (status.ok()) return response;
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return MakeError(absl::StatusCode::kDeadlineExceeded, reason::kTimeout,
                     "KMS Status on " + socket_path + " timed out after " +
                         std::to_string(timeout.count()) + " ms",
                     {{"socket", socket_path}});
  }
  return MakeError(absl::StatusCode::kUnavailable,
                   reason::kKmsSocketUnreachable,
                   "KMS Status on " + socket_path + " failed: " +
                       status.error_message(),
                   {{"socket", socket_path},
                    {"grpc_code", std::to_string(status.error_code())}});
}

}  // namespace kmsfleet
