// An agent's side of a coordinator:// Stage source (issue 9, "Artifacts
// reach every node"): fetches the named upload from that node's
// Fleet.FetchArtifact over the cluster's mTLS channel, with this agent's
// member certificate, into a local file. The bytes are checked against
// the chunk rules and the SHA-256 in the source; the release itself is
// verified afterwards by the executor's Stage with this node's own keys.
// Thread-safe: stubs are created once; fetches may run concurrently.
#ifndef KMSFLEET_CLUSTER_UPLOAD_FETCH_H_
#define KMSFLEET_CLUSTER_UPLOAD_FETCH_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {

class UploadFetcher {
 public:
  // `addresses`: every member's cluster listener; `credentials`: the
  // member certificate (each peer's certificate must name the peer).
  // `reserve_bytes`: what each chunk written must leave free where `dest`
  // lies (CheckFreeSpace: ResourceExhausted ARTIFACT_IO).
  UploadFetcher(const std::map<std::string, std::string>& addresses,
                std::shared_ptr<grpc::ChannelCredentials> credentials,
                std::chrono::milliseconds timeout,
                uint64_t reserve_bytes = kStateFreeSpaceReserveBytes);

  // Fetches `source` (coordinator://<node>/<sha256>/<name>) into `dest`, a
  // new file (mode 0600) that must not exist, bounded by MaxUploadBytes(kind).
  // On any error `dest` is removed. Errors: SOURCE_NOT_ALLOWED for a
  // malformed source; ARTIFACT_FETCH_FAILED naming the node for an unknown
  // node or a broken call (the node's own refusal, e.g. UPLOAD_NOT_FOUND,
  // keeps its reason); the chunk rules' reasons; UPLOAD_DIGEST_MISMATCH when
  // the bytes do not hash to the source's SHA-256; ARTIFACT_IO naming
  // `dest`. The call ends at `deadline` (that of the Stage call it serves:
  // past it nobody waits for the file) or after the timeout, if sooner;
  // or, asked every 100 ms, as soon as `stop` returns an error (the Stage
  // call was cancelled, the agent is stopping), which is returned.
  using Deadline = std::chrono::system_clock::time_point;
  using Stop = std::function<absl::Status()>;
  absl::Status Fetch(const std::string& source, UploadKind kind, const std::string& dest,
                     Deadline deadline = Deadline::max(), const Stop& stop = {});

 private:
  absl::Status Receive(const CoordinatorSource& source, UploadKind kind, int fd,
                       const std::string& dest, Deadline deadline, const Stop& stop);

  std::map<std::string, std::unique_ptr<v1::Fleet::Stub>> stubs_;
  std::chrono::milliseconds timeout_;
  uint64_t reserve_bytes_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_UPLOAD_FETCH_H_
