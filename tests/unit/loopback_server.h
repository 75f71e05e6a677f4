// An in-process gRPC server on an ephemeral loopback port, for tests that
// run a client (kmsfleetctl's commands, the coordinator's calls) against
// a fake service.
#ifndef KMSFLEET_TESTS_UNIT_LOOPBACK_SERVER_H_
#define KMSFLEET_TESTS_UNIT_LOOPBACK_SERVER_H_

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>

namespace kmsfleet {

// `service` served in plain TCP on 127.0.0.1, its port written to `port`;
// nullptr, and a test failure, if it cannot start. `configure` may set
// more of the server (channel arguments).
inline std::unique_ptr<grpc::Server> ServeOnLoopback(
    grpc::Service& service, int& port,
    const std::function<void(grpc::ServerBuilder&)>& configure = {}) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  if (configure) configure(builder);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_NE(server, nullptr);
  return server;
}

}  // namespace kmsfleet

#endif  // KMSFLEET_TESTS_UNIT_LOOPBACK_SERVER_H_
