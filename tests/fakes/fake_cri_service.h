// fake-cri's gRPC services: the CRI calls kmsfleet makes (ImageService
// PullImage and ImageStatus, RuntimeService ListContainers and
// ContainerStatus), answered from FakeCriStore's files the way containerd
// answers them (README.md, "fake-cri").
// Thread-safe: every call re-reads the files; the store serialises writes.
#ifndef KMSFLEET_TESTS_FAKES_FAKE_CRI_SERVICE_H_
#define KMSFLEET_TESTS_FAKES_FAKE_CRI_SERVICE_H_

#include "fake_cri_store.h"
#include "k8s/cri/runtime/v1/api.grpc.pb.h"

namespace kmsfleet::fake {

class FakeImageService final : public runtime::v1::ImageService::Service {
 public:
  explicit FakeImageService(FakeCriStore& store) : store_(store) {}

  // runtime::v1::ImageService
  grpc::Status PullImage(grpc::ServerContext* context,
                         const runtime::v1::PullImageRequest* request,
                         runtime::v1::PullImageResponse* response) override;
  grpc::Status ImageStatus(grpc::ServerContext* context,
                           const runtime::v1::ImageStatusRequest* request,
                           runtime::v1::ImageStatusResponse* response) override;

 private:
  FakeCriStore& store_;
};

class FakeRuntimeService final : public runtime::v1::RuntimeService::Service {
 public:
  explicit FakeRuntimeService(FakeCriStore& store) : store_(store) {}

  // runtime::v1::RuntimeService
  grpc::Status ListContainers(grpc::ServerContext* context,
                              const runtime::v1::ListContainersRequest* request,
                              runtime::v1::ListContainersResponse* response) override;
  grpc::Status ContainerStatus(grpc::ServerContext* context,
                               const runtime::v1::ContainerStatusRequest* request,
                               runtime::v1::ContainerStatusResponse* response) override;

 private:
  FakeCriStore& store_;
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_FAKE_CRI_SERVICE_H_
