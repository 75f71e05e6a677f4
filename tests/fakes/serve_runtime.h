// The OS-facing steps of `serve` (reference §2.10, §4): reclaiming a stale
// socket only when no live listener owns it, starting the gRPC server on the
// unix socket, and atomic writes of the listen-info and registry files.
// Thread-compatible: free functions; callers serialise use of a path.
#ifndef KMSFLEET_TESTS_FAKES_SERVE_RUNTIME_H_
#define KMSFLEET_TESTS_FAKES_SERVE_RUNTIME_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "provider_config.h"
#include "scenario.h"

namespace kmsfleet::fake {

// Makes `path` free for a new socket. Sets *reclaimed when a stale socket
// was removed. Errors: kInvalidArgument when the parent directory is
// missing or the path is not a socket (a config problem, exit 3);
// kFailedPrecondition when a live listener answers on it (exit 5).
absl::Status ReclaimStaleSocket(const std::string& path, bool* reclaimed);

// Starts a gRPC server for `service` on unix:`path` and applies `mode`
// (octal text, e.g. "0660"). Errors: kUnavailable when gRPC cannot bind.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartKmsServer(
    const std::string& path, const std::string& mode, grpc::Service& service);

// Writes `content` to a temp file beside `path`, then renames it over
// `path`, so a reader never sees a partial file.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

// Writes the registry state and checkpoint for `scenario` under
// config.state_path, but only when their content would change, so the
// files stay byte-identical while nothing happens. No-op without a path.
// Errors: kUnavailable when the directory is missing or unwritable.
absl::Status SyncRegistryState(const ProviderConfig& config, const Scenario& scenario);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_SERVE_RUNTIME_H_
