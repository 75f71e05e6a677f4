// Reads the private volatile state of ElectionMachine (and, for --plan,
// of PlanMachine) for the explorer's
// state hash (explore_world.h), without a hook in src/core: an explicit
// template instantiation may name private members ([temp.spec.general]/6),
// and the pointers to members it captures are then read, never written.
// Internal to tests/sim.
//
// Every field that the machine's next step depends on must be in
// CanonicalElection or CanonicalPlan (explore_check.cc); the size checks
// there fail the build on this platform when a field is added, as a
// reminder.
#ifndef KMSFLEET_TESTS_SIM_EXPLORE_ACCESS_H_
#define KMSFLEET_TESTS_SIM_EXPLORE_ACCESS_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kmsfleet/core/election.h"
#include "kmsfleet/core/plan_machine.h"

namespace kmsfleet::sim::access {

template <typename Tag, typename Tag::type Member>
struct Capture {
  friend typename Tag::type Get(Tag) { return Member; }
};

using VoteMap = std::map<std::string, bool>;
using MatchMap = std::map<std::string, v1::PlanRecord>;
using NameSet = std::set<std::string>;

#define KMSFLEET_EXPLORE_FIELD(Name, Type, Field)                   \
  struct Name {                                                     \
    using type = Type ElectionMachine::*;                           \
    friend type Get(Name);                                          \
  };                                                                \
  template struct Capture<Name, &ElectionMachine::Field>

KMSFLEET_EXPLORE_FIELD(VotedFor, std::string, voted_for_);
KMSFLEET_EXPLORE_FIELD(ElectionElapsed, int, election_elapsed_);
KMSFLEET_EXPLORE_FIELD(HeartbeatElapsed, int, heartbeat_elapsed_);
KMSFLEET_EXPLORE_FIELD(RandomizedTimeout, int, randomized_timeout_);
KMSFLEET_EXPLORE_FIELD(Votes, VoteMap, votes_);
KMSFLEET_EXPLORE_FIELD(Match, MatchMap, match_);
KMSFLEET_EXPLORE_FIELD(RecentActive, NameSet, recent_active_);
KMSFLEET_EXPLORE_FIELD(Released, std::string, released_);
KMSFLEET_EXPLORE_FIELD(PreVotedFor, std::string, pre_voted_for_);
KMSFLEET_EXPLORE_FIELD(PreVoteTerm, uint64_t, pre_vote_term_);
KMSFLEET_EXPLORE_FIELD(PreVoteHoldUntil, int, pre_vote_hold_until_);
KMSFLEET_EXPLORE_FIELD(TransferTarget, std::string, transfer_target_);
KMSFLEET_EXPLORE_FIELD(TransferElapsed, int, transfer_elapsed_);

#undef KMSFLEET_EXPLORE_FIELD

// --plan: the PlanMachine's private state, the same way.
using ResultList = std::vector<ActionResult>;
using UnansweredMap = std::map<std::string, UnansweredAction>;
using IssuedSet = std::set<std::pair<std::string, std::string>>;
#define KMSFLEET_EXPLORE_PLAN_FIELD(Name, Type, Field)              \
  struct Name {                                                     \
    using type = Type PlanMachine::*;                               \
    friend type Get(Name);                                          \
  };                                                                \
  template struct Capture<Name, &PlanMachine::Field>

KMSFLEET_EXPLORE_PLAN_FIELD(PlanPending, std::optional<uint64_t>, pending_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanParity, ParityStreak, parity_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanIssued, IssuedSet, issued_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanDeferred, ResultList, deferred_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanHeld, ResultList, held_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanHeldSince, std::optional<int64_t>, held_since_unix_ms_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanUnanswered, UnansweredMap, unanswered_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanInFlightReady, std::optional<InFlightReady>, in_flight_ready_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanLastViews, std::vector<NodeView>, last_views_);
KMSFLEET_EXPLORE_PLAN_FIELD(PlanLastOpenBao, std::optional<OpenBaoProbe>, last_openbao_);

#undef KMSFLEET_EXPLORE_PLAN_FIELD

template <typename Tag>
const auto& Read(const ElectionMachine& m) {
  return m.*Get(Tag{});
}

template <typename Tag>
const auto& ReadPlan(const PlanMachine& m) {
  return m.*Get(Tag{});
}

}  // namespace kmsfleet::sim::access

#endif  // KMSFLEET_TESTS_SIM_EXPLORE_ACCESS_H_
