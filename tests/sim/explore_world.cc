// The explorer's world: events, the agents' handling of them, and the
// invariants (explore_world.h).
#include "explore_world.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <unordered_map>

#include "explore_access.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::sim {
namespace {

// Every election timeout is election_ticks: the explorer chooses when each
// node ticks, which already covers every relative timing of the nodes.
class LowestRandom final : public ElectionRandom {
 public:
  int64_t Uniform(int64_t lo, int64_t /*hi*/) override { return lo; }
};
LowestRandom lowest_random;

// The plan: these nodes in flight in turn, then nobody.
const std::vector<std::string> kPlanOrder = {"n2", "n3"};

std::string Key(uint64_t term, uint64_t index) {
  return std::to_string(term) + "/" + std::to_string(index);
}

// A fleet plan payload (--plan) prints as its revision and phase: the
// record's term and index already tell records apart.
std::string PayloadText(const std::string& payload) {
  bool text = std::all_of(payload.begin(), payload.end(),
                          [](char c) { return c >= 0x20 && c < 0x7f; });
  if (text) return payload;
  static std::unordered_map<std::string, std::string> seen;  // decoding is slow
  auto [it, inserted] = seen.try_emplace(payload);
  if (!inserted) return it->second;
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(payload);
  it->second = plan.ok() ? "r" + std::to_string(plan->revision()) + " " +
                               std::string(PlanPhaseName(plan->phase()))
                         : "undecodable";
  return it->second;
}

std::string Record(const v1::PlanRecord& r) {
  std::string out = Key(r.term(), r.index());
  if (!r.in_flight().empty()) out += "/" + r.in_flight();
  if (!r.payload().empty()) out += ":" + PayloadText(r.payload());
  return out;
}

std::string FenceText(const v1::Fence& f) {
  return Key(f.term(), f.index()) + "/" + (f.in_flight().empty() ? "none" : f.in_flight());
}

std::string PeerText(const v1::PeerMessage& m) {
  std::string out = v1::MessageType_Name(m.type()) + " term=" + std::to_string(m.term());
  if (m.type() != v1::PRE_VOTE_RESP && m.type() != v1::VOTE_RESP) {
    out += " record=" + Record(m.record());
  }
  if (m.type() == v1::APPEND) out += " committed=" + Record(m.committed());
  if (m.reject()) out += " reject";
  return out;
}

ExMessage Command(MessageKind kind, const std::string& from, const std::string& to,
                  const v1::Fence& fence) {
  ExMessage m;
  m.kind = kind;
  m.from = from;
  m.to = to;
  m.fence = fence;
  return m;
}

}  // namespace

std::string DescribeMessage(const ExMessage& m) {
  std::string out = m.from + "->" + m.to + " ";
  // --plan: the action's operation (or revision, for a hand-off) too.
  std::string action;
  if (m.action) {
    action = m.action->operation_id.empty()
                 ? " rev=" + std::to_string(m.action->revision)
                 : " " + std::string(ActionKindName(m.action->kind)) + "=" +
                       m.action->operation_id;
  }
  switch (m.kind) {
    case MessageKind::kPeer: return out + PeerText(m.peer);
    case MessageKind::kSwap: return out + "SWAP fence=" + FenceText(m.fence) + action;
    case MessageKind::kQuery: return out + "QUERY fence=" + FenceText(m.fence) + action;
    case MessageKind::kReleased:
      return out + "RELEASED fence=" + FenceText(m.fence) + " " +
             v1::HandoffOutcome_Name(m.outcome) + (m.released ? " released" : " kept") + action;
    case MessageKind::kPoll: return out + "POLL" + action;
    case MessageKind::kResult: {
      out += "RESULT fence=" + FenceText(m.fence) + action + " ";
      if (m.running) return out + "running";
      if (!m.result->status.ok()) {
        std::string reason = ReasonOf(m.result->status);
        return out + (m.ended ? "failed before the stop " : "refused ") +
               (reason.empty() ? absl::StatusCodeToString(m.result->status.code()) : reason);
      }
      static constexpr const char* kOutcomes[] = {"NotFound", "Stable", "RolledBack",
                                                  "RollbackFailed"};
      return out + kOutcomes[static_cast<int>(m.result->outcome)];
    }
  }
  return out;
}

Event NodeEvent(EventKind kind, const std::string& node, SwapPhase outcome) {
  Event e;
  e.kind = kind;
  e.node = node;
  e.outcome = outcome;
  return e;
}

Event MessageEvent(EventKind kind, const std::string& message) {
  Event e;
  e.kind = kind;
  e.message = message;
  return e;
}

std::string EventText(const Event& e) {
  switch (e.kind) {
    case EventKind::kTick: return "tick " + e.node;
    case EventKind::kDeliver: return "deliver " + e.message;
    case EventKind::kDrop: return "drop " + e.message;
    case EventKind::kDuplicate: return "duplicate " + e.message;
    case EventKind::kCrash: return "crash " + e.node;
    case EventKind::kRestart: return "restart " + e.node;
    case EventKind::kFinish: return "finish " + e.node + " " + std::string(PhaseName(e.outcome));
    case EventKind::kForge: return "forge " + FenceText(e.fence);
    case EventKind::kExpire: return "expire " + e.node + " " + e.message;
  }
  return "";
}

absl::StatusOr<Event> ParseEvent(const std::string& text) {
  static const std::map<std::string, EventKind> kKinds = {
      {"tick", EventKind::kTick},         {"deliver", EventKind::kDeliver},
      {"drop", EventKind::kDrop},         {"duplicate", EventKind::kDuplicate},
      {"crash", EventKind::kCrash},       {"restart", EventKind::kRestart},
      {"finish", EventKind::kFinish},     {"forge", EventKind::kForge},
      {"expire", EventKind::kExpire}};
  size_t space = text.find(' ');
  auto it = kKinds.find(text.substr(0, space));
  if (space == std::string::npos || it == kKinds.end()) {
    return absl::InvalidArgumentError("not an explorer event: \"" + text + "\"");
  }
  Event e;
  e.kind = it->second;
  std::string rest = text.substr(space + 1);
  if (e.kind == EventKind::kDeliver || e.kind == EventKind::kDrop ||
      e.kind == EventKind::kDuplicate) {
    e.message = rest;
    return e;
  }
  if (e.kind == EventKind::kForge) {
    size_t a = rest.find('/');
    size_t b = a == std::string::npos ? a : rest.find('/', a + 1);
    if (b == std::string::npos) return absl::InvalidArgumentError("no fence in \"" + text + "\"");
    e.fence.set_term(std::strtoull(rest.substr(0, a).c_str(), nullptr, 10));
    e.fence.set_index(std::strtoull(rest.substr(a + 1, b - a - 1).c_str(), nullptr, 10));
    e.fence.set_in_flight(rest.substr(b + 1));
    e.node = e.fence.in_flight();
    return e;
  }
  std::istringstream in(rest);
  in >> e.node;
  if (e.kind == EventKind::kExpire) in >> e.message;
  if (e.kind == EventKind::kFinish) {
    std::string phase;
    in >> phase;
    absl::StatusOr<SwapPhase> parsed = ParsePhase(phase);
    if (!parsed.ok()) return absl::InvalidArgumentError("no phase \"" + phase + "\" in \"" + text + "\"");
    e.outcome = *parsed;
  }
  return e;
}

ExState::ExState(const ExploreConfig& config)
    : config_(config),
      crashes_left_(config.crashes),
      duplications_left_(config.duplications),
      forgeries_left_(config.forgeries) {
  for (int i = 1; i <= config.voters; ++i) voters_.push_back("n" + std::to_string(i));
  for (const std::string& name : voters_) {
    ExNode& node = nodes_[name];
    node.machine = std::make_shared<ElectionMachine>(ConfigFor(name), node.durable, lowest_random);
    node.guard.emplace(name, node.fence_durable);
    if (config.plan) node.version = kPlanFromVersion;
  }
}

ElectionConfig ExState::ConfigFor(const std::string& name) const {
  // The shortest valid timers: a heartbeat every tick, an election timeout
  // (and CheckQuorum round) of two.
  return ElectionConfig{.self = name, .voters = voters_, .election_ticks = 2,
                        .heartbeat_ticks = 1};
}

std::vector<Event> ExState::Enabled() const {
  std::vector<Event> out;
  if (!failure_.empty()) return out;
  for (const auto& [name, node] : nodes_) {
    if (node.machine) {
      out.push_back(NodeEvent(EventKind::kTick, name));
      if (node.running) {
        for (SwapPhase p : {SwapPhase::kStable, SwapPhase::kRolledBack,
                            SwapPhase::kRollbackFailed}) {
          out.push_back(NodeEvent(EventKind::kFinish, name, p));
        }
      }
      if (crashes_left_ > 0) out.push_back(NodeEvent(EventKind::kCrash, name));
      if (node.plan && node.plan->term == node.machine->term()) {
        for (const auto& [request, o] : node.plan->outstanding) {
          Event e = NodeEvent(EventKind::kExpire, name);
          e.message = request;
          out.push_back(std::move(e));
        }
      }
    } else {
      out.push_back(NodeEvent(EventKind::kRestart, name));
    }
  }
  for (const v1::Fence& f : Forgeries()) {
    Event e = NodeEvent(EventKind::kForge, f.in_flight());
    e.fence = f;
    out.push_back(std::move(e));
  }
  for (const auto& [text, entry] : inflight_) {
    out.push_back(MessageEvent(EventKind::kDeliver, text));
    out.push_back(MessageEvent(EventKind::kDrop, text));
    if (duplications_left_ > 0) out.push_back(MessageEvent(EventKind::kDuplicate, text));
  }
  return out;
}

std::vector<v1::Fence> ExState::Forgeries() const {
  std::vector<v1::Fence> out;
  if (forgeries_left_ == 0) return out;
  uint64_t term = 0;
  v1::PlanRecord committed;
  for (const auto& [name, node] : nodes_) {
    if (!node.machine) continue;
    term = std::max(term, node.machine->term());
    if (Newer(node.machine->committed(), committed)) committed = node.machine->committed();
  }
  for (const std::string& target : voters_) {
    v1::Fence ahead;
    ahead.set_term(term);
    ahead.set_index(committed.index() + 1);
    ahead.set_in_flight(target);
    out.push_back(ahead);
    if (target == committed.in_flight() || committed.index() == 0) continue;
    v1::Fence claimed;  // the real committed fence, claimed for another node
    claimed.set_term(committed.term());
    claimed.set_index(committed.index());
    claimed.set_in_flight(target);
    out.push_back(claimed);
  }
  return out;
}

bool ExState::OutOfBound() const {
  int messages = 0;
  for (const auto& [text, entry] : inflight_) messages += entry.second;
  if (messages > config_.max_messages) return true;
  for (const auto& [name, node] : nodes_) {
    if (node.durable.term() > config_.max_term) return true;
  }
  return false;
}

void ExState::Log(const std::string& line) {
  if (log_ != nullptr) log_->push_back(line);
}

void ExState::Fail(const std::string& what) {
  if (failure_.empty()) failure_ = what;
}

bool ExState::Apply(const Event& e, std::vector<std::string>* log) {
  log_ = log;
  note_.clear();
  bool done = false;
  switch (e.kind) {
    case EventKind::kDeliver:
    case EventKind::kDrop:
    case EventKind::kDuplicate: done = ApplyToMessage(e); break;
    case EventKind::kForge: done = Forge(e.fence); break;
    case EventKind::kExpire: done = Expire(e.node, e.message); break;
    default: done = ApplyToNode(e); break;
  }
  if (done) CheckInvariants();
  log_ = nullptr;
  return done;
}

bool ExState::ApplyToNode(const Event& e) {
  auto it = nodes_.find(e.node);
  if (it == nodes_.end()) return false;
  ExNode& node = it->second;
  const bool up = node.machine != nullptr;
  switch (e.kind) {
    case EventKind::kTick:
      if (!up) return false;
      Handle(e.node, Writable(node).Tick());
      Coordinate(e.node);
      return true;
    case EventKind::kCrash:
      if (!up || crashes_left_ == 0) return false;
      --crashes_left_;
      node.machine.reset();
      node.guard.reset();
      node.commanded.clear();  // a coordinator's memory is volatile
      node.plan.reset();
      Log(e.node + ": down; keeps term=" + std::to_string(node.durable.term()) +
          " record=" + Record(node.durable.record()) +
          (node.running ? "; its operation is left running" : ""));
      return true;
    case EventKind::kRestart:
      if (up) return false;
      Restart(e.node);
      return true;
    case EventKind::kFinish:
      if (!up || !node.running) return false;
      node.running = false;
      node.journal->phase = e.outcome;
      node.journal->open = false;
      if (config_.plan) {
        node.ended[node.journal->operation_id] = e.outcome;
        node.version = e.outcome == SwapPhase::kStable ? node.op_target : node.op_prev;
      }
      Log(e.node + ": operation " + node.journal->operation_id + " ended " +
          std::string(PhaseName(e.outcome)));
      return true;
    default:
      return false;
  }
}

bool ExState::ApplyToMessage(const Event& e) {
  auto it = inflight_.find(e.message);
  if (it == inflight_.end()) return false;
  if (e.kind == EventKind::kDuplicate) {
    if (duplications_left_ == 0) return false;
    --duplications_left_;
    ++it->second.second;
    return true;
  }
  std::shared_ptr<const ExMessage> m = it->second.first;
  if (--it->second.second == 0) inflight_.erase(it);
  if (e.kind == EventKind::kDeliver) Deliver(*m);
  return true;
}

bool ExState::Forge(const v1::Fence& fence) {
  std::vector<v1::Fence> allowed = Forgeries();
  bool known = std::any_of(allowed.begin(), allowed.end(), [&](const v1::Fence& f) {
    return f.SerializeAsString() == fence.SerializeAsString();
  });
  if (!known) return false;
  --forgeries_left_;
  ExMessage m = Command(MessageKind::kSwap, "adversary", fence.in_flight(), fence);
  if (config_.plan) m.action = AdversaryAction(fence.in_flight());
  Send(std::move(m));
  return true;
}

void ExState::Send(ExMessage m) {
  std::string text = DescribeMessage(m);
  Log("send " + text);
  auto [it, inserted] = inflight_.try_emplace(text);
  if (inserted) it->second.first = std::make_shared<const ExMessage>(std::move(m));
  ++it->second.second;
}

// Ready handling as PeerNode does it: persist, then send, then apply.
void ExState::Handle(const std::string& name, const ElectionReady& ready) {
  ExNode& node = nodes_.at(name);
  if (ready.soft_state) {
    Log(name + ": " + std::string(RoleName(ready.soft_state->role)) + " term=" +
        std::to_string(node.machine->term()));
  }
  if (ready.hard_state) {
    node.durable = *ready.hard_state;
    Log(name + ": persist term=" + std::to_string(node.durable.term()) + " vote=" +
        (node.durable.voted_for().empty() ? "none" : node.durable.voted_for()) +
        " record=" + Record(node.durable.record()) +
        " committed=" + Record(node.durable.committed()));
  }
  for (const v1::PeerMessage& pm : ready.messages) {
    ExMessage m;
    m.kind = MessageKind::kPeer;
    m.from = name;
    m.to = pm.to();
    m.peer = pm;
    Send(std::move(m));
  }
  if (ready.committed) {
    Log(name + ": commit " + Record(*ready.committed));
    CheckApplied(name, *ready.committed);
    if (node.machine->role() == Role::kLeader) CheckHandOff(name, *ready.committed);
    if (config_.plan) CheckPlanCommitted(*ready.committed);
  }
}

// The leader's coordinator, once per tick: start the plan, command the
// in-flight node under the current fence, and once it has released its
// slot, put the next node in flight (the election refuses that until the
// node's answer was recorded with RecordRelease).
void ExState::Coordinate(const std::string& name) {
  if (config_.plan) return PlanCoordinate(name);
  ExNode& node = nodes_.at(name);
  std::optional<v1::Fence> fence = node.machine->CurrentFence();
  if (!fence) return;
  const v1::PlanRecord& committed = node.machine->committed();
  const std::string holder = committed.in_flight();
  if (committed.payload().empty()) return Propose(name, kPlanOrder[0], kPlanOrder[0]);
  if (holder.empty()) return;  // the plan is done
  std::string key = FenceText(*fence);
  if (!node.commanded.contains(key)) {
    node.commanded.insert(key);
    return Send(Command(MessageKind::kSwap, name, holder, *fence));
  }
  auto at = std::find(kPlanOrder.begin(), kPlanOrder.end(), holder);
  std::string next = at == kPlanOrder.end() || at + 1 == kPlanOrder.end() ? "" : *(at + 1);
  absl::StatusOr<ElectionReady> ready =
      Writable(node).Propose(next, next.empty() ? "done" : next);
  if (ready.ok()) {
    Log(name + ": propose in_flight=" + (next.empty() ? "none" : next));
    return Handle(name, *ready);
  }
  if (ReasonOf(ready.status()) != reason::kHandoffPending) return;
  ExMessage query = Command(MessageKind::kQuery, name, holder, *fence);
  if (!inflight_.contains(DescribeMessage(query))) Send(std::move(query));  // one at a time
}

void ExState::Propose(const std::string& name, const std::string& in_flight,
                      const std::string& payload) {
  absl::StatusOr<ElectionReady> ready = Writable(nodes_.at(name)).Propose(in_flight, payload);
  if (!ready.ok()) return;
  Log(name + ": propose in_flight=" + in_flight);
  Handle(name, *ready);
}

void ExState::Deliver(const ExMessage& m) {
  ExNode& node = nodes_.at(m.to);
  if (!node.machine) {
    Log("lost: " + m.to + " is down");
    return;
  }
  switch (m.kind) {
    case MessageKind::kPeer: {
      absl::StatusOr<ElectionReady> ready = Writable(node).Step(m.peer);
      if (!ready.ok()) return Fail(m.to + " refused a member's message: " +
                                   std::string(ready.status().message()));
      return Handle(m.to, *ready);
    }
    case MessageKind::kSwap: return m.action ? PlanSwap(node, m) : DeliverSwap(node, m);
    case MessageKind::kQuery: return DeliverQuery(node, m);
    case MessageKind::kPoll: return ReplyWithOperation(node, m, *m.action);
    case MessageKind::kResult: return PlanResult(m.to, m);
    case MessageKind::kReleased:
      if (m.action) return PlanReleased(m.to, m);
      if (node.machine->role() != Role::kLeader) return Log(m.to + ": not leading, ignored");
      Writable(node).RecordRelease(m.from, m.fence.term(), m.fence.index(), m.outcome);
      return Log(m.to + ": recorded the answer");
  }
}

void ExState::DeliverSwap(ExNode& node, const ExMessage& m) {
  // As PeerNode::AdmitSwap: a term seen in the election is a term seen.
  node.guard->ObserveTerm(node.machine->term());
  absl::Status s = config_.mutation == Mutation::kSkipFenceGuard && m.fence.in_flight() == m.to
                       ? absl::OkStatus()
                       : node.guard->AdmitSwap(m.fence, node.machine->committed());
  if (!s.ok()) {
    note_ = ReasonOf(s);
    return Log(m.to + ": refused [" + note_ + "]");
  }
  node.fence_durable = node.guard->state();  // persisted before acting
  std::string id = "op-" + FenceText(m.fence);
  if (node.running || (node.journal && node.journal->operation_id == id)) {
    return Log(m.to + ": admitted; operation " + id + " already " +
               (node.running ? "runs" : "ended"));
  }
  CheckAdmitted(m.to, m.fence);
  node.running = true;
  SwapJournal j;
  j.operation_id = id;
  j.phase = SwapPhase::kStopped;
  j.fence_term = m.fence.term();
  j.fence_index = m.fence.index();
  node.journal = j;
  Log(m.to + ": admitted; operation " + id + " starts");
}

void ExState::DeliverQuery(ExNode& node, const ExMessage& m) {
  node.guard->ObserveTerm(node.machine->term());
  HandoffFacts facts;
  facts.busy = node.running;
  if (node.journal) facts.journals.push_back(*node.journal);
  HandoffAnswer answer = DecideHandoff(facts, m.fence);
  if (config_.mutation == Mutation::kReleaseRollbackFailed &&
      answer.outcome == v1::HANDOFF_ROLLBACK_FAILED) {
    answer.outcome = v1::HANDOFF_STABLE;
  }
  absl::StatusOr<v1::ReleaseReply> reply =
      node.guard->AdmitRelease(m.fence, node.machine->committed(), answer);
  if (!reply.ok()) {
    note_ = ReasonOf(reply.status());
    return Log(m.to + ": refused [" + note_ + "]");
  }
  if (!reply->released()) note_ = "WITHHELD";
  node.fence_durable = node.guard->state();  // persisted before answering
  ExMessage released = Command(MessageKind::kReleased, m.to, m.from, m.fence);
  released.outcome = reply->outcome();
  released.released = reply->released();
  released.action = m.action;
  Send(std::move(released));
}

void ExState::Restart(const std::string& name) {
  ExNode& node = nodes_.at(name);
  node.machine = std::make_shared<ElectionMachine>(ConfigFor(name), node.durable, lowest_random);
  node.guard.emplace(name, node.fence_durable);
  Log(name + ": up at term=" + std::to_string(node.machine->term()) +
      " committed=" + Record(node.machine->committed()));
  // Invariant 2: what was applied was durable first.
  if (Newer(node.applied, node.machine->committed())) {
    Fail("invariant 2: " + name + " restarted with committed " +
         Record(node.machine->committed()) + " but had applied " + Record(node.applied));
  }
}

// Copy on write: states share the machines an event did not touch.
ElectionMachine& ExState::Writable(ExNode& node) {
  if (node.machine.use_count() > 1) node.machine = std::make_shared<ElectionMachine>(*node.machine);
  return *node.machine;
}

bool ExState::Disrupted(const ExNode& node) const {
  return node.running || (node.journal && node.journal->phase == SwapPhase::kRollbackFailed);
}

}  // namespace kmsfleet::sim
