// The explorer's invariants and canonical state (explore_world.h).
#include <charconv>
#include <string>
#include <unordered_map>

#include "explore_access.h"
#include "explore_world.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet::sim {
namespace {

// Catches a field added to ElectionMachine that the canonical form would
// miss (libstdc++ on x86-64 only; elsewhere the size differs).
#if defined(__GLIBCXX__) && defined(__x86_64__) && !defined(_GLIBCXX_DEBUG)
static_assert(sizeof(ElectionMachine) == 704,
              "ElectionMachine changed: add its new fields to CanonicalElection");
static_assert(sizeof(PlanMachine) == 776,
              "PlanMachine changed: add its new fields to CanonicalPlan");
static_assert(sizeof(ParityStreak) == 96,
              "ParityStreak changed: add its new fields to CanonicalPlan");
#endif

std::string Key(const v1::PlanRecord& r) {
  return std::to_string(r.term()) + "/" + std::to_string(r.index());
}

// Appends to one string: ostream formatting was a quarter of the run time.
class Writer {
 public:
  Writer& operator<<(const std::string& s) {
    out_ += s;
    return *this;
  }
  Writer& operator<<(char c) {
    out_ += c;
    return *this;
  }
  Writer& operator<<(uint64_t n) {
    char buffer[24];
    auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, n);
    out_.append(buffer, end);
    return *this;
  }
  Writer& operator<<(int n) { return *this << static_cast<uint64_t>(static_cast<uint32_t>(n)); }
  Writer& operator<<(bool b) { return *this << (b ? '1' : '0'); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// A fleet plan payload (--plan, a kilobyte or more) is written as its
// number in a table of every payload seen: exact, and it keeps the
// canonical text (hashed for every state) short. The table is not part of
// any state, and only grows.
uint64_t Intern(const std::string& payload) {
  static std::unordered_map<std::string, uint64_t> table;
  return table.try_emplace(payload, table.size()).first->second;
}

void PutPayload(Writer& out, const std::string& payload) {
  if (payload.size() <= 16) {
    out << payload;
  } else {
    out << '#' << Intern(payload);
  }
}

void Put(Writer& out, const v1::PlanRecord& r) {
  out << r.term() << '/' << r.index() << '/' << r.in_flight() << '/';
  PutPayload(out, r.payload());
  out << ';';
}

// Every field of the machine that its next steps depend on. The Ready
// bookkeeping (last hard and soft state, outbox, newly committed) is
// always the machine's own state again, or empty, between calls.
void CanonicalElection(Writer& out, const ElectionMachine& m) {
  using namespace access;  // NOLINT: the tags only
  out << m.term() << ',' << Read<VotedFor>(m) << ',' << static_cast<int>(m.role()) << ','
      << m.leader() << ',';
  Put(out, m.record());
  Put(out, m.committed());
  out << Read<ElectionElapsed>(m) << ',' << Read<HeartbeatElapsed>(m) << ','
      << Read<RandomizedTimeout>(m) << ',' << 'v';
  for (const auto& [voter, yes] : Read<Votes>(m)) out << voter << yes;
  out << ',' << 'm';
  for (const auto& [peer, r] : Read<Match>(m)) out << peer << r.term() << '/' << r.index() << ';';
  out << ',' << 'a';
  for (const std::string& peer : Read<RecentActive>(m)) out << peer;
  out << ',' << Read<Released>(m) << ',' << Read<PreVotedFor>(m) << ','
      << Read<PreVoteTerm>(m) << ',' << Read<PreVoteHoldUntil>(m) << ','
      << Read<TransferTarget>(m) << ',' << Read<TransferElapsed>(m) << '|';
}

void PutStatus(Writer& out, const absl::Status& s) {
  out << static_cast<int>(s.code()) << ':' << ReasonOf(s) << ';';
}

void PutAction(Writer& out, const PlanAction& a) {
  out << static_cast<int>(a.kind) << '/' << a.node << '/' << a.revision << '/' << a.version
      << '/' << a.operation_id << '/' << a.of_operation_id << '/' << a.expected_key_id_hash
      << '/' << static_cast<uint64_t>(a.stabilization_ms) << '/' << a.method << '/'
      << a.start_allowed << '/' << a.expected_staged_digest << '/';
  PutStatus(out, a.why);
}

// Every field of a result that ApplyResult reads (doctor and rotation
// always pass here, so their presence is what counts).
void PutResult(Writer& out, const ActionResult& r) {
  out << static_cast<int>(r.kind) << '/' << r.node << '/' << r.revision << '/';
  PutStatus(out, r.status);
  out << r.previous_artifact_verified << r.doctor.ran << r.doctor.passed << '/'
      << r.operation_id << '/' << static_cast<int>(r.outcome) << '/' << r.outcome_reason
      << '/' << r.outcome_message << '/' << r.released << ';';
}

// The coordinator's shell and its PlanMachine: every field their next
// steps depend on. Left out: ParityStreak's round stamps (every fresh
// round is newer than all before, so they decide nothing), the last
// round's views (a Step taken on them reads none; only whether there is
// one decides) and the config (self is the node, voters kPlanNodes).
void CanonicalPlan(Writer& out, const ExPlanCoordinator& p) {
  using namespace access;  // NOLINT: the tags only
  const PlanMachine& m = p.machine;
  out << 'P' << p.term << ',';
  if (m.committed()) PutPayload(out, m.committed()->SerializeAsString());
  const std::optional<uint64_t>& pending = ReadPlan<PlanPending>(m);
  out << ',' << (pending ? *pending + 1 : 0) << ',';
  const ParityStreak& parity = ReadPlan<PlanParity>(m);
  out << parity.consecutive() << ',' << parity.hash() << ',';
  PutStatus(out, parity.last_problem());
  for (const auto& [node, key] : ReadPlan<PlanIssued>(m)) out << node << '=' << key << ';';
  out << 'D';
  for (const ActionResult& r : ReadPlan<PlanDeferred>(m)) PutResult(out, r);
  out << 'H';
  for (const ActionResult& r : ReadPlan<PlanHeld>(m)) PutResult(out, r);
  // The explorer's clock stands still (kNowMs): a hold never runs out, and
  // only whether one began matters.
  out << ReadPlan<PlanHeldSince>(m).has_value();
  // The same for when the in-flight node was first seen ready: only which
  // operation it was (it times a warm-up, which decides nothing).
  if (const std::optional<InFlightReady>& seen = ReadPlan<PlanInFlightReady>(m)) {
    out << 'R' << seen->operation_id << ';';
  }
  // The newest round, which ReleaseCommitted judges a committed swap on
  // (its time is the explorer's standing clock: never too old).
  out << 'V';
  for (const NodeView& v : ReadPlan<PlanLastViews>(m)) {
    out << v.node << ':' << (v.unreachable_since_unix_ms != 0) << ':';
    if (v.state) {
      // Its time is the explorer's round counter, which decides nothing
      // here (as the parity streak's stamps, left out above).
      v1::NodeState state = *v.state;
      state.clear_observed_at_unix_ms();
      PutPayload(out, state.SerializeAsString());
    }
    if (v.registry) {
      out << ':' << v.registry->schema_version << ',' << v.registry->removed_records << ','
          << v.registry->active_key_id << ',' << static_cast<uint64_t>(v.registry->active_transit_version);
    }
    out << ';';
  }
  if (const std::optional<OpenBaoProbe>& o = ReadPlan<PlanLastOpenBao>(m)) {
    out << 'O' << o->address << ',' << o->status << ',';
    PutStatus(out, o->transport);
    PutPayload(out, o->body);
  }
  // Only the wording of `blocked` reads the time: the node and reason do.
  out << 'U';
  for (const auto& [node, u] : ReadPlan<PlanUnanswered>(m)) {
    out << node << ':' << ReasonOf(u.status) << ';';
  }
  out << 'p' << (p.pending_index ? *p.pending_index : 0) << ',';
  if (p.pending_plan) PutPayload(out, p.pending_plan->SerializeAsString());
  out << 'h';
  for (const PlanAction& a : p.held) PutAction(out, a);
  out << 'r';
  for (const ActionResult& r : p.results) PutResult(out, r);
  out << 'o';
  for (const auto& [key, o] : p.outstanding) {
    out << key << '=';
    PutAction(out, o.action);
    out << o.fence.term() << '/' << o.fence.index() << '/' << o.fence.in_flight() << o.poll
        << o.stale_fence << ';';
  }
  out << 'l' << !p.last_round.empty();
}

}  // namespace

std::string ExState::Canonical() const {
  Writer out;
  for (const auto& [name, node] : nodes_) {
    out << name << '{';
    if (node.machine) CanonicalElection(out, *node.machine);
    out << 'd' << node.durable.term() << ',' << node.durable.voted_for() << ',';
    Put(out, node.durable.record());
    Put(out, node.durable.committed());
    // The guard's state is what it persists: equal to fence_durable after
    // every admission, but a guard that only observed a term differs.
    if (node.guard) {
      const v1::FenceState& g = node.guard->state();
      out << 'g' << g.highest_term() << ',' << g.released_term() << ',' << g.released_index();
    }
    const v1::FenceState& f = node.fence_durable;
    out << 'f' << f.highest_term() << ',' << f.released_term() << ',' << f.released_index()
        << (node.running ? std::string(",run,") : std::string(",idle,"));
    if (node.journal) {
      out << node.journal->operation_id << ':' << static_cast<int>(node.journal->phase)
          << ':' << node.journal->open;
    }
    out << ',' << 'c';
    for (const std::string& k : node.commanded) out << k << ';';
    Put(out, node.applied);
    if (config_.plan) {
      out << 'v' << node.version << ',' << node.op_prev << ',' << node.op_target << ',';
      for (const auto& [id, phase] : node.ended) out << id << ':' << static_cast<int>(phase) << ';';
      if (node.plan) CanonicalPlan(out, *node.plan);
    }
    out << '}';
  }
  out << 'M';
  for (const auto& [text, entry] : inflight_) out << text << '*' << entry.second << '\n';
  out << 'B' << crashes_left_ << ',' << duplications_left_ << ',' << forgeries_left_ << 'L';
  for (const auto& [term, leader] : leader_of_term_) out << term << leader << ';';
  out << 'C';
  for (const auto& [index, r] : committed_index_) Put(out, r);
  if (config_.plan) {
    out << 'S';
    for (const auto& [to, a] : last_swap_) {
      out << to << '=';
      PutAction(out, *a);
    }
    out << plan_index_ << plan_phase_;
  }
  out << failure_;
  return out.Take();
}

void ExState::CheckApplied(const std::string& name, const v1::PlanRecord& record) {
  ExNode& node = nodes_.at(name);
  if (Newer(node.applied, record)) {
    return Fail("invariant 2: " + name + " applied " + Key(record) + " after " +
                Key(node.applied));
  }
  node.applied = record;
  auto [it, inserted] = committed_index_.emplace(record.index(), record);
  if (!inserted) {
    if (it->second.SerializeAsString() != record.SerializeAsString()) {
      Fail("invariant 2: index " + std::to_string(record.index()) + " committed as " +
           Key(it->second) + " and as " + Key(record) + " (on " + name + ")");
    }
    return;
  }
  if (it != committed_index_.begin() && std::prev(it)->second.term() > record.term()) {
    Fail("invariant 2: committed " + Key(record) + " follows a record of a later term");
  }
  if (std::next(it) != committed_index_.end() && std::next(it)->second.term() < record.term()) {
    Fail("invariant 2: committed " + Key(record) + " precedes a record of an earlier term");
  }
}

// At admission: a committed record names the node at exactly this fence,
// and no later committed record deposed it by naming another node (a
// command from a deposed term or a superseded record never runs).
void ExState::CheckAdmitted(const std::string& name, const v1::Fence& fence) {
  auto it = committed_index_.find(fence.index());
  if (it == committed_index_.end() || it->second.term() != fence.term() ||
      it->second.in_flight() != name) {
    return Fail("invariant 3: " + name + " started a swap under fence " +
                std::to_string(fence.term()) + "/" + std::to_string(fence.index()) +
                " that no committed record naming it matches");
  }
  for (++it; it != committed_index_.end(); ++it) {
    if (it->second.in_flight() != name) {
      return Fail("invariant 3: " + name + " started a swap under fence " +
                  std::to_string(fence.term()) + "/" + std::to_string(fence.index()) +
                  ", deposed by committed " + Key(it->second) + " naming '" +
                  it->second.in_flight() + "'");
    }
  }
  for (const auto& [other, node] : nodes_) {
    if (other != name && Disrupted(node)) {
      return Fail("invariant 3: " + name + " started a swap while " + other +
                  " is disrupted");
    }
  }
}

// The hand-off: a record putting a node in flight commits only while no
// other node is disrupted.
void ExState::CheckHandOff(const std::string& leader, const v1::PlanRecord& record) {
  for (const auto& [name, node] : nodes_) {
    if (name == record.in_flight() || !Disrupted(node)) continue;
    Fail("invariant 3 (hand-off): " + leader + " committed " + Key(record) +
         " putting '" + record.in_flight() + "' in flight while " + name + " is disrupted (" +
         (node.running ? "running" : "its last operation ended RollbackFailed") + ")");
  }
}

void ExState::CheckInvariants() {
  int disrupted = 0;
  for (const auto& [name, node] : nodes_) disrupted += Disrupted(node) ? 1 : 0;
  if (disrupted > 1) {
    Fail("invariant 3: " + std::to_string(disrupted) + " providers out of service at once");
  }
  for (const auto& [name, node] : nodes_) {
    if (!node.machine || node.machine->role() != Role::kLeader) continue;
    uint64_t term = node.machine->term();
    auto [it, inserted] = leader_of_term_.emplace(term, name);
    if (it->second != name) {
      Fail("invariant 1: " + it->second + " and " + name + " both led term " +
           std::to_string(term));
    }
    // Leader completeness: the leader of term T holds every record
    // committed before T.
    const v1::PlanRecord& held = node.machine->record();
    for (auto c = committed_index_.rbegin(); c != committed_index_.rend(); ++c) {
      if (c->second.term() >= term) continue;
      if (held.index() <= c->first) {
        Fail("invariant 2: leader " + name + " of term " + std::to_string(term) + " holds " +
             Key(held) + " but " + Key(c->second) + " was committed before");
      }
      break;
    }
  }
}

}  // namespace kmsfleet::sim
