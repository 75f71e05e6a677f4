#include "kms_service.h"

#include <chrono>

#include "key_material.h"
#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet::fake {
namespace {

constexpr char kKeyIdHashAnnotation[] = "key-id-hash.kms.openbao.org";
constexpr char kAadVersionAnnotation[] = "aad-version.kms.openbao.org";
constexpr size_t kMaxFieldBytes = 1024;  // reference §4.3 limits

// Times a handler and records it under `method`, whatever it returns.
template <typename Handler>
grpc::Status Observed(LiveState& state, std::string_view method, Handler handler) {
  auto start = std::chrono::steady_clock::now();
  grpc::Status status = handler();
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  state.RecordRpc(method, GrpcCodeLabel(status.error_code()), seconds);
  return status;
}

// The annotation set of reference §4.3, with hashes of fake scope values.
void Annotate(const std::string& key_id, const Scenario& scenario,
              const std::string& plugin_version,
              google::protobuf::Map<std::string, std::string>& out) {
  out["provider.kms.openbao.org"] = "openbao-transit";
  out[kKeyIdHashAnnotation] = kmsfleet::KeyIdHash(key_id);
  out["transit-key-version.kms.openbao.org"] = std::to_string(scenario.key_version);
  out["transit-mount-hash.kms.openbao.org"] = kmsfleet::KeyIdHash("fake-transit-mount");
  out["transit-key-hash.kms.openbao.org"] = kmsfleet::KeyIdHash(scenario.key_seed);
  out["plugin-version.kms.openbao.org"] = plugin_version;
  out[kAadVersionAnnotation] = "v1";
}

}  // namespace

grpc::Status FakeKmsService::Status(grpc::ServerContext*, const v2::StatusRequest*,
                                    v2::StatusResponse* response) {
  return Observed(state_, "status", [&] {
    std::shared_ptr<const Scenario> scenario = state_.CurrentScenario();
    const std::string key_id = scenario->ActiveKeyId();
    const bool healthy = scenario->kms_healthy && !key_id.empty();
    // Unhealthy is still gRPC OK (reference §3.1 note); only key_id empties.
    response->set_version("v2");
    response->set_healthz(healthy ? "ok" : "unhealthy");
    response->set_key_id(healthy ? key_id : "");
    if (healthy) state_.RememberKeyId(key_id);
    return grpc::Status::OK;
  });
}

grpc::Status FakeKmsService::Encrypt(grpc::ServerContext*, const v2::EncryptRequest* request,
                                     v2::EncryptResponse* response) {
  return Observed(state_, "encrypt", [&] { return DoEncrypt(*request, *response); });
}

grpc::Status FakeKmsService::Decrypt(grpc::ServerContext*, const v2::DecryptRequest* request,
                                     v2::DecryptResponse* response) {
  return Observed(state_, "decrypt", [&] { return DoDecrypt(*request, *response); });
}

grpc::Status FakeKmsService::DoEncrypt(const v2::EncryptRequest& request,
                                       v2::EncryptResponse& response) {
  std::shared_ptr<const Scenario> scenario = state_.CurrentScenario();
  const std::string key_id = scenario->ActiveKeyId();
  if (!scenario->kms_healthy || key_id.empty()) {
    return {grpc::StatusCode::FAILED_PRECONDITION, "status unhealthy"};
  }
  if (request.plaintext().empty()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "plaintext is empty"};
  }
  state_.RememberKeyId(key_id);
  response.set_ciphertext(FakeEncrypt(key_id, request.plaintext()));
  response.set_key_id(key_id);
  Annotate(key_id, *scenario, state_.version().version, *response.mutable_annotations());
  return grpc::Status::OK;
}

grpc::Status FakeKmsService::CheckAnnotations(const v2::DecryptRequest& request) {
  const auto& annotations = request.annotations();
  auto hash = annotations.find(kKeyIdHashAnnotation);
  if (annotations.empty() || hash == annotations.end()) {
    state_.RecordAadError("aad_missing");
    return {grpc::StatusCode::INVALID_ARGUMENT, "annotations missing"};
  }
  auto aad_version = annotations.find(kAadVersionAnnotation);
  if (aad_version == annotations.end() || aad_version->second != "v1") {
    state_.RecordAadError("annotation_invalid");
    return {grpc::StatusCode::INVALID_ARGUMENT, "unsupported aad version"};
  }
  if (hash->second != kmsfleet::KeyIdHash(request.key_id())) {
    state_.RecordAadError("aad_mismatch");
    return {grpc::StatusCode::INVALID_ARGUMENT, "annotations do not match key_id"};
  }
  return grpc::Status::OK;
}

grpc::Status FakeKmsService::DoDecrypt(const v2::DecryptRequest& request,
                                       v2::DecryptResponse& response) {
  if (request.ciphertext().empty() || request.ciphertext().size() >= kMaxFieldBytes ||
      request.key_id().size() >= kMaxFieldBytes) {
    return {grpc::StatusCode::INVALID_ARGUMENT, "ciphertext or key_id outside limits"};
  }
  // Order as upstream (reference §4.3): parse, look up, then annotations.
  if (!IsWellFormedKeyId(request.key_id())) {
    state_.RecordDecryptKeyIdError("key_id_malformed");
    return {grpc::StatusCode::INVALID_ARGUMENT, "key_id malformed"};
  }
  if (!state_.KnowsKeyId(request.key_id())) {
    state_.RecordDecryptKeyIdError("key_id_unknown");
    return {grpc::StatusCode::NOT_FOUND, "key_id unknown"};
  }
  if (grpc::Status status = CheckAnnotations(request); !status.ok()) return status;
  std::optional<std::string> plaintext =
      FakeDecrypt(request.key_id(), request.ciphertext());
  if (!plaintext) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "ciphertext was not produced under this key_id"};
  }
  response.set_plaintext(*plaintext);
  return grpc::Status::OK;
}

}  // namespace kmsfleet::fake
