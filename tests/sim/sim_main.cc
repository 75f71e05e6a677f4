// kmsfleet_sim: runs the election simulation over many seeds.
//   kmsfleet_sim --seeds 2000          what CI runs
//   kmsfleet_sim --seed 1234 --verbose replay one seed with a trace
//   kmsfleet_sim --plan --seeds 2000   the fleet plan on the coordinator
#include <cstdlib>
#include <iostream>
#include <string>

#include "simulator.h"

namespace {

int Usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " [--plan [--adversary-picks-version]] [--seeds N] [--start S] [--seed S]"
               " [--verbose]\n";
  return 2;
}

// What --plan prints, and the coverage the run must reach to prove
// anything: plans that complete, roll back and stop, and the fences doing
// their work.
int PlanSummary(uint64_t seeds, uint64_t start, const kmsfleet::sim::Counters& t) {
  std::cout << seeds << " seeds ok (from " << start << "), fleet plan on the coordinator: "
            << t.plans_started << " plans started; final: " << t.plans_completed
            << " completed, " << t.plans_rolled_back << " rolled back, " << t.plans_aborted
            << " aborted, " << t.plans_halted << " halted, " << t.plans_break_glass
            << " in break-glass; " << t.break_glass_entered << " break-glass events; "
            << t.operations << " swaps and rollbacks (" << t.rollback_failed
            << " RollbackFailed, " << t.ended_before_stop << " failed before the stop ("
            << t.manifest_refusals << " for the node's manifest, " << t.disk_refusals
            << " for its disk; " << t.served_targets_kept
            << " kept their target, ready before a failure across a wire-format change; "
            << t.walk_backs_withheld
            << " with --auto-rollback, which halted without a walk back), "
            << t.resent_refused_by_caller
            << " sent again and refused for their caller, "
            << t.sent_again_after_agent_stop << " sent again after an agent restart, "
            << t.crashed_mid_swap << " crashed mid-swap (" << t.crashed_refusals
            << " of them refused before the stop, recovered untouched); " << t.slow_admissions
            << " admitted slowly, " << t.callers_gone
            << " refused as their caller had gone (" << t.arrived_after_caller
            << " held by the network past its deadline), " << t.lookups_while_admitting
            << " lookups answered being admitted; " << t.given_back_untouched
            << " slots given back untouched, " << t.ran_after_all
            << " of them recorded as run after all at their release); Steps on results "
               "alone: "
            << t.steps_on_last_round << " taken on the last round; after a change that sent "
            << "nothing: " << t.steps_after_change << " taken; asked for a fresh round: "
            << t.fresh_rounds_asked << "; Steps after which the next node is warmed: "
            << t.warm_ups << "; max in flight "
            << t.max_in_flight << ", max providers down at once " << t.max_disrupted
            << "; " << t.elections << " leader terms, " << t.crashes << " crashes, "
            << t.plan_proposals_failed << " proposals lost with leadership, "
            << t.commits_given_up << " commits given up on (" << t.late_commits_adopted
            << " committed late and adopted, " << t.changes_on_old_base
            << " changes refused on an older revision), " << t.fences_renewed
            << " fences renewed; " << t.stale_voter_terms
            << " terms coordinated with a voter edited out (" << t.stale_voter_starts
            << " swaps started by them); swaps refused as "
            << "stale term " << t.swaps_stale_term << ", stale fence " << t.swaps_stale_fence
            << ", plan not moving " << t.swaps_plan_not_moving << " (adversary's "
            << t.adversary_plan_not_moving << ")"
            << "; hand-offs withheld " << t.handoffs_withheld << "; commands held for their "
            << "record's commit " << t.commit_waits << "; adversary sent "
            << t.adversary_sent << ", refused " << t.adversary_refused
            << " (with settings of its own " << t.adversary_weakened << ", refused "
            << t.adversary_weakened_refused << "; steps held back by their coordinator, "
            << "sent under another member's key " << t.adversary_held_back << ", refused as "
            << "not from the leader " << t.adversary_held_back_refused
            << "; hand-off queries under a learner's key "
            << "refused " << t.queries_voter_only << "); operator commands "
            << t.commands << " (" << t.commands_refused << " refused); slowest settle after "
            << "faults stopped " << t.max_settle_ticks << " ticks; releases staged again by hand "
            << t.restaged << ", swaps refused for it " << t.restage_refused
            << "; providers down by themselves " << t.outages
            << ", Steps holding a kube-apiserver restart on the gates " << t.restarts_held
            << ", swaps and rollbacks withdrawn as their change committed "
            << t.withdrawn_at_release << "; rounds held up by a slow voter " << t.slow_rounds
            << ", Steps that started nothing on a round over 1 s old " << t.too_old_blocks
            << "; registry checkpoints not current in preflights " << t.checkpoints_reported
            << ", upgrades refused for it by the node " << t.checkpoint_refused_by_node
            << ", let through by the plan's acknowledgement "
            << t.checkpoint_acknowledged_swaps << "; rollbacks refused by the node for a "
            << "rotation since its swap " << t.rotation_refused_by_node
            << "; swaps refused by the node for a key promoted since the parity rounds "
            << t.active_key_refused_by_node << "\n";
  if (seeds >= 200 &&
      (t.plans_completed == 0 || t.plans_rolled_back == 0 || t.plans_aborted == 0 ||
       t.plans_halted + t.plans_break_glass == 0 || t.break_glass_entered == 0 ||
       t.crashed_mid_swap == 0 || t.ended_before_stop == 0 || t.manifest_refusals == 0 ||
       t.sent_again_after_agent_stop == 0 || t.handoffs_withheld == 0 ||
       t.commit_waits == 0 || t.steps_on_last_round == 0 || t.steps_after_change == 0 ||
       t.fresh_rounds_asked == 0 || t.warm_ups == 0 ||
       t.swaps_stale_term + t.swaps_stale_fence == 0 || t.restage_refused == 0 ||
       t.adversary_weakened_refused == 0 || t.adversary_held_back_refused == 0 ||
       t.changes_on_old_base == 0 || t.outages == 0 || t.restarts_held == 0 ||
       t.withdrawn_at_release == 0 || t.slow_rounds == 0 || t.too_old_blocks == 0 ||
       t.queries_voter_only == 0)) {
    std::cout << "FAIL: the schedules did not reach every ending and fault\n";
    return 1;
  }
  // Rarer faults, reached in the longer runs: a node's disk refusing a
  // write, under --auto-rollback too, a resend refused for its caller, a
  // ready target kept across a wire-format change, and an agent crashed in
  // a swap it refused before the stop.
  if (seeds >= 1000 &&
      (t.disk_refusals == 0 || t.walk_backs_withheld == 0 || t.resent_refused_by_caller == 0 ||
       t.served_targets_kept == 0 || t.crashed_refusals == 0)) {
    std::cout << "FAIL: the schedules did not reach a disk refusal (with --auto-rollback), "
                 "a resend refused for its caller, a ready target kept and a crash in a "
                 "swap refused before its stop\n";
    return 1;
  }
  if (seeds >= 1000 && (t.checkpoints_reported == 0 || t.checkpoint_refused_by_node == 0 ||
                        t.checkpoint_acknowledged_swaps == 0)) {
    std::cout << "FAIL: the schedules did not reach a registry checkpoint not current in a "
                 "preflight, refused by a node and acknowledged by a plan\n";
    return 1;
  }
  if (seeds >= 1000 && (t.slow_admissions == 0 || t.callers_gone == 0 ||
                        t.arrived_after_caller == 0 || t.lookups_while_admitting == 0 ||
                        t.given_back_untouched == 0)) {
    std::cout << "FAIL: the schedules did not reach a slow admission, a caller gone, a "
                 "lookup while admitting and a slot given back untouched\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 2000;
  uint64_t start = 1;
  bool verbose = false;
  bool plan = false;
  bool picks_version = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--seeds" && has_value) {
      seeds = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--start" && has_value) {
      start = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--seed" && has_value) {
      start = std::strtoull(argv[++i], nullptr, 10);
      seeds = 1;
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--plan") {
      plan = true;
    } else if (arg == "--adversary-picks-version") {
      picks_version = true;
    } else {
      return Usage(argv[0]);
    }
  }
  kmsfleet::sim::Counters total;
  for (uint64_t seed = start; seed < start + seeds; ++seed) {
    kmsfleet::sim::SimResult r =
        kmsfleet::sim::RunSeed({.seed = seed, .verbose = verbose, .plan = plan,
                                .adversary_picks_version = picks_version});
    total.Add(r.counters);
    if (!r.ok) {
      std::cout << "FAIL seed " << seed << ": " << r.failure << "\n"
                << "replay: " << argv[0] << (plan ? " --plan" : "")
                << (picks_version ? " --adversary-picks-version" : "") << " --seed " << seed
                << " --verbose\n";
      return 1;
    }
  }
  if (plan) return PlanSummary(seeds, start, total);
  std::cout << seeds << " seeds ok (from " << start << "): " << total.elections
            << " leader terms, " << total.crashes << " crashes, " << total.lost_writes
            << " lost writes, " << total.messages << " messages, " << total.handoffs
            << " hand-offs, swaps accepted " << total.swaps_accepted
            << ", refused as stale term " << total.swaps_stale_term
            << ", refused as stale fence " << total.swaps_stale_fence << "; "
            << total.rollback_failed << " RollbackFailed, " << total.handoffs_withheld
            << " hand-offs withheld, " << total.commit_waits
            << " commands held for their record's commit; adversary sent " << total.adversary_sent
            << ", refused " << total.adversary_refused << " (unknown fence "
            << total.adversary_unknown << ", hand-off queries under a learner's key "
            << total.queries_voter_only << "); peer messages forged " << total.peer_forged
            << ", refused " << total.peer_forged_refused << "\n";
  std::cout << "leadership transfers: " << total.transfers_started << " started ("
            << total.transfers_refused << " refused for want of a target), "
            << total.transfers_completed << " to the target (mean "
            << (total.transfers_completed > 0
                    ? total.transfer_ticks / total.transfers_completed
                    : 0)
            << " ticks), " << total.transfers_other << " ended otherwise, "
            << total.transfers_abandoned << " abandoned after an election timeout, "
            << total.transfers_retargeted << " replaced by another; "
            << total.transfers_stopped << " old leaders stopped after theirs; "
            << total.proposals_refused_in_transfer << " proposals refused meanwhile\n";
  // The schedule must actually produce the cases the fences exist for;
  // otherwise the run proves nothing about them.
  if (seeds >= 200 && (total.swaps_stale_term == 0 || total.swaps_stale_fence == 0 ||
                       total.handoffs == 0)) {
    std::cout << "FAIL: no swap was delayed across a leader change or a hand-off\n";
    return 1;
  }
  if (seeds >= 200 &&
      (total.transfers_completed == 0 || total.transfers_abandoned == 0 ||
       total.transfers_refused == 0 || total.transfers_stopped == 0 ||
       total.proposals_refused_in_transfer == 0)) {
    std::cout << "FAIL: the schedules did not complete, abandon and refuse transfers\n";
    return 1;
  }
  if (seeds >= 200 && (total.peer_forged_refused == 0 ||
                       total.peer_forged_refused == total.peer_forged)) {
    std::cout << "FAIL: the forger's messages were never refused, or never taken\n";
    return 1;
  }
  if (seeds >= 200 && (total.adversary_unknown == 0 || total.handoffs_withheld == 0 ||
                       total.commit_waits == 0)) {
    std::cout << "FAIL: no forged fence was refused, no hand-off was withheld or no command "
                 "waited for its record's commit\n";
    return 1;
  }
  return 0;
}
