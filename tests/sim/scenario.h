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
//   transfer LEADER [to=NODE]
//                          leadership transfer to NODE, or without `to` to
//                          the most up-to-date voter (TransferLeadership)
//   hand-off LEADER [outcome=O]
//                          the committed in-flight node answers the leader's
//                          release query with outcome O (a HandoffOutcome
//                          name; default HANDOFF_NEVER_STARTED) and the
//                          leader records it
//   swap NODE FENCE        NODE's FenceGuard admits or refuses a swap,
//                          against the committed record NODE holds
//   status                 role, term, leader and records of every node
//   plan NODE [upgrade|pause|resume|abort|rollback|ack] [nonce=N]
//             [outcome=Stable|RolledBack|RollbackFailed]
//                          one Step of the fleet plan machine on leader NODE
//                          (docs/fleet-plan.md §1): built from the committed
//                          record on first use at a term; a proposal goes to
//                          Propose and its actions wait for the commit; the
//                          others are carried out at once under the leader's
//                          fence: stage, preflight and the API server restart
//                          succeed, a swap goes through the node's FenceGuard
//                          and ends `outcome` (default Stable), a hand-off is
//                          the node's DecideHandoff answer, recorded with
//                          RecordRelease; results reach the next `plan`
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
#include "kmsfleet/core/plan_machine.h"

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
  void Transfer(const Args& args);
  void HandOff(const Args& args);
  void Swap(const Args& args);
  void Status();
  void Plan(const Args& args);
  void PlanMachineFor(const std::string& name);
  void PlanCommitted(const std::string& name);
  void PlanCarryOut(const std::string& name, const PlanAction& a, const std::string& outcome);
  PlanInput PlanObserve(const std::string& name);

  void Handle(const std::string& name, const ElectionReady& ready);
  Node& Get(const std::string& name);
  void Line(const std::string& text);

  ElectionConfig base_;  // self is filled per node
  std::map<std::string, std::unique_ptr<Node>> nodes_;
  std::deque<v1::PeerMessage> mailbox_;
  std::set<std::pair<std::string, std::string>> cut_;  // from -> to
  std::ostringstream out_;
  int indent_ = 0;
  int64_t plan_clock_ms_ = 0;  // the plan machine's clock: 1 s per `plan`
};

}  // namespace kmsfleet::sim

#endif  // KMSFLEET_TESTS_SIM_SCENARIO_H_
