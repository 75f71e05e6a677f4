#include "scenario.h"

#include <algorithm>
#include <stdexcept>

#include "kmsfleet/core/status.h"

namespace kmsfleet::sim {
namespace {

// Pins the randomized election timeout to lo + offset, so a script says
// who times out first.
class PinnedRandom final : public ElectionRandom {
 public:
  int64_t Uniform(int64_t lo, int64_t hi) override { return std::min(lo + offset, hi); }
  int64_t offset = 0;
};

std::string Key(const v1::PlanRecord& r) {
  return std::to_string(r.term()) + "/" + std::to_string(r.index());
}

std::string Describe(const v1::PeerMessage& m) {
  std::string out = m.from() + "->" + m.to() + " " + v1::MessageType_Name(m.type()) +
                    " term=" + std::to_string(m.term());
  if (m.type() != v1::PRE_VOTE_RESP && m.type() != v1::VOTE_RESP) {
    out += " record=" + Key(m.record());
  }
  if (m.type() == v1::APPEND) out += " committed=" + Key(m.committed());
  if (m.reject()) out += " reject";
  return out;
}

std::vector<std::string> Split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

[[noreturn]] void Bad(const std::string& why) { throw std::invalid_argument(why); }

int Number(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) {
    Bad("\"" + text + "\" is not a count");
  }
  return std::stoi(text);
}

// "key=value" options after the positional arguments.
std::string Option(const std::vector<std::string>& args, const std::string& key,
                   const std::string& fallback) {
  for (const std::string& a : args) {
    if (a.rfind(key + "=", 0) == 0) return a.substr(key.size() + 1);
  }
  return fallback;
}

v1::Fence ParseFence(const std::string& text) {
  size_t a = text.find('/');
  size_t b = a == std::string::npos ? a : text.find('/', a + 1);
  if (b == std::string::npos) Bad("fence \"" + text + "\" is not TERM/INDEX/NODE");
  v1::Fence f;
  f.set_term(static_cast<uint64_t>(Number(text.substr(0, a))));
  f.set_index(static_cast<uint64_t>(Number(text.substr(a + 1, b - a - 1))));
  f.set_in_flight(text.substr(b + 1));
  return f;
}

}  // namespace

struct ScenarioWorld::Node {
  PinnedRandom random;
  std::unique_ptr<ElectionMachine> machine;
  std::unique_ptr<FenceGuard> guard;
  v1::HardState durable;
  v1::FenceState fence_durable;
  bool up = true;
};

ScenarioWorld::ScenarioWorld() = default;
ScenarioWorld::~ScenarioWorld() = default;

std::string ScenarioWorld::Run(const std::string& line) {
  out_.str("");
  Args words = Split(line);
  if (words.empty()) return "";
  std::string command = words[0];
  Args args(words.begin() + 1, words.end());
  try {
    if (command == "add-nodes") {
      AddNodes(args);
    } else if (command == "timeout" && args.size() == 2) {
      Get(args[0]).random.offset = Number(args[1]);
    } else if (command == "tick" && !args.empty()) {
      Tick(args);
    } else if (command == "deliver" || command == "stabilize") {
      Deliver(command == "stabilize");
    } else if (command == "drop" && args.size() == 2) {
      Drop(args);
    } else if (command == "partition") {
      Partition(args);
    } else if (command == "heal") {
      cut_.clear();
    } else if (command == "crash" && args.size() == 1) {
      Crash(args);
    } else if (command == "restart" && args.size() == 1) {
      Restart(args);
    } else if (command == "propose" && !args.empty()) {
      Propose(args);
    } else if (command == "hand-off" && (args.size() == 1 || args.size() == 2)) {
      HandOff(args);
    } else if (command == "swap" && args.size() == 2) {
      Swap(args);
    } else if (command == "status") {
      Status();
    } else {
      Bad("unknown command or wrong arguments: " + line);
    }
  } catch (const std::invalid_argument& e) {
    out_.str("");
    Line(std::string("error: ") + e.what());
  }
  std::string text = out_.str();
  return text.empty() ? "(nothing)\n" : text;
}

void ScenarioWorld::Line(const std::string& text) {
  out_ << std::string(static_cast<size_t>(2 * indent_), ' ') << text << "\n";
}

ScenarioWorld::Node& ScenarioWorld::Get(const std::string& name) {
  auto it = nodes_.find(name);
  if (it == nodes_.end()) Bad("no node " + name);
  return *it->second;
}

void ScenarioWorld::AddNodes(const Args& args) {
  if (args.empty() || !nodes_.empty()) Bad("add-nodes N, once");
  int count = Number(args[0]);
  base_.election_ticks = Number(Option(args, "election-ticks", "10"));
  base_.heartbeat_ticks = Number(Option(args, "heartbeat-ticks", "1"));
  for (int i = 1; i <= count; ++i) base_.voters.push_back("n" + std::to_string(i));
  for (int i = 0; i < count; ++i) {
    auto node = std::make_unique<Node>();
    node->random.offset = i;
    ElectionConfig config = base_;
    config.self = base_.voters[static_cast<size_t>(i)];
    if (absl::Status s = ValidateElectionConfig(config); !s.ok()) Bad(std::string(s.message()));
    node->machine = std::make_unique<ElectionMachine>(config, v1::HardState(), node->random);
    node->guard = std::make_unique<FenceGuard>(config.self, v1::FenceState());
    Line(config.self + ": voter, times out after " +
         std::to_string(base_.election_ticks + i) + " ticks");
    nodes_[config.self] = std::move(node);
  }
}

void ScenarioWorld::Tick(const Args& args) {
  Node& node = Get(args[0]);
  int count = args.size() > 1 ? Number(args[1]) : 1;
  if (!node.up) Bad(args[0] + " is down");
  for (int i = 0; i < count; ++i) Handle(args[0], node.machine->Tick());
}

// Ready handling as the shell does it: persist, then send, then apply.
void ScenarioWorld::Handle(const std::string& name, const ElectionReady& ready) {
  const ElectionMachine& m = *Get(name).machine;
  if (ready.soft_state) {
    Line(name + ": " + std::string(RoleName(ready.soft_state->role)) + " term=" +
         std::to_string(m.term()) + " leader=" +
         (ready.soft_state->leader.empty() ? "none" : ready.soft_state->leader));
  }
  if (ready.hard_state) {
    const v1::HardState& hs = *ready.hard_state;
    Get(name).durable = hs;
    Line(name + ": persist term=" + std::to_string(hs.term()) + " vote=" +
         (hs.voted_for().empty() ? "none" : hs.voted_for()) + " record=" +
         Key(hs.record()) + " committed=" + Key(hs.committed()));
  }
  for (const v1::PeerMessage& msg : ready.messages) {
    Line("send " + Describe(msg));
    mailbox_.push_back(msg);
  }
  if (ready.committed) {
    Line(name + ": commit " + Key(*ready.committed) + " in_flight=" +
         (ready.committed->in_flight().empty() ? "none" : ready.committed->in_flight()) +
         (ready.committed->payload().empty() ? "" : " payload=" + ready.committed->payload()));
  }
}

void ScenarioWorld::Deliver(bool until_empty) {
  do {
    std::deque<v1::PeerMessage> now;
    now.swap(mailbox_);
    for (const v1::PeerMessage& m : now) DeliverOne(m);
  } while (until_empty && !mailbox_.empty());
}

void ScenarioWorld::DeliverOne(const v1::PeerMessage& m) {
  Node& to = Get(m.to());
  if (cut_.contains({m.from(), m.to()}) || !to.up) {
    Line("> " + Describe(m) + " (lost: " + (to.up ? "link cut" : m.to() + " is down") + ")");
    return;
  }
  Line("> " + Describe(m));
  ++indent_;
  absl::StatusOr<ElectionReady> ready = to.machine->Step(m);
  if (ready.ok()) {
    auto before = out_.tellp();
    Handle(m.to(), *ready);
    if (out_.tellp() == before) Line("(nothing)");
  } else {
    Line("refused [" + ReasonOf(ready.status()) + "] " + std::string(ready.status().message()));
  }
  --indent_;
}

void ScenarioWorld::Drop(const Args& args) {
  auto matches = [&](const v1::PeerMessage& m) {
    return (args[0] == "*" || m.from() == args[0]) && (args[1] == "*" || m.to() == args[1]);
  };
  for (const v1::PeerMessage& m : mailbox_) {
    if (matches(m)) Line("lost " + Describe(m));
  }
  std::erase_if(mailbox_, matches);
}

void ScenarioWorld::Partition(const Args& args) {
  std::vector<std::vector<std::string>> groups(1);
  for (const std::string& a : args) {
    if (a == "|") {
      groups.emplace_back();
    } else {
      Get(a);
      groups.back().push_back(a);
    }
  }
  if (groups.size() < 2) Bad("partition A.. | B..");
  for (size_t g = 0; g < groups.size(); ++g) {
    for (size_t h = 0; h < groups.size(); ++h) {
      if (g == h) continue;
      for (const std::string& a : groups[g]) {
        for (const std::string& b : groups[h]) cut_.insert({a, b});
      }
    }
  }
}

void ScenarioWorld::Crash(const Args& args) {
  Node& node = Get(args[0]);
  node.up = false;
  Line(args[0] + ": down; keeps term=" + std::to_string(node.durable.term()) +
       " record=" + Key(node.durable.record()));
}

void ScenarioWorld::Restart(const Args& args) {
  Node& node = Get(args[0]);
  ElectionConfig config = base_;
  config.self = args[0];
  node.machine = std::make_unique<ElectionMachine>(config, node.durable, node.random);
  node.guard = std::make_unique<FenceGuard>(args[0], node.fence_durable);
  node.up = true;
  Line(args[0] + ": up at term=" + std::to_string(node.machine->term()) + " record=" +
       Key(node.machine->record()) + " committed=" + Key(node.machine->committed()));
}

void ScenarioWorld::Propose(const Args& args) {
  Node& node = Get(args[0]);
  absl::StatusOr<ElectionReady> ready =
      node.machine->Propose(Option(args, "in-flight", ""), Option(args, "payload", ""));
  if (!ready.ok()) {
    Line("refused [" + ReasonOf(ready.status()) + "] " + std::string(ready.status().message()));
    return;
  }
  Handle(args[0], *ready);
}

void ScenarioWorld::HandOff(const Args& args) {
  Node& leader = Get(args[0]);
  std::optional<v1::Fence> fence = leader.machine->CurrentFence();
  if (!fence || fence->in_flight().empty()) Bad(args[0] + " has no in-flight node to release");
  Node& holder = Get(fence->in_flight());
  HandoffAnswer answer{v1::HANDOFF_NEVER_STARTED, "scripted"};
  std::string named = Option(args, "outcome", "HANDOFF_NEVER_STARTED");
  if (!v1::HandoffOutcome_Parse(named, &answer.outcome)) Bad("no outcome " + named);
  holder.guard->ObserveTerm(holder.machine->term());
  absl::StatusOr<v1::ReleaseReply> reply =
      holder.guard->AdmitRelease(*fence, holder.machine->committed(), answer);
  if (!reply.ok()) {
    Line(fence->in_flight() + ": refused [" + ReasonOf(reply.status()) + "] " +
         std::string(reply.status().message()));
    return;
  }
  holder.fence_durable = holder.guard->state();  // persisted before answering
  std::string at = std::to_string(fence->term()) + "/" + std::to_string(fence->index());
  if (reply->released()) {
    Line(fence->in_flight() + ": released at " + at + ", highest term " +
         std::to_string(holder.fence_durable.highest_term()));
  } else {
    Line(fence->in_flight() + ": keeps its slot at " + at + " [" + reply->reason() + "] " +
         v1::HandoffOutcome_Name(reply->outcome()));
  }
  leader.machine->RecordRelease(fence->in_flight(), fence->term(), fence->index(),
                                reply->outcome());
}

void ScenarioWorld::Swap(const Args& args) {
  Node& node = Get(args[0]);
  v1::Fence fence = ParseFence(args[1]);
  // As PeerNode::AdmitSwap: a term seen in the election is a term seen.
  node.guard->ObserveTerm(node.machine->term());
  absl::Status s = node.guard->AdmitSwap(fence, node.machine->committed());
  if (!s.ok()) {
    Line(args[0] + ": refused [" + ReasonOf(s) + "] " + std::string(s.message()));
    return;
  }
  node.fence_durable = node.guard->state();
  Line(args[0] + ": swap admitted under " + args[1]);
}

void ScenarioWorld::Status() {
  for (const auto& [name, node] : nodes_) {
    const ElectionMachine& m = *node->machine;
    Line(name + ": " + (node->up ? std::string(RoleName(m.role())) : "down") +
         " term=" + std::to_string(m.term()) +
         " leader=" + (m.leader().empty() ? "none" : m.leader()) +
         " record=" + Key(m.record()) + " committed=" + Key(m.committed()) +
         " in_flight=" + (m.committed().in_flight().empty() ? "none" : m.committed().in_flight()));
  }
}

}  // namespace kmsfleet::sim
