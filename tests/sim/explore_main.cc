// kmsfleet_explore: enumerates every schedule of the agents' core machines
// up to a bound (explore_world.h), depth first, pruning states seen
// before by a 128-bit hash of their canonical form, and checks the
// invariants in every state reached.
//   kmsfleet_explore --start swapping --bound 8   as CI (label sim), one of five
//   kmsfleet_explore --start elected --bound 10   a longer local run
//   kmsfleet_explore --replay FILE [--mutate M]   replay a counterexample
// Options:
//   --plan   the leader's coordinator is the real PlanMachine driving one
//       upgrade of n2 then n3 (explore_plan.cc); --auto-rollback 0|1 (1)
//   --start fresh|elected|swapping|handed-off|failover|n3-swapping   where to begin
//       (default elected): after a fault-free prefix up to n1 leading
//       term 1 and committing n2 in flight; swapping: until n2 admitted
//       its swap; handed-off: until n2 ended Stable and n1 committed n3;
//       failover: n1 crashes while n2 swaps, until a term-2 leader has
//       committed its first record; with --plan also n3-swapping: n2
//       ended Stable and n3 admitted its swap; handing-off: n2's operation
//       ended --outcome and n1 committed the plan's hand-off stage for it
//       (a failed outcome only: a Stable result is held uncommitted until
//       its hand-off and the next slot commit together, PlanStep::Holds);
//       n3-handing-off: the same for n3, after n2 ended Stable;
//       released, n3-released: until the node released its slot and n1
//       committed the plan without it in flight (these four begin with
//       nothing in flight); rolling-back: n3's swap ended RolledBack and
//       n2 admitted the rollback of its own
//   --outcome Stable|RolledBack|RollbackFailed|Preflighted   how the
//       operation the handing-off prefixes end ends (Stable); Preflighted:
//       it failed before the stop (DOCTOR_FAILED), nothing touched
//   --bound N (12: events after the prefix), --max-term T (2),
//   --max-messages M (6), --crashes C (1), --duplications D (1),
//   --forgeries F (1: swaps the adversary sends under made-up fences)
//   --mutate release-rollback-failed|skip-fence-guard   a broken rule in
//       this world model, never in src/core
//   --counterexample FILE (explore-counterexample.txt)
//   --shortest   iterative deepening: a shortest counterexample
//   --show-prefix   print the starting point's prefix as a transcript
//   --max-states N   stop (exit 3) beyond N states; 30 M, about 2 GiB
// Exit 0 when no invariant failed, 1 with a counterexample, 2 on misuse.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "explore_world.h"
#include "scenario_file.h"

namespace kmsfleet::sim {
namespace {

// Where the exploration starts: at the beginning, or after a fault-free
// prefix (the schedules explored are then the prefix's continuations).
enum class Start {
  kFresh, kElected, kSwapping, kHandedOff, kFailover,
  // --plan only: the plan machine's hand-off stage committed for n2, or
  // for n3 after n2 ended Stable (each operation ended --outcome).
  kN3Swapping, kHandingOff, kN3HandingOff,
  // --plan only: n2 (or n3) released its slot and n1 committed the plan
  // without it in flight.
  kReleased, kN3Released,
  // --plan only: n3's swap ended RolledBack, the plan rolls back, and n2
  // admitted the rollback of its swap.
  kRollingBack
};

// --plan: whether n1 leads and its committed plan holds `node` at the
// hand-off stage.
bool HandingOff(const ExState& s, const std::string& node, bool released) {
  const ExNode& n1 = s.nodes().at("n1");
  if (!n1.machine || n1.machine->role() != Role::kLeader ||
      n1.machine->committed().in_flight() != (released ? "" : node)) {
    return false;
  }
  absl::StatusOr<v1::FleetPlan> plan = DecodePlan(n1.machine->committed().payload());
  if (!plan.ok()) return false;
  for (const v1::PlanNode& n : plan->nodes()) {
    if (n.node() != node) continue;
    if (!released) return n.stage() == v1::PLAN_STEP_STAGE_HANDING_OFF;
    return n.phase() == v1::PLAN_NODE_PHASE_DONE || n.phase() == v1::PLAN_NODE_PHASE_FAILED ||
           n.phase() == v1::PLAN_NODE_PHASE_ROLLED_BACK;
  }
  return false;
}

struct Options {
  ExploreConfig config;
  int bound = 12;
  Start start = Start::kElected;
  std::string counterexample = "explore-counterexample.txt";
  std::string replay;
  bool shortest = false;
  bool show_prefix = false;  // print the prefix's transcript first
  SwapPhase outcome = SwapPhase::kStable;  // of the prefix's last operation
  size_t max_states = 30000000;  // about 2 GiB of fingerprints
  std::string command_line;
};

struct Fingerprint {
  uint64_t a = 0, b = 0;
  bool operator==(const Fingerprint&) const = default;
};
struct FingerprintHash {
  size_t operator()(const Fingerprint& f) const { return f.a; }
};

// Two independent 64-bit hashes: a collision, which would prune a state
// never explored, is about n^2 / 2^129 likely.
Fingerprint Fingerprint128(const std::string& s) {
  uint64_t fnv = 1469598103934665603ULL;
  for (unsigned char c : s) fnv = (fnv ^ c) * 1099511628211ULL;
  return {std::hash<std::string>{}(s), fnv};
}

bool Reached(Start start, const ExState& s) {
  const ExNode& n1 = s.nodes().at("n1");
  switch (start) {
    case Start::kFresh: return true;
    case Start::kElected:  // n1 leads term 1 and has committed n2 in flight
      return n1.machine->role() == Role::kLeader && n1.machine->committed().in_flight() == "n2";
    case Start::kSwapping:  // and n2 has admitted its swap
      return s.nodes().at("n2").running;
    case Start::kHandedOff:  // n2 ended Stable, released; n1 committed n3
      return n1.machine->role() == Role::kLeader && n1.machine->committed().in_flight() == "n3";
    case Start::kN3Swapping:  // and n3 has admitted its swap
      return s.nodes().at("n3").running;
    case Start::kHandingOff: return HandingOff(s, "n2", false);
    case Start::kN3HandingOff: return HandingOff(s, "n3", false);
    case Start::kReleased: return HandingOff(s, "n2", true);
    case Start::kN3Released: return HandingOff(s, "n3", true);
    case Start::kRollingBack: {
      const ExNode& n2 = s.nodes().at("n2");
      return n2.running && n2.journal->operation_id.find(".rollback.") != std::string::npos;
    }
    case Start::kFailover:  // n1 crashed while n2 swapped; term 2 committed
      for (const auto& [name, node] : s.nodes()) {
        if (node.machine && node.machine->role() == Role::kLeader &&
            node.machine->committed().term() == 2) {
          return true;
        }
      }
      return false;
  }
  return true;
}

// The prefix's next event: whatever is in flight, in the order of its
// text; else the start's one fault or outcome; else a tick of n1, or, once
// n1 is down, of n2 and n3 in turn.
Event PrefixStep(Start start, SwapPhase outcome, const ExState& s, int step) {
  for (const Event& e : s.Enabled()) {
    if (e.kind == EventKind::kDeliver) return e;
  }
  const bool n2_running = s.nodes().at("n2").running;
  const bool n1_up = s.nodes().at("n1").machine != nullptr;
  const bool n3_last = start == Start::kN3HandingOff || start == Start::kN3Released ||
                       start == Start::kRollingBack;
  if (start == Start::kRollingBack) outcome = SwapPhase::kRolledBack;
  if ((start == Start::kHandedOff || start == Start::kN3Swapping || n3_last) && n2_running) {
    return NodeEvent(EventKind::kFinish, "n2");
  }
  if ((start == Start::kHandingOff || start == Start::kReleased) && n2_running) {
    return NodeEvent(EventKind::kFinish, "n2", outcome);
  }
  if (n3_last && s.nodes().at("n3").running) {
    return NodeEvent(EventKind::kFinish, "n3", outcome);
  }
  if (start == Start::kFailover && n2_running && n1_up) return NodeEvent(EventKind::kCrash, "n1");
  if (n1_up) return NodeEvent(EventKind::kTick, "n1");
  return NodeEvent(EventKind::kTick, step % 2 == 0 ? "n2" : "n3");
}

std::vector<Event> Prefix(const ExploreConfig& config, Start start, SwapPhase outcome) {
  ExState s(config);
  std::vector<Event> prefix;
  // The hand-off starts begin with nothing in flight: the plan's end is
  // then within reach of the bounds.
  const bool quiet = start == Start::kHandingOff || start == Start::kN3HandingOff ||
                     start == Start::kReleased || start == Start::kN3Released;
  for (int i = 0; i < 2000; ++i) {
    if (Reached(start, s) && quiet) {
      std::vector<Event> enabled = s.Enabled();
      auto deliver = std::find_if(enabled.begin(), enabled.end(), [](const Event& e) {
        return e.kind == EventKind::kDeliver;
      });
      if (deliver == enabled.end()) return prefix;
      s.Apply(*deliver, nullptr);
      prefix.push_back(*deliver);
      continue;
    }
    if (Reached(start, s)) return prefix;
    Event next = PrefixStep(start, outcome, s, i);
    s.Apply(next, nullptr);
    prefix.push_back(next);
  }
  std::cerr << "the prefix did not reach its goal\n";
  std::exit(2);
}

// Replays `schedule` from a fresh world, writing each event and what
// happened as a transcript block; the violation is the last line.
std::string Transcript(const Options& o, const std::vector<Event>& schedule,
                       std::string* failure) {
  ExState s(o.config);
  std::ostringstream out;
  for (const Event& e : schedule) {
    std::vector<std::string> log;
    s.Apply(e, &log);
    out << EventText(e) << "\n----\n";
    for (const std::string& line : log) out << line << "\n";
    if (log.empty()) out << "(nothing)\n";
    if (!s.failure().empty()) out << "VIOLATION " << s.failure() << "\n";
    out << "\n";
  }
  *failure = s.failure();
  return out.str();
}

std::string MutationFlag(const ExploreConfig& c) {
  std::string plan = c.plan ? std::string(" --plan") + (c.auto_rollback ? "" : " --auto-rollback 0")
                            : "";
  switch (c.mutation) {
    case Mutation::kNone: return plan;
    case Mutation::kReleaseRollbackFailed: return plan + " --mutate release-rollback-failed";
    case Mutation::kSkipFenceGuard: return plan + " --mutate skip-fence-guard";
  }
  return plan;
}

int Counterexample(const Options& o, const std::vector<Event>& schedule) {
  std::string failure;
  std::string transcript = Transcript(o, schedule, &failure);
  std::cout << "counterexample after " << schedule.size() << " events: " << failure << "\n";
  for (const Event& e : schedule) std::cout << "  " << EventText(e) << "\n";
  std::ofstream file(o.counterexample);
  file << "# kmsfleet_explore counterexample: " << failure << "\n"
       << "# found by: kmsfleet_explore" << o.command_line << "\n"
       << "# replay: kmsfleet_explore --replay FILE" << MutationFlag(o.config)
       << "\n\n"
       << transcript;
  std::cout << "transcript written to " << o.counterexample << "\n";
  return 1;
}

// What the explored schedules reached, so that a bound too small to reach
// the interesting cases shows (the random simulator's summary does the
// same).
struct Coverage {
  int64_t second_term = 0;     // states where a leader of term 2 exists
  int64_t handed_off = 0;      // states where a record naming n3 committed
  int64_t crashed = 0;         // states with the crash spent
  std::map<std::string, int64_t> notes;  // refusals by reason, withheld
  std::map<std::string, int64_t> plan_phases;  // --plan: newest committed

  void Count(const ExState& s) {
    bool term2 = false, n3 = false, crash = false;
    for (const auto& [name, node] : s.nodes()) {
      if (node.machine && node.machine->role() == Role::kLeader && node.machine->term() == 2) {
        term2 = true;
      }
      n3 = n3 || node.applied.in_flight() == "n3";
      crash = crash || !node.machine;
    }
    second_term += term2;
    handed_off += n3;
    crashed += crash;
    if (!s.plan_phase().empty()) ++plan_phases[s.plan_phase()];
  }
  std::string Text() const {
    std::string out = "coverage: " + std::to_string(second_term) +
                      " states with a term-2 leader, " + std::to_string(handed_off) +
                      " after the hand-off to n3, " + std::to_string(crashed) +
                      " with a node down; refused or withheld:";
    for (const auto& [note, count] : notes) out += " " + note + " " + std::to_string(count);
    if (!plan_phases.empty()) {
      out += "\nplan: states by the newest committed plan's phase:";
      for (const auto& [phase, count] : plan_phases) {
        out += " " + phase + " " + std::to_string(count);
      }
    }
    return out;
  }
};

// One state on the depth-first path: the events enabled in it, the next
// one to try, and how many more events the bound allows below it.
struct Frame {
  ExState state;
  std::vector<Event> events;
  size_t next = 0;
  int remaining = 0;
};

// Depth-first, so that memory is the path plus one fingerprint per state.
// A state is explored again only when reached with more of the bound left
// than before (nearer the start), so every state within the bound is
// explored with every schedule the bound allows below it.
int ExploreTo(const Options& o, const std::vector<Event>& prefix) {
  auto started = std::chrono::steady_clock::now();
  ExState start(o.config);
  for (const Event& e : prefix) start.Apply(e, nullptr);
  std::unordered_map<Fingerprint, int, FingerprintHash> best;
  best.emplace(Fingerprint128(start.Canonical()), o.bound);
  std::vector<Frame> path;
  path.push_back(Frame{start, start.Enabled(), 0, o.bound});
  int64_t transitions = 0, pruned = 0, repeats = 0, reexplored = 0;
  int deepest = 0;
  Coverage coverage;
  while (!path.empty()) {
    Frame& top = path.back();
    if (top.remaining == 0 || top.next == top.events.size()) {
      path.pop_back();
      continue;
    }
    const Event& e = top.events[top.next++];
    ExState s = top.state;
    s.Apply(e, nullptr);
    ++transitions;
    if (!s.note().empty()) ++coverage.notes[s.note()];
    if (!s.failure().empty()) {
      std::vector<Event> schedule = prefix;
      for (const Frame& f : path) schedule.push_back(f.events[f.next - 1]);
      return Counterexample(o, schedule);
    }
    if (s.OutOfBound()) {
      ++pruned;
      continue;
    }
    int remaining = top.remaining - 1;
    auto [it, inserted] = best.try_emplace(Fingerprint128(s.Canonical()), remaining);
    if (!inserted) {
      if (it->second >= remaining) {
        ++repeats;
        continue;
      }
      it->second = remaining;
      ++reexplored;
    } else {
      coverage.Count(s);
    }
    if (best.size() > o.max_states) {
      std::cout << "stopped: more than " << o.max_states << " states (--max-states)\n";
      return 3;
    }
    deepest = std::max(deepest, o.bound - remaining);
    std::vector<Event> events = s.Enabled();
    path.push_back(Frame{std::move(s), std::move(events), 0, remaining});
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::cout << "no invariant violated: " << best.size() << " distinct states explored, "
            << transitions << " transitions (" << repeats << " to states seen before, "
            << reexplored << " re-explored nearer the start, " << pruned
            << " beyond the term or message bound), depth bound " << o.bound
            << " (deepest state " << deepest << "), max frontier " << o.bound + 1
            << " (the depth-first path), after a prefix of " << prefix.size()
            << " events, " << seconds << " s\n"
            << coverage.Text() << "\n";
  return 0;
}

// --shortest: bounds 1, 2, ... in turn (iterative deepening), so that a
// counterexample is one of the shortest; the last bound dominates the cost.
int Explore(const Options& o) {
  std::vector<Event> prefix = Prefix(o.config, o.start, o.outcome);
  if (o.show_prefix) {
    std::string failure;
    std::cout << Transcript(o, prefix, &failure);
  }
  if (!o.shortest) return ExploreTo(o, prefix);
  Options each = o;
  for (each.bound = 1; each.bound <= o.bound; ++each.bound) {
    if (int rc = ExploreTo(each, prefix); rc != 0) return rc;
  }
  return 0;
}

// Replays a transcript: each command's events must match, and the
// violation (if any) is reported.
int Replay(const Options& o) {
  std::ifstream in(o.replay);
  if (!in) {
    std::cerr << o.replay << ": cannot be read\n";
    return 2;
  }
  ExState s(o.config);
  for (const Block& b : ParseScenario(in)) {
    if (b.command.empty()) continue;
    absl::StatusOr<Event> e = ParseEvent(b.command);
    std::vector<std::string> log;
    std::string actual;
    if (!e.ok()) {
      actual = "error: " + std::string(e.status().message()) + "\n";
    } else if (!s.Apply(*e, &log)) {
      actual = "error: not enabled now\n";
    } else {
      for (const std::string& line : log) actual += line + "\n";
      if (log.empty()) actual += "(nothing)\n";
      if (!s.failure().empty()) actual += "VIOLATION " + s.failure() + "\n";
    }
    if (actual != b.expected) {
      std::cerr << o.replay << ":" << b.line << ": " << b.command << "\n--- expected\n"
                << b.expected << "--- actual\n" << actual;
      return 1;
    }
  }
  std::cout << o.replay << ": transcript matches; "
            << (s.failure().empty() ? "no violation" : "violation: " + s.failure()) << "\n";
  return 0;
}

bool ParseArgs(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    o.command_line += " " + arg;
    if (arg == "--shortest") {
      o.shortest = true;
      continue;
    }
    if (arg == "--show-prefix") {
      o.show_prefix = true;
      continue;
    }
    if (arg == "--plan") {
      o.config.plan = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    std::string value = argv[++i];
    o.command_line += " " + value;
    int n = std::atoi(value.c_str());
    if (arg == "--bound") o.bound = n;
    else if (arg == "--max-term") o.config.max_term = static_cast<uint64_t>(n);
    else if (arg == "--max-messages") o.config.max_messages = n;
    else if (arg == "--crashes") o.config.crashes = n;
    else if (arg == "--duplications") o.config.duplications = n;
    else if (arg == "--forgeries") o.config.forgeries = n;
    else if (arg == "--max-states") o.max_states = static_cast<size_t>(std::atoll(value.c_str()));
    else if (arg == "--counterexample") o.counterexample = value;
    else if (arg == "--replay") o.replay = value;
    else if (arg == "--start" && value == "fresh") o.start = Start::kFresh;
    else if (arg == "--start" && value == "elected") o.start = Start::kElected;
    else if (arg == "--start" && value == "swapping") o.start = Start::kSwapping;
    else if (arg == "--start" && value == "handed-off") o.start = Start::kHandedOff;
    else if (arg == "--start" && value == "failover") o.start = Start::kFailover;
    else if (arg == "--start" && value == "n3-swapping") o.start = Start::kN3Swapping;
    else if (arg == "--start" && value == "handing-off") o.start = Start::kHandingOff;
    else if (arg == "--start" && value == "n3-handing-off") o.start = Start::kN3HandingOff;
    else if (arg == "--start" && value == "released") o.start = Start::kReleased;
    else if (arg == "--start" && value == "n3-released") o.start = Start::kN3Released;
    else if (arg == "--start" && value == "rolling-back") o.start = Start::kRollingBack;
    else if (arg == "--outcome" && ParsePhase(value).ok()) o.outcome = *ParsePhase(value);
    else if (arg == "--auto-rollback") o.config.auto_rollback = n != 0;
    else if (arg == "--mutate" && value == "release-rollback-failed") o.config.mutation = Mutation::kReleaseRollbackFailed;
    else if (arg == "--mutate" && value == "skip-fence-guard") o.config.mutation = Mutation::kSkipFenceGuard;
    else return false;
  }
  const bool plan_start = o.start == Start::kN3Swapping || o.start == Start::kHandingOff ||
                          o.start == Start::kN3HandingOff || o.start == Start::kReleased ||
                          o.start == Start::kN3Released || o.start == Start::kRollingBack;
  return o.bound >= 0 && (o.config.plan || !plan_start);
}

}  // namespace
}  // namespace kmsfleet::sim

int main(int argc, char** argv) {
  kmsfleet::sim::Options o;
  if (!kmsfleet::sim::ParseArgs(argc, argv, o)) {
    std::cerr << "usage: " << argv[0]
              << " [--plan [--auto-rollback 0|1]] [--bound N] [--start fresh|elected|swapping|handed-off|"
                 "failover|n3-swapping|handing-off|n3-handing-off|released|n3-released|rolling-back]"
                 " [--outcome PHASE]"
                 " [--max-term T]"
                 " [--max-messages M]"
                 " [--crashes C] [--duplications D] [--forgeries F] [--mutate release-rollback-failed|"
                 "skip-fence-guard] [--counterexample FILE] | --replay FILE [--mutate ...]\n";
    return 2;
  }
  if (!o.replay.empty()) return kmsfleet::sim::Replay(o);
  return kmsfleet::sim::Explore(o);
}
