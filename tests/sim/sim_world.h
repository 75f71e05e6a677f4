// The simulator's world: nodes, network and invariant checks (see
// simulator.h). Internal to tests/sim. Single-threaded.
#ifndef KMSFLEET_TESTS_SIM_SIM_WORLD_H_
#define KMSFLEET_TESTS_SIM_SIM_WORLD_H_

#include <map>
#include <memory>
#include <queue>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"
#include "simulator.h"

namespace kmsfleet::sim {

enum class Kind { kPeer, kSwap, kQuery, kReleased };

// One message in flight. Swap and Query are the coordinator's Agent
// commands; Released is the answer to a Query.
struct Envelope {
  int64_t deliver_at = 0;
  int64_t seq = 0;  // tie-break, so delivery order depends only on the seed
  Kind kind = Kind::kPeer;
  std::string from;
  std::string to;
  v1::PeerMessage peer;
  v1::Fence fence;
  v1::ReleaseReply reply;  // Released: the node's answer
  bool adversary = false;  // Swap or Query injected by the adversary
  bool operator>(const Envelope& o) const {
    return deliver_at != o.deliver_at ? deliver_at > o.deliver_at : seq > o.seq;
  }
};

// What the leader's toy coordinator remembers (volatile, lost on crash).
struct CoordinatorState {
  std::string commanded;      // fence key of the last swap sent
  std::string target;         // node it wants in flight next
  bool want_handoff = false;
  int64_t last_query = -1000;
  int64_t changes = 0;
};

struct Node {
  std::string name;
  ElectionConfig config;
  std::unique_ptr<SeededRandom> random;
  bool up = false;
  std::unique_ptr<ElectionMachine> machine;
  std::unique_ptr<FenceGuard> guard;
  v1::HardState durable;       // what survives a crash
  v1::FenceState fence_durable;
  // The toy executor: the provider is disrupted while now < op_end, and
  // after that too when the operation ended RollbackFailed.
  int64_t op_end = -1;
  int64_t op_start = -1;       // -1: no operation ever ran
  SwapPhase op_outcome = SwapPhase::kStable;  // how it ends (at op_end)
  v1::Fence op_fence;          // the fence it was admitted under
  v1::PlanRecord applied;      // newest committed record applied
  CoordinatorState coordinator;
};

class World {
 public:
  explicit World(const SimOptions& options);
  SimResult Run();

 private:
  // simulator.cc: schedule and faults.
  double Unit();
  bool Chance(double p);
  int64_t Pick(int64_t lo, int64_t hi);
  std::string RandomMember();
  void Trace(const std::string& line);
  void Fail(const std::string& what);
  void Step();
  void InjectFaults();
  void Heal();
  void Crash(Node& node);
  void Restart(Node& node);

  // sim_network.cc: messages, Ready handling, the agents' commands.
  void Send(Envelope e, int64_t max_delay);
  void Deliver();
  void DeliverOne(const Envelope& e);
  void Handle(Node& node, const ElectionReady& ready);
  void HandleSwap(Node& node, const Envelope& e);
  void HandleQuery(Node& node, const Envelope& e);
  void HandleReleased(Node& node, const Envelope& e);
  void StartOperation(Node& node, const v1::Fence& fence);
  bool CheckAlone(const Node& node, const v1::Fence& fence);
  HandoffFacts Facts(const Node& node) const;
  bool Disrupted(const Node& node) const;

  // sim_adversary.cc: a member's certificate in the wrong hands, sending
  // forged, replayed and duplicated fences at random points.
  void Adversary();
  void Inject(Kind kind, const v1::Fence& fence, const std::string& to);

  // sim_coordinator.cc: the leader's actions and the invariants.
  void Coordinate(Node& leader);
  void Propose(Node& leader, const std::string& in_flight, const std::string& payload);
  bool ProposeAndCheck(const std::string& payload);
  void CheckApplied(Node& node, const v1::PlanRecord& record);
  void CheckHandOff(const Node& leader, const v1::PlanRecord& record);
  void CheckInvariants();

  SimOptions options_;
  SeededRandom rng_;
  std::map<std::string, Node> nodes_;
  // By pointer: heap moves of whole protobuf messages dominated the run
  // time under ASan.
  struct Later {
    bool operator()(const std::unique_ptr<Envelope>& a,
                    const std::unique_ptr<Envelope>& b) const {
      return *a > *b;
    }
  };
  std::priority_queue<std::unique_ptr<Envelope>, std::vector<std::unique_ptr<Envelope>>,
                      Later>
      inflight_;
  std::set<std::pair<std::string, std::string>> blocked_;  // from -> to
  int64_t now_ = 0;
  int64_t seq_ = 0;
  bool faults_ = true;
  double loss_ = 0, dup_ = 0, crash_rate_ = 0, lost_write_rate_ = 0;
  double adversary_rate_ = 0, rollback_failed_rate_ = 0;
  std::vector<v1::Fence> real_fences_;  // every fence a coordinator sent
  int64_t max_delay_ = 0;

  std::map<uint64_t, std::string> leader_of_term_;       // invariant 1
  std::map<uint64_t, v1::PlanRecord> committed_index_;   // invariant 2
  std::string failure_;
  Counters counters_;
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_SIM_WORLD_H_
