#include "peer_sender.h"

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxQueued = 256;

}  // namespace

PeerSender::PeerSender(std::string self, std::string peer, const std::string& address,
                       std::shared_ptr<grpc::ChannelCredentials> credentials,
                       std::chrono::milliseconds deadline)
    : self_(std::move(self)), peer_(std::move(peer)), address_(address),
      deadline_(deadline) {
  stub_ = v1::Peer::NewStub(
      grpc::CreateCustomChannel(address, credentials, PeerChannelArguments(peer_, PeerKeepalive{})));
}

PeerSender::~PeerSender() { Stop(); }

void PeerSender::Start() { thread_ = std::thread([this] { Run(); }); }

void PeerSender::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  ready_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void PeerSender::Enqueue(v1::PeerMessage message) {
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= kMaxQueued) queue_.pop_front();
    queue_.push_back(std::move(message));
  }
  ready_.notify_one();
}

void PeerSender::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    v1::PeerMessage m = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline_);
    // Followers rarely talk to each other, so their channel may still be in
    // reconnect backoff from when the peer was down; failing fast would
    // lose the first pre-vote after a leader dies. Wait, within the deadline.
    context.set_wait_for_ready(true);
    v1::SendReply reply;
    grpc::Status status = stub_->Send(&context, m, &reply);
    lock.lock();
    NoteResult(status);
  }
}

void PeerSender::NoteResult(const grpc::Status& status) {
  // Log transitions only: a dead peer would otherwise fill the journal.
  bool ok = status.ok();
  if (ok == reachable_) return;
  reachable_ = ok;
  if (ok) {
    Log(LogLevel::kInfo, "peer reachable", {{"node", self_}, {"peer", peer_}});
  } else {
    Log(LogLevel::kWarn, "peer unreachable",
        {{"node", self_}, {"peer", peer_}, {"address", address_},
         {"grpc_code", std::to_string(status.error_code())},
         {"error", status.error_message()}});
  }
}

absl::StatusOr<v1::ReleaseReply> PeerSender::Release(const v1::Fence& fence) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline_);
  context.set_wait_for_ready(true);
  v1::ReleaseRequest request;
  *request.mutable_fence() = fence;
  v1::ReleaseReply reply;
  grpc::Status status = stub_->Release(&context, request, &reply);
  if (!status.ok()) {
    // The peer's own reason, so the caller can tell "not seen yet" (retry
    // after a heartbeat) from "no answer". No answer at all (down,
    // partitioned, a deadline) is AGENT_UNREACHABLE, and a refusal other
    // than a wait (VOTER_ONLY, STALE_TERM, ...) keeps its reason: the plan
    // then says why, not that the node is still finishing its operation.
    // Either way the query is asked again (Unavailable).
    v1::ErrorInfo info;
    if (!info.ParseFromString(status.error_details())) info.Clear();
    const std::string& said = info.reason();
    const bool answered = !said.empty();
    const bool waits = said == reason::kHandoffPending || said == reason::kUnknownFence;
    const std::string why = !answered ? std::string(reason::kAgentUnreachable)
                            : waits   ? std::string(reason::kHandoffPending)
                                      : said;
    return MakeError(absl::StatusCode::kUnavailable, why,
                     "in-flight node " + peer_ + (answered ? " refused" : " did not answer") +
                         " the hand-off query: " + status.error_message(),
                     {{"in_flight", peer_}, {"peer_reason", said}});
  }
  return reply;
}

}  // namespace kmsfleet
