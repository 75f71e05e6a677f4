// The fake's KMS v2 gRPC service (reference §4): Status from the scenario,
// Encrypt/Decrypt with the reversible FakeEncrypt, the real annotation keys,
// and the real error codes for malformed or unknown key_ids. Every call is
// counted in /metrics.
// Thread-safe: gRPC calls handlers concurrently; state lives in LiveState.
#ifndef KMSFLEET_TESTS_FAKES_KMS_SERVICE_H_
#define KMSFLEET_TESTS_FAKES_KMS_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "k8s/kms/v2/api.grpc.pb.h"
#include "live_state.h"

namespace kmsfleet::fake {

class FakeKmsService final : public v2::KeyManagementService::Service {
 public:
  explicit FakeKmsService(LiveState& state) : state_(state) {}

  // v2::KeyManagementService::Service
  grpc::Status Status(grpc::ServerContext* context, const v2::StatusRequest* request,
                      v2::StatusResponse* response) override;
  grpc::Status Encrypt(grpc::ServerContext* context, const v2::EncryptRequest* request,
                       v2::EncryptResponse* response) override;
  grpc::Status Decrypt(grpc::ServerContext* context, const v2::DecryptRequest* request,
                       v2::DecryptResponse* response) override;

 private:
  grpc::Status DoEncrypt(const v2::EncryptRequest& request, v2::EncryptResponse& response);
  grpc::Status DoDecrypt(const v2::DecryptRequest& request, v2::DecryptResponse& response);
  grpc::Status CheckAnnotations(const v2::DecryptRequest& request);

  LiveState& state_;
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_KMS_SERVICE_H_
