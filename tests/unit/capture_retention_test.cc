#include "kmsfleet/core/capture_retention.h"

#include <functional>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kOps[] = "/state/operations";

// A closed operation started at `started` that replaced `previous` by
// `target` and ended in `phase`, its copy where the agent puts it.
SwapJournal Closed(const std::string& id, int64_t started, SwapPhase phase,
                   const std::string& previous, const std::string& target) {
  SwapJournal j;
  j.operation_id = id;
  j.open = false;
  j.phase = phase;
  j.started_unix_ms = started;
  j.previous_sha256 = previous;
  j.target_sha256 = target;
  j.evidence_dir = std::string(kOps) + "/" + id;
  j.previous_binary = j.evidence_dir + "/previous-binary";
  j.target_binary = "/state/artifacts/" + target + "/bao-kms-provider";
  return j;
}

// Five upgrades in a row, a -> b -> c -> d -> e -> f, each Stable.
std::vector<SwapJournal> Upgrades() {
  return {Closed("op1", 1, SwapPhase::kStable, "a", "b"),
          Closed("op2", 2, SwapPhase::kStable, "b", "c"),
          Closed("op3", 3, SwapPhase::kStable, "c", "d"),
          Closed("op4", 4, SwapPhase::kStable, "d", "e"),
          Closed("op5", 5, SwapPhase::kStable, "e", "f")};
}

std::vector<std::string> Prune(const std::vector<SwapJournal>& journals,
                               std::optional<std::string> installed, size_t steps) {
  return CapturesToPrune(journals, installed, steps, kOps);
}

TEST(CapturesToPrune, KeepsTheCopiesOfAsManyRollbacksInARowAsAsked) {
  EXPECT_THAT(Prune(Upgrades(), "f", 2), ElementsAre("op1", "op2", "op3"));
  EXPECT_THAT(Prune(Upgrades(), "f", 1), ElementsAre("op1", "op2", "op3", "op4"));
  EXPECT_THAT(Prune(Upgrades(), "f", 5), IsEmpty());
}

// Found in review: counting the newest copies, a rollback (whose own copy
// took a slot) pushed out the copy the rollback after it would need.
TEST(CapturesToPrune, ARollbackDoesNotCostTheChainALink) {
  std::vector<SwapJournal> j = Upgrades();
  SwapJournal undo = Closed("op6", 6, SwapPhase::kStable, "f", "e");  // undid op5
  undo.kind = "rollback";
  undo.target_binary = j[4].previous_binary;
  j.push_back(undo);
  // e installed: op4 (and op6) can be undone, then op3 (d), then op2 (c).
  EXPECT_THAT(Prune(j, "e", 3), ElementsAre("op1"));
}

TEST(CapturesToPrune, KeepsEveryStableCopyWhenTheInstalledDigestIsUnknown) {
  std::vector<SwapJournal> j = Upgrades();
  j.push_back(Closed("op6", 6, SwapPhase::kRolledBack, "f", "g"));
  EXPECT_THAT(Prune(j, std::nullopt, 1), ElementsAre("op6"));
}

TEST(CapturesToPrune, FollowsWhatIsInstalledNotWhatIsNewest) {
  // op2's c was put back by hand: op2 can be rolled back again, then op1.
  EXPECT_THAT(Prune(Upgrades(), "c", 2), ElementsAre("op3", "op4", "op5"));
}

TEST(CapturesToPrune, NeverTouchesAFailedRollbacksCopyNorWhatItInstalledFrom) {
  std::vector<SwapJournal> j = Upgrades();
  j[0].phase = SwapPhase::kRollbackFailed;  // the break-glass runbook restores from it
  SwapJournal undo = Closed("op6", 6, SwapPhase::kRollbackFailed, "f", "b");
  undo.kind = "rollback";
  undo.target_binary = j[1].previous_binary;  // a rollback of op2 that failed
  j.push_back(undo);
  EXPECT_THAT(Prune(j, "f", 1), ElementsAre("op3", "op4"));
}

TEST(CapturesToPrune, NeverTouchesAnOpenOperationOrWhatItInstallsFrom) {
  std::vector<SwapJournal> j = Upgrades();
  j[1].open = true;
  j[1].phase = SwapPhase::kVerifying;
  SwapJournal undo = Closed("op6", 6, SwapPhase::kInstalled, "f", "c");
  undo.open = true;
  undo.kind = "rollback";
  undo.target_binary = j[2].previous_binary;  // undoing op3, in progress
  j.push_back(undo);
  EXPECT_THAT(Prune(j, "f", 1), ElementsAre("op1", "op4"));
}

TEST(CapturesToPrune, DropsCopiesOfOperationsThatEndedRolledBackOrBeforeTheStop) {
  std::vector<SwapJournal> j = {Closed("op1", 1, SwapPhase::kRolledBack, "a", "b"),
                                Closed("op2", 2, SwapPhase::kPreflighted, "a", "b"),
                                Closed("op3", 3, SwapPhase::kStable, "a", "b")};
  EXPECT_THAT(Prune(j, "b", 1), ElementsAre("op1", "op2"));
}

// Found in review: the prune trusted the journal's own paths, so a journal
// edited by hand could make the agent delete any file.
TEST(CapturesToPrune, ListsOnlyCopiesTheAgentMadeWhereItMakesThem) {
  std::vector<SwapJournal> j = Upgrades();
  j[0].previous_binary = "";
  j[1].evidence_dir = "/usr/bin";
  j[1].previous_binary = "/usr/bin/bao-kms-provider";
  j[2].previous_binary = j[2].evidence_dir + "/../op4/previous-binary";
  j[3].previous_binary = j[3].evidence_dir + "/key-registry.json";
  j.push_back(Closed("op6", 6, SwapPhase::kRolledBack, "f", "g"));
  j.back().previous_binary = j.back().evidence_dir + "/previous-manifest.yaml";
  EXPECT_THAT(Prune(j, "f", 1), ElementsAre("op6"));
}

TEST(CapturesToPrune, ListsOldestFirstWhateverTheInputOrder) {
  std::vector<SwapJournal> j = Upgrades();
  std::reverse(j.begin(), j.end());
  j[2].started_unix_ms = 1;  // op3 started with op1: by id then
  EXPECT_THAT(Prune(j, "f", 1), ElementsAre("op1", "op3", "op2", "op4"));
}

// Every rollback walk of up to `steps` rollbacks from `installed` (each
// undoing any Stable operation whose target is installed, as
// Executor::PlanRollback admits, and installing its copy): `visit` sees
// each operation undone.
void Walks(const std::vector<SwapJournal>& journals, const std::string& installed,
           size_t steps, const std::function<void(const SwapJournal&)>& visit) {
  if (steps == 0) return;
  for (const SwapJournal& j : journals) {
    if (j.phase != SwapPhase::kStable || j.target_sha256 != installed) continue;
    visit(j);
    Walks(journals, j.previous_sha256, steps - 1, visit);
  }
}

// Over random histories: no copy a rollback walk of `steps`, a recovery or
// the break-glass runbook may read is listed; every copy none of them can
// read is.
TEST(CapturesToPrune, PropertyOverRandomHistories) {
  std::mt19937 rng(20261203);
  const std::vector<SwapPhase> phases = {SwapPhase::kStable, SwapPhase::kRolledBack,
                                         SwapPhase::kRollbackFailed, SwapPhase::kPreflighted,
                                         SwapPhase::kVerifying};
  const std::vector<std::string> digests = {"a", "b", "c", "d", "e"};
  for (int round = 0; round < 2000; ++round) {
    std::vector<SwapJournal> journals;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      SwapJournal j = Closed("op" + std::to_string(i), rng() % 6, phases[rng() % phases.size()],
                             digests[rng() % digests.size()], digests[rng() % digests.size()]);
      j.open = rng() % 6 == 0;
      if (rng() % 5 == 0 && !journals.empty()) {
        j.target_binary = journals[rng() % journals.size()].previous_binary;
      }
      journals.push_back(j);
    }
    const std::string installed = digests[rng() % digests.size()];
    const size_t steps = 1 + rng() % 3;
    const std::vector<std::string> pruned = Prune(journals, installed, steps);
    const std::set<std::string> listed(pruned.begin(), pruned.end());
    ASSERT_EQ(listed.size(), pruned.size()) << "an id listed twice";
    std::set<std::string> needed;
    Walks(journals, installed, steps,
          [&](const SwapJournal& j) { needed.insert(j.previous_binary); });
    for (const SwapJournal& j : journals) {
      if (j.open || j.phase == SwapPhase::kRollbackFailed) {
        needed.insert(j.previous_binary);
        needed.insert(j.target_binary);
      }
    }
    for (const SwapJournal& j : journals) {
      EXPECT_EQ(listed.count(j.operation_id) > 0, needed.count(j.previous_binary) == 0)
          << "round " << round << ": " << j.operation_id << " " << PhaseName(j.phase)
          << (j.open ? " open" : " closed") << " " << j.previous_sha256 << "->"
          << j.target_sha256 << ", installed " << installed << ", steps " << steps;
    }
  }
}

}  // namespace
}  // namespace kmsfleet
