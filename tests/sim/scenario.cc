#include "scenario.h"

#include <algorithm>
#include <optional>
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
  if (m.type() != v1::PRE_VOTE_RESP && m.type() != v1::VOTE_RESP &&
      m.type() != v1::TIMEOUT_NOW) {
    out += " record=" + Key(m.record());
  }
  if (m.type() == v1::APPEND) out += " committed=" + Key(m.committed());
  if (m.reject()) out += " reject";
  if (m.transfer()) out += " transfer";
  return out;
}

std::vector<std::string> Split(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// A script's text payload as is; a fleet plan (`plan`) by its revision.
std::string Payload(const v1::PlanRecord& r) {
  const std::string& p = r.payload();
  if (std::all_of(p.begin(), p.end(), [](char c) { return c >= ' ' && c <= '~'; })) return p;
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(p);
  return plan.ok() ? "plan revision " + std::to_string(plan->revision())
                   : std::to_string(p.size()) + " bytes";
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
  // `plan`: the node's provider and its last operation's journal.
  std::string version = "0.1.0";
  std::optional<SwapJournal> journal;
  // `plan`: the coordinator's shell, volatile (gone with a crash).
  std::unique_ptr<PlanMachine> plan;
  uint64_t plan_term = 0;
  std::optional<v1::FleetPlan> pending;  // proposed, not yet committed
  uint64_t pending_index = 0;
  std::vector<PlanAction> held;          // carried out once it commits
  std::vector<ActionResult> results;     // for the next Step
  std::string held_outcome;
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
    } else if (command == "transfer" && (args.size() == 1 || args.size() == 2)) {
      Transfer(args);
    } else if (command == "hand-off" && (args.size() == 1 || args.size() == 2)) {
      HandOff(args);
    } else if (command == "swap" && args.size() == 2) {
      Swap(args);
    } else if (command == "status") {
      Status();
    } else if (command == "plan" && !args.empty()) {
      Plan(args);
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
         (ready.committed->payload().empty() ? "" : " payload=" + Payload(*ready.committed)));
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
  node.plan.reset();  // what a coordinator holds in memory is lost
  node.pending.reset();
  node.held.clear();
  node.results.clear();
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

void ScenarioWorld::Transfer(const Args& args) {
  Node& node = Get(args[0]);
  absl::StatusOr<ElectionReady> ready =
      node.machine->TransferLeadership(Option(args, "to", ""));
  if (!ready.ok()) {
    Line("refused [" + ReasonOf(ready.status()) + "] " + std::string(ready.status().message()));
    return;
  }
  Line(args[0] + ": transferring to " + node.machine->transfer_target());
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


// ---- plan: the fleet plan machine on the coordinator ----

namespace {

constexpr char kScenarioHash[] = "UkPT2pXxYomOU_jD-ogCOXoOMmGd-JxBHK1XETCA4ps";

// "revision 3 Rolling in_flight=n2 [n1 Preflighted, n2 InFlight/SWAPPING, ...]"
std::string DescribePlan(const v1::FleetPlan& plan) {
  std::string out = "revision " + std::to_string(plan.revision()) + " " +
                    std::string(PlanPhaseName(plan.phase())) + " in_flight=" +
                    (plan.in_flight().empty() ? "none" : plan.in_flight()) + " [";
  for (int i = 0; i < plan.nodes_size(); ++i) {
    const v1::PlanNode& n = plan.nodes(i);
    out += (i > 0 ? ", " : "") + n.node() + " " + std::string(PlanNodePhaseName(n.phase()));
    if (n.stage() != v1::PLAN_STEP_STAGE_UNSPECIFIED) {
      std::string stage = v1::PlanStepStage_Name(n.stage());
      out += "/" + stage.substr(std::string("PLAN_STEP_STAGE_").size());
    }
  }
  out += "]";
  if (!plan.halt().reason().empty()) out += " halt=" + plan.halt().reason();
  if (plan.phase() == v1::PLAN_PHASE_BREAK_GLASS) {
    out += " break-glass=" + plan.break_glass().reason() + " nonce=" + plan.break_glass().nonce();
  }
  return out;
}

std::string FenceText(const v1::Fence& f) {
  return std::to_string(f.term()) + "/" + std::to_string(f.index()) + "/" +
         (f.in_flight().empty() ? "none" : f.in_flight());
}

std::optional<OperatorCommand> ParseCommand(const std::vector<std::string>& args) {
  static const std::map<std::string, CommandKind> kKinds = {
      {"upgrade", CommandKind::kStart},   {"pause", CommandKind::kPause},
      {"resume", CommandKind::kResume},   {"abort", CommandKind::kAbort},
      {"rollback", CommandKind::kRollback}, {"ack", CommandKind::kAckBreakGlass}};
  if (args.size() < 2 || args[1].find('=') != std::string::npos) return std::nullopt;
  auto it = kKinds.find(args[1]);
  if (it == kKinds.end()) Bad("no plan command " + args[1]);
  OperatorCommand c;
  c.kind = it->second;
  c.who = "CN=operator";
  c.nonce = Option(args, "nonce", "");
  c.request.target_version = "0.2.0";
  return c;
}

}  // namespace

void ScenarioWorld::Plan(const Args& args) {
  const std::string& name = args[0];
  Node& leader = Get(name);
  if (!leader.up) Bad(name + " is down");
  PlanMachineFor(name);
  PlanCommitted(name);
  PlanInput in = PlanObserve(name);
  in.command = ParseCommand(args);
  PlanReady ready = leader.plan->Step(in);
  if (!ready.refusal.ok()) {
    Line("refused [" + ReasonOf(ready.refusal) + "] " + std::string(ready.refusal.message()));
  }
  if (!ready.blocked.ok()) Line("waits [" + ReasonOf(ready.blocked) + "]");
  for (const PlanAction& a : ready.actions) {
    if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) {
      Line(std::string(ActionKindName(a.kind)) + " [" + ReasonOf(a.why) + "]");
    }
  }
  const std::string outcome = Option(args, "outcome", "Stable");
  if (!ready.plan) {
    for (const PlanAction& a : ready.actions) PlanCarryOut(name, a, outcome);
    return;
  }
  absl::StatusOr<std::string> payload = EncodePlan(*ready.plan);
  if (!payload.ok()) Bad(std::string(payload.status().message()));
  Line(name + ": propose " + DescribePlan(*ready.plan));
  absl::StatusOr<ElectionReady> proposed =
      leader.machine->Propose(ready.plan->in_flight(), *payload);
  if (!proposed.ok()) {
    Line("refused [" + ReasonOf(proposed.status()) + "] " +
         std::string(proposed.status().message()));
    leader.plan->Abandon();
    return;
  }
  leader.pending = *ready.plan;
  leader.pending_index = leader.machine->record().index();
  leader.held.clear();
  leader.held_outcome = outcome;
  for (const PlanAction& a : ready.actions) {
    if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) continue;
    Line("hold " + std::string(ActionKindName(a.kind)) + " " + a.node + " until it commits");
    leader.held.push_back(a);
  }
  Handle(name, *proposed);
  PlanCommitted(name);
}

// One machine per term, built from the committed record once the leader's
// own first record committed.
void ScenarioWorld::PlanMachineFor(const std::string& name) {
  Node& leader = Get(name);
  const ElectionMachine& m = *leader.machine;
  if (leader.plan && leader.plan_term == m.term()) return;
  if (!m.CurrentFence()) Bad(name + " does not lead with a record committed at its term");
  std::optional<v1::FleetPlan> committed;
  if (!m.committed().payload().empty()) {
    absl::StatusOr<v1::FleetPlan> plan = DecodePlan(m.committed().payload());
    if (!plan.ok()) Bad(std::string(plan.status().message()));
    committed = FleetPlanIn(m.committed().payload());  // as the agents' coordinator takes it
  }
  leader.plan = std::make_unique<PlanMachine>(
      PlanMachineConfig{.self = name, .voters = base_.voters}, committed);
  leader.plan_term = m.term();
  leader.pending.reset();
  leader.held.clear();
  leader.results.clear();
  Line(name + ": plan machine for term " + std::to_string(m.term()) + " from " +
       (committed ? DescribePlan(*committed) : std::string("no plan")));
}

// Commit first: held actions go out once the proposal committed.
void ScenarioWorld::PlanCommitted(const std::string& name) {
  Node& leader = Get(name);
  const v1::PlanRecord& c = leader.machine->committed();
  if (!leader.pending || c.term() != leader.plan_term || c.index() < leader.pending_index) {
    return;
  }
  leader.plan->Committed(*leader.pending);
  Line(name + ": revision " + std::to_string(leader.pending->revision()) + " committed at " +
       Key(c));
  leader.pending.reset();
  std::vector<PlanAction> held =
      leader.plan->ReleaseCommitted(std::move(leader.held), plan_clock_ms_, plan_clock_ms_);
  leader.held.clear();
  for (const PlanAction& a : held) PlanCarryOut(name, a, leader.held_outcome);
}

// Every voter healthy on its version and one key_id hash, except a node
// left RollbackFailed; OpenBao unsealed.
PlanInput ScenarioWorld::PlanObserve(const std::string& name) {
  Node& leader = Get(name);
  plan_clock_ms_ += 1000;
  PlanInput in;
  // Every round is asked for and answered at once: a scenario's clock
  // moves only between rounds.
  in.now_unix_ms = in.now_mono_ms = in.views_asked_mono_ms = plan_clock_ms_;
  for (const std::string& v : base_.voters) {
    const Node& node = Get(v);
    NodeView view;
    view.node = v;
    if (!node.up) {
      view.unreachable_since_unix_ms = plan_clock_ms_;
      in.views.push_back(std::move(view));
      continue;
    }
    const bool serving = !node.journal || node.journal->phase != SwapPhase::kRollbackFailed;
    v1::NodeState s;
    s.set_node(v);
    s.set_provider_version(node.version);
    s.set_live(serving);
    s.set_ready(serving);
    s.set_key_id_hash_metric(kScenarioHash);
    s.set_key_id_hash_socket(kScenarioHash);
    s.set_rotation_state("active");
    s.set_observed_at_unix_ms(plan_clock_ms_);
    view.state = std::move(s);
    view.registry = RegistryFacts{"keyregistry.openbao-kms/v1alpha1", 0};
    in.views.push_back(std::move(view));
  }
  in.openbao = OpenBaoProbe{"https://bao:8200", absl::OkStatus(), 200, ""};
  in.results = std::move(leader.results);
  leader.results.clear();
  in.random = 0x5ce0a110 + static_cast<uint64_t>(plan_clock_ms_);
  return in;
}

void ScenarioWorld::PlanCarryOut(const std::string& name, const PlanAction& a,
                                 const std::string& outcome) {
  if (a.kind == ActionKind::kHalt || a.kind == ActionKind::kBreakGlass) return;
  Node& leader = Get(name);
  Node& node = Get(a.node);
  v1::Fence fence = *leader.machine->CurrentFence();
  std::string what = name + " -> " + a.node + " " + std::string(ActionKindName(a.kind)) +
                     " under " + FenceText(fence) + ": ";
  ActionResult r;
  r.node = a.node;
  r.revision = a.revision;
  r.operation_id = a.operation_id;
  if (!node.up) {
    r.kind = ResultKind::kStaged;  // Unavailable: the machine issues it again
    r.status = absl::UnavailableError(a.node + " is down");
    Line(what + "no answer");
    leader.results.push_back(std::move(r));
    return;
  }
  switch (a.kind) {
    case ActionKind::kStage:
      r.kind = ResultKind::kStaged;
      r.previous_artifact_verified = true;
      what += "staged " + a.version;
      break;
    case ActionKind::kPreflight:
      r.kind = ResultKind::kPreflighted;
      r.doctor = {a.node, true, true, ""};
      r.rotation.node = a.node;
      r.rotation.metric_state = "active";
      r.rotation.report = RotationReport{};
      r.rotation.report->transit_metadata_status = "pass";
      r.rotation.report->rotation_state = "active";
      what += "doctor and rotation-plan pass";
      break;
    case ActionKind::kRestartApiServer:
      r.kind = ResultKind::kApiServerRestarted;
      what += "kube-apiserver ready";
      break;
    case ActionKind::kSwap:
    case ActionKind::kRollbackNode: {
      r.kind = ResultKind::kOperation;
      if (!a.start_allowed && (!node.journal || node.journal->operation_id != a.operation_id)) {
        what += "follow-only: no such operation, nothing started";  // kNotFound
        break;
      }
      node.guard->ObserveTerm(node.machine->term());
      absl::Status s = node.guard->AdmitSwap(fence, node.machine->committed());
      if (!s.ok()) {
        r.status = absl::UnavailableError(ReasonOf(s));
        what += "refused [" + ReasonOf(s) + "]";
        break;
      }
      node.fence_durable = node.guard->state();
      absl::StatusOr<SwapPhase> phase = ParsePhase(outcome);
      if (!phase.ok()) Bad("no outcome " + outcome);
      if (!node.journal || node.journal->operation_id != a.operation_id) {
        SwapJournal j;
        j.operation_id = a.operation_id;
        j.phase = *phase;
        j.open = false;
        j.fence_term = fence.term();
        j.fence_index = fence.index();
        j.started_unix_ms = plan_clock_ms_;
        node.journal = j;
        if (*phase == SwapPhase::kStable) node.version = a.version;
      }
      const SwapPhase ended = node.journal->phase;
      r.outcome = ended == SwapPhase::kStable       ? OperationOutcome::kStable
                  : ended == SwapPhase::kRolledBack ? OperationOutcome::kRolledBack
                                                    : OperationOutcome::kRollbackFailed;
      what += "admitted, " + a.operation_id + " ended " +
              std::string(PhaseName(node.journal->phase)) + " on " + node.version;
      break;
    }
    case ActionKind::kHandOff: {
      r.kind = ResultKind::kHandOff;
      HandoffFacts facts;
      if (node.journal) facts.journals.push_back(*node.journal);
      node.guard->ObserveTerm(node.machine->term());
      absl::StatusOr<v1::ReleaseReply> reply = node.guard->AdmitRelease(
          fence, node.machine->committed(), DecideHandoff(facts, fence));
      if (!reply.ok()) {
        r.status = absl::UnavailableError(ReasonOf(reply.status()));
        what += "refused [" + ReasonOf(reply.status()) + "]";
        break;
      }
      node.fence_durable = node.guard->state();
      if (!leader.machine->RecordRelease(a.node, fence.term(), fence.index(),
                                         reply->outcome()) &&
          reply->released()) {
        r.status = absl::UnavailableError("answered under a record being replaced");
        what += "answered under a record being replaced";
        break;
      }
      r.released = reply->released();
      what += (r.released ? "released " : "keeps its slot ") +
              v1::HandoffOutcome_Name(reply->outcome());
      break;
    }
    default:
      return;
  }
  Line(what);
  leader.results.push_back(std::move(r));
}

}  // namespace kmsfleet::sim
