// One outgoing link to a peer: a bounded queue drained by its own thread,
// so a slow or dead peer never blocks the election driver. A full queue
// drops its oldest message; Raft tolerates lost messages, not a stalled
// leader. Thread-safe.
#ifndef KMSFLEET_SRC_CLUSTER_PEER_SENDER_H_
#define KMSFLEET_SRC_CLUSTER_PEER_SENDER_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "kmsfleet/v1/peer.grpc.pb.h"

namespace kmsfleet {

class PeerSender {
 public:
  PeerSender(std::string self, std::string peer, const std::string& address,
             std::shared_ptr<grpc::ChannelCredentials> credentials,
             std::chrono::milliseconds deadline);
  ~PeerSender();

  void Start();
  void Stop();
  void Enqueue(v1::PeerMessage message);
  // A synchronous hand-off query to this peer.
  absl::StatusOr<v1::ReleaseReply> Release(const v1::Fence& fence);

 private:
  void Run();
  void NoteResult(const grpc::Status& status);

  std::string self_;
  std::string peer_;
  std::string address_;
  std::chrono::milliseconds deadline_;
  std::unique_ptr<v1::Peer::Stub> stub_;
  std::mutex mu_;
  std::condition_variable ready_;
  std::deque<v1::PeerMessage> queue_;
  bool stopping_ = false;
  bool reachable_ = true;  // for logging changes only
  std::thread thread_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_SRC_CLUSTER_PEER_SENDER_H_
