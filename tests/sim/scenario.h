// Scripted election scenarios with checked-in transcripts (style.md §13,
// after etcd-io/raft's interaction tests). A ScenarioWorld holds pure
// ElectionMachines and FenceGuards, a mailbox and a network that a script
// drives one command at a time; every command returns what happened, one
// event per line, so that a transcript pins down each message, persisted
// state, role change, commit and refusal.
//
// Commands (NODE is n1, n2, ...; a FENCE is TERM/INDEX/NODE):
//   add-nodes N [election-ticks=E] [heartbeat-ticks=H]
//                          voters n1..nN; node i times out after E+i-1 ticks
//   timeout NODE OFFSET    its next randomized timeout is E+OFFSET ticks
//   tick NODE [COUNT]      COUNT ticks of NODE's clock (default 1)
//   deliver                every message queued now, in order
//   stabilize              deliver until no message is left
//   drop FROM TO           lose the queued messages FROM -> TO (* for any)
//   partition A.. | B..    cut every link between the groups; heal: undo
//   crash NODE             the node stops; restart NODE: from what it persisted
//   propose NODE [in-flight=X] [payload=P]
//   hand-off LEADER [outcome=O]
//                          the committed in-flight node answers the leader's
//                          release query with outcome O (a HandoffOutcome
//                          name; default HANDOFF_NEVER_STARTED) and the
//                          leader records it
//   swap NODE FENCE        NODE's FenceGuard admits or refuses a swap,
//                          against the committed record NODE holds
//   status                 role, term, leader and records of every node
//
// Single-threaded.
#ifndef KMSFLEET_TESTS_SIM_SCENARIO_H_
#define KMSFLEET_TESTS_SIM_SCENARIO_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/fence_guard.h"

namespace kmsfleet::sim {

class ScenarioWorld {
 public:
  ScenarioWorld();
  ~ScenarioWorld();

  // Runs one command line and returns its events, one per line. A bad
  // command or argument yields "error: ..." (a transcript may expect it).
  std::string Run(const std::string& line);

 private:
  struct Node;
  using Args = std::vector<std::string>;

  void AddNodes(const Args& args);
  void Tick(const Args& args);
  void Deliver(bool until_empty);
  void DeliverOne(const v1::PeerMessage& m);
  void Drop(const Args& args);
  void Partition(const Args& args);
  void Crash(const Args& args);
  void Restart(const Args& args);
  void Propose(const Args& args);
  void HandOff(const Args& args);
  void Swap(const Args& args);
  void Status();

  void Handle(const std::string& name, const ElectionReady& ready);
  Node& Get(const std::string& name);
  void Line(const std::string& text);

  ElectionConfig base_;  // self is filled per node
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::deque<v1::PeerMessage> mailbox_;
  std::set<std::pair<std::string, std::string>> cut_;  // from -> to
  std::ostringstream out_;
  int indent_ = 0;
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_SCENARIO_H_
