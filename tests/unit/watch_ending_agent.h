// An Agent that admits any swap, then answers every watch of it with one
// `phase` (none when empty) and ends the stream with `end`: an agent that
// went away, restarted or turned the caller down after the admission.
#ifndef KMSFLEET_TESTS_UNIT_WATCH_ENDING_AGENT_H_
#define KMSFLEET_TESTS_UNIT_WATCH_ENDING_AGENT_H_

#include <grpcpp/grpcpp.h>

#include <string>
#include <utility>

#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {

class WatchEndingAgent final : public v1::Agent::Service {
 public:
  WatchEndingAgent(std::string phase, grpc::Status end)
      : phase_(std::move(phase)), end_(std::move(end)) {}

  grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest* request,
                    v1::Operation* operation) override {
    operation->set_operation_id(request->operation_id());
    operation->set_phase("Idle");
    return grpc::Status::OK;
  }

  grpc::Status WatchOperation(grpc::ServerContext*, const v1::GetOperationRequest* request,
                              grpc::ServerWriter<v1::Operation>* writer) override {
    if (!phase_.empty()) {
      v1::Operation operation;
      operation.set_operation_id(request->operation_id());
      operation.set_phase(phase_);
      writer->Write(operation);
    }
    return end_;
  }

 private:
  const std::string phase_;
  const grpc::Status end_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_TESTS_UNIT_WATCH_ENDING_AGENT_H_
