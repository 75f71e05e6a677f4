// kmsfleet_sim: runs the election simulation over many seeds.
//   kmsfleet_sim --seeds 2000          what CI runs
//   kmsfleet_sim --seed 1234 --verbose replay one seed with a trace
#include <cstdlib>
#include <iostream>
#include <string>

#include "simulator.h"

namespace {

int Usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " [--seeds N] [--start S] [--seed S] [--verbose]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seeds = 2000;
  uint64_t start = 1;
  bool verbose = false;
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
    } else {
      return Usage(argv[0]);
    }
  }
  kmsfleet::sim::Counters total;
  for (uint64_t seed = start; seed < start + seeds; ++seed) {
    kmsfleet::sim::SimResult r =
        kmsfleet::sim::RunSeed({.seed = seed, .verbose = verbose});
    total.Add(r.counters);
    if (!r.ok) {
      std::cout << "FAIL seed " << seed << ": " << r.failure << "\n"
                << "replay: " << argv[0] << " --seed " << seed << " --verbose\n";
      return 1;
    }
  }
  std::cout << seeds << " seeds ok (from " << start << "): " << total.elections
            << " leader terms, " << total.crashes << " crashes, " << total.lost_writes
            << " lost writes, " << total.messages << " messages, " << total.handoffs
            << " hand-offs, swaps accepted " << total.swaps_accepted
            << ", refused as stale term " << total.swaps_stale_term
            << ", refused as stale fence " << total.swaps_stale_fence << "; "
            << total.rollback_failed << " RollbackFailed, " << total.handoffs_withheld
            << " hand-offs withheld; adversary sent " << total.adversary_sent
            << ", refused " << total.adversary_refused << " (unknown fence "
            << total.adversary_unknown << ")\n";
  // The schedule must actually produce the cases the fences exist for;
  // otherwise the run proves nothing about them.
  if (seeds >= 200 && (total.swaps_stale_term == 0 || total.swaps_stale_fence == 0 ||
                       total.handoffs == 0)) {
    std::cout << "FAIL: no swap was delayed across a leader change or a hand-off\n";
    return 1;
  }
  if (seeds >= 200 && (total.adversary_unknown == 0 || total.handoffs_withheld == 0)) {
    std::cout << "FAIL: no forged fence was refused or no hand-off was withheld\n";
    return 1;
  }
  return 0;
}
