#include "kmsfleet/core/capture_retention.h"

#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A closed operation started at `started` that replaced `previous` by
// `target` and ended in `phase`, its copy in its evidence directory.
SwapJournal Closed(const std::string& id, int64_t started, SwapPhase phase,
                   const std::string& previous, const std::string& target) {
  SwapJournal j;
  j.operation_id = id;
  j.open = false;
  j.phase = phase;
  j.started_unix_ms = started;
  j.previous_sha256 = previous;
  j.target_sha256 = target;
  j.evidence_dir = "/state/operations/" + id;
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

TEST(CapturesToPrune, KeepsTheLatestAndTheOneARollbackCanUseNow) {
  EXPECT_THAT(CapturesToPrune(Upgrades(), std::string("f"), 2), ElementsAre("op1", "op2", "op3"));
  EXPECT_THAT(CapturesToPrune(Upgrades(), std::string("f"), 0),
              ElementsAre("op1", "op2", "op3", "op4"));
  EXPECT_THAT(CapturesToPrune(Upgrades(), std::string("f"), 5), IsEmpty());
}

TEST(CapturesToPrune, KeepsEveryStableCopyWhenTheInstalledDigestIsUnknown) {
  EXPECT_THAT(CapturesToPrune(Upgrades(), std::nullopt, 0), IsEmpty());
}

TEST(CapturesToPrune, KeepsTheStableOperationThatInstalledWhatRunsNowHoweverOld) {
  // op2's c was put back by hand: op2 can be rolled back again.
  EXPECT_THAT(CapturesToPrune(Upgrades(), std::string("c"), 0),
              ElementsAre("op1", "op3", "op4", "op5"));
}

TEST(CapturesToPrune, NeverTouchesAFailedRollbacksCopy) {
  std::vector<SwapJournal> j = Upgrades();
  j[0].phase = SwapPhase::kRollbackFailed;  // the break-glass runbook restores from it
  EXPECT_THAT(CapturesToPrune(j, std::string("f"), 0), ElementsAre("op2", "op3", "op4"));
}

TEST(CapturesToPrune, NeverTouchesAnOpenOperationOrWhatItInstallsFrom) {
  std::vector<SwapJournal> j = Upgrades();
  j[1].open = true;
  j[1].phase = SwapPhase::kVerifying;
  // A rollback of op3 in progress installs op3's copy.
  SwapJournal rollback = Closed("op6", 6, SwapPhase::kInstalled, "f", "c");
  rollback.open = true;
  rollback.kind = "rollback";
  rollback.target_binary = j[2].previous_binary;
  j.push_back(rollback);
  EXPECT_THAT(CapturesToPrune(j, std::string("f"), 0), ElementsAre("op1", "op4"));
}

TEST(CapturesToPrune, DropsCopiesOfOperationsThatEndedRolledBackOrBeforeTheStop) {
  std::vector<SwapJournal> j = {Closed("op1", 1, SwapPhase::kRolledBack, "a", "b"),
                                Closed("op2", 2, SwapPhase::kPreflighted, "a", "b"),
                                Closed("op3", 3, SwapPhase::kStable, "a", "b")};
  EXPECT_THAT(CapturesToPrune(j, std::string("b"), 0), ElementsAre("op1", "op2"));
}

TEST(CapturesToPrune, IgnoresOperationsWithoutACopyOrWithOneOutsideTheirDirectory) {
  std::vector<SwapJournal> j = Upgrades();
  j[0].previous_binary = "";
  j[1].previous_binary = "/usr/local/bin/bao-kms-provider";
  j[2].previous_binary = j[2].evidence_dir + "/../op4/previous-binary";
  EXPECT_THAT(CapturesToPrune(j, std::string("f"), 0), ElementsAre("op4"));
}

TEST(CapturesToPrune, OrdersByStartThenIdWhateverTheInputOrder) {
  std::vector<SwapJournal> j = Upgrades();
  std::reverse(j.begin(), j.end());
  j[2].started_unix_ms = 4;  // op3 started with op4: the larger id is the newer
  EXPECT_THAT(CapturesToPrune(j, std::string("f"), 2), ElementsAre("op1", "op2", "op3"));
}

TEST(IsCaptureInside, AcceptsOnlyAFileDirectlyInTheDirectory) {
  EXPECT_TRUE(IsCaptureInside("/s/operations/x/previous-binary", "/s/operations/x"));
  EXPECT_FALSE(IsCaptureInside("/s/operations/x/a/b", "/s/operations/x"));
  EXPECT_FALSE(IsCaptureInside("/s/operations/x/..", "/s/operations/x"));
  EXPECT_FALSE(IsCaptureInside("/s/operations/xy/previous-binary", "/s/operations/x"));
  EXPECT_FALSE(IsCaptureInside("/s/operations/x/", "/s/operations/x"));
  EXPECT_FALSE(IsCaptureInside("/s/operations/x/previous-binary", ""));
  EXPECT_FALSE(IsCaptureInside("/s/operations/x/previous-binary", "/s/operations/x/"));
}

// Over random histories: nothing a rollback, a recovery or the break-glass
// runbook may read is ever listed, and everything else beyond the latest
// `keep` is.
TEST(CapturesToPrune, PropertyOverRandomHistories) {
  std::mt19937 rng(20261203);
  const std::vector<SwapPhase> phases = {SwapPhase::kStable, SwapPhase::kRolledBack,
                                         SwapPhase::kRollbackFailed, SwapPhase::kPreflighted,
                                         SwapPhase::kVerifying};
  const std::vector<std::string> digests = {"a", "b", "c", "d"};
  for (int round = 0; round < 2000; ++round) {
    std::vector<SwapJournal> journals;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      SwapJournal j = Closed("op" + std::to_string(i), rng() % 6, phases[rng() % phases.size()],
                             digests[rng() % 4], digests[rng() % 4]);
      j.open = rng() % 5 == 0;
      if (rng() % 6 == 0 && !journals.empty()) {
        j.target_binary = journals[rng() % journals.size()].previous_binary;
      }
      journals.push_back(j);
    }
    const std::optional<std::string> installed =
        rng() % 4 == 0 ? std::nullopt : std::optional<std::string>(digests[rng() % 4]);
    const size_t keep = rng() % 4;
    const std::vector<std::string> pruned = CapturesToPrune(journals, installed, keep);
    const std::set<std::string> listed(pruned.begin(), pruned.end());
    ASSERT_EQ(listed.size(), pruned.size()) << "an id listed twice";
    std::set<std::string> read_by_open;
    for (const SwapJournal& j : journals) {
      if (j.open) read_by_open.insert(j.target_binary);
    }
    size_t newer_holding_kept = 0;
    std::vector<const SwapJournal*> by_age;
    for (const SwapJournal& j : journals) by_age.push_back(&j);
    std::sort(by_age.begin(), by_age.end(), [](const SwapJournal* a, const SwapJournal* b) {
      return std::tie(a->started_unix_ms, a->operation_id) >
             std::tie(b->started_unix_ms, b->operation_id);
    });
    for (const SwapJournal* j : by_age) {
      const bool needed =
          j->open || read_by_open.count(j->previous_binary) > 0 ||
          j->phase == SwapPhase::kRollbackFailed ||
          (j->phase == SwapPhase::kStable && (!installed || *installed == j->target_sha256));
      const bool recent = newer_holding_kept++ < keep;
      EXPECT_EQ(listed.count(j->operation_id) > 0, !needed && !recent)
          << "round " << round << ": " << j->operation_id << " phase "
          << PhaseName(j->phase) << (j->open ? " open" : " closed");
    }
  }
}

}  // namespace
}  // namespace kmsfleet
