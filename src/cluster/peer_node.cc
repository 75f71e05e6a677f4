#include "kmsfleet/cluster/peer_node.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>

#include "kmsfleet/cluster/state_file.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/log.h"
#include "peer_sender.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxStateBytes = 4 << 20;  // two plan payloads and change

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

// `if_removed`: what removing the file instead of restoring it forgets.
template <typename Proto>
absl::Status LoadProto(const std::string& path, Proto& out, std::string_view if_removed) {
  absl::StatusOr<std::optional<std::string>> text = ReadStateFile(path, kMaxStateBytes);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return absl::OkStatus();  // first start
  if (!out.ParseFromString(**text)) {
    return MakeError(absl::StatusCode::kDataLoss, reason::kCorruptState,
                     "persisted state " + path + " cannot be parsed; restore it from a backup, "
                     "or remove it to rejoin as a new member: " + std::string(if_removed),
                     {{"path", path}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PeerNode>> PeerNode::Open(PeerNodeOptions options) {
  if (absl::Status s = ValidateElectionConfig(options.election); !s.ok()) return s;
  // Created here, not at the first write: an agent that cannot persist
  // its vote must fail at start, not campaign in vain and log forever.
  if (absl::Status s = EnsurePrivateDir(options.state_dir, 0700); !s.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStateWriteFailed,
                     "state_dir " + options.state_dir +
                         " cannot hold the election's state: " + std::string(s.message()),
                     {{"path", options.state_dir}});
  }
  v1::HardState hard_state;
  v1::FenceState fence_state;
  if (absl::Status s = LoadProto(options.state_dir + "/election.pb", hard_state,
                                 "this node forgets its term and vote, so start it again only "
                                 "once the others have elected a leader without it");
      !s.ok()) {
    return s;
  }
  // Found in review: removed, it also forgets where the node handed its
  // slot off, and a fence it released is taken again until its leader's
  // next append; the leader check keeps anyone else from sending one.
  if (absl::Status s = LoadProto(options.state_dir + "/fence.pb", fence_state,
                                 "this node forgets where it handed its slot off, so remove it "
                                 "only while no plan is under way (kmsfleetctl plan)");
      !s.ok()) {
    return s;
  }
  return std::unique_ptr<PeerNode>(
      new PeerNode(std::move(options), std::move(hard_state), std::move(fence_state)));
}

PeerNode::PeerNode(PeerNodeOptions options, v1::HardState hard_state,
                   v1::FenceState fence_state)
    : options_(std::move(options)),
      election_path_(options_.state_dir + "/election.pb"),
      fence_path_(options_.state_dir + "/fence.pb"),
      random_(options_.seed) {
  std::lock_guard lock(mu_);
  durable_ = std::move(hard_state);
  machine_ = std::make_unique<ElectionMachine>(options_.election, durable_, random_);
  fence_durable_ = std::move(fence_state);
  guard_ = std::make_unique<FenceGuard>(self(), fence_durable_);
  // Each RPC gets a few ticks: longer and a dead peer delays the next
  // heartbeat in its queue, shorter and a busy peer looks dead.
  auto deadline = std::max(options_.tick * 4, std::chrono::milliseconds(200));
  for (const auto& [name, address] : options_.addresses) {
    if (name == self() || !IsMember(name)) continue;
    senders_[name] = std::make_unique<PeerSender>(self(), name, address,
                                                  options_.channel_credentials, deadline);
  }
}

PeerNode::~PeerNode() { Stop(); }

bool PeerNode::IsMember(const std::string& name) const {
  const ElectionConfig& c = options_.election;
  return std::find(c.voters.begin(), c.voters.end(), name) != c.voters.end() ||
         std::find(c.learners.begin(), c.learners.end(), name) != c.learners.end();
}

// Tick() at a fixed cadence: each deadline is the previous one plus a
// tick, so time spent persisting and sending does not stretch it.
struct PeerNode::Ticker {
  boost::asio::io_context io;
  boost::asio::steady_timer timer{io};
  std::thread thread;
};

void PeerNode::Start() {
  for (auto& [name, sender] : senders_) sender->Start();
  ticker_ = std::make_unique<Ticker>();
  ticker_->timer.expires_after(options_.tick);
  ScheduleTick();
  ticker_->thread = std::thread([this] { ticker_->io.run(); });
}

void PeerNode::ScheduleTick() {
  ticker_->timer.async_wait([this](const boost::system::error_code& error) {
    if (error) return;  // aborted: the io_context is shutting down
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      Process(machine_->Tick()).IgnoreError();  // logged there
    }
    ticks_.fetch_add(1, std::memory_order_relaxed);
    ticker_->timer.expires_at(ticker_->timer.expiry() + options_.tick);
    ScheduleTick();
  });
}

void PeerNode::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (ticker_) {
    ticker_->io.stop();  // a tick already running finishes first
    if (ticker_->thread.joinable()) ticker_->thread.join();
  }
  for (auto& [name, sender] : senders_) sender->Stop();
}

absl::Status PeerNode::Process(const ElectionReady& ready) {
  if (ready.hard_state) {
    absl::Status s = WriteStateFile(election_path_, ready.hard_state->SerializeAsString());
    if (!s.ok()) {
      // Nothing that depends on the lost write may leave this node: drop
      // the messages and go back to what is durable, as after a crash.
      Log(LogLevel::kError, "election state not persisted; messages dropped",
          {{"node", self()}, {"error", std::string(s.message())}});
      machine_ = std::make_unique<ElectionMachine>(options_.election, durable_, random_);
      changed_.notify_all();  // a proposal waiting on the old machine gives up
      return s;
    }
    durable_ = *ready.hard_state;
  }
  for (const v1::PeerMessage& m : ready.messages) {
    auto it = senders_.find(m.to());
    if (it != senders_.end()) it->second->Enqueue(m);
    ++sent_;
  }
  if (ready.committed) {
    Log(LogLevel::kInfo, "plan record committed",
        {{"node", self()}, {"record", Key(ready.committed->term(), ready.committed->index())},
         {"in_flight", ready.committed->in_flight()}});
  }
  if (ready.soft_state) {
    Log(LogLevel::kInfo, "election role changed",
        {{"node", self()}, {"role", std::string(RoleName(ready.soft_state->role))},
         {"leader", ready.soft_state->leader}, {"term", std::to_string(machine_->term())}});
  }
  if (ready.committed || ready.soft_state) changed_.notify_all();
  return absl::OkStatus();
}

absl::Status PeerNode::Receive(const v1::PeerMessage& message) {
  std::lock_guard lock(mu_);
  ++received_;
  absl::StatusOr<ElectionReady> ready = machine_->Step(message);
  if (!ready.ok()) return ready.status();
  // A lost write is logged there and is the node's, not the sender's fault.
  Process(*ready).IgnoreError();
  return absl::OkStatus();
}

std::optional<v1::Fence> PeerNode::CurrentFence() {
  std::lock_guard lock(mu_);
  return machine_->CurrentFence();
}

v1::LeaderView PeerNode::View() {
  std::lock_guard lock(mu_);
  v1::LeaderView view;
  view.set_node(self());
  view.set_role(std::string(RoleName(machine_->role())));
  view.set_term(machine_->term());
  view.set_leader(machine_->leader());
  auto it = options_.addresses.find(machine_->leader());
  if (it != options_.addresses.end()) view.set_leader_address(it->second);
  *view.mutable_committed() = machine_->committed();
  view.set_highest_fence_term(std::max(guard_->state().highest_term(), machine_->term()));
  view.set_messages_sent(sent_);
  view.set_messages_received(received_);
  return view;
}

}  // namespace kmsfleet
