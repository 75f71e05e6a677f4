// Parity across nodes (architecture.md §5 "Parity").
#include "kmsfleet/core/parity.h"

#include <gtest/gtest.h>

namespace kmsfleet {
namespace {

TEST(ParityTest, AllNodesWithTheSameHashMatch) {
  ParityResult r = ComputeParity({"h1", "h1", "h1"});
  EXPECT_EQ(r.majority_hash, "h1");
  EXPECT_TRUE(r.all_match);
  EXPECT_EQ(r.per_node, (std::vector<Parity>{Parity::kMatch, Parity::kMatch,
                                             Parity::kMatch}));
}

TEST(ParityTest, TheOddNodeOutIsTheMismatch) {
  ParityResult r = ComputeParity({"h1", "h2", "h1"});
  EXPECT_EQ(r.majority_hash, "h1");
  EXPECT_FALSE(r.all_match);
  EXPECT_EQ(r.per_node[1], Parity::kMismatch);
  EXPECT_EQ(r.per_node[0], Parity::kMatch);
}

TEST(ParityTest, ATieHasNoMajorityAndEveryNodeIsSplit) {
  ParityResult r = ComputeParity({"h1", "h2"});
  EXPECT_TRUE(r.majority_hash.empty());
  EXPECT_EQ(r.per_node, (std::vector<Parity>{Parity::kSplit, Parity::kSplit}));
}

TEST(ParityTest, ANodeWithoutAHashIsUnknownAndBreaksAllMatch) {
  ParityResult r = ComputeParity({"h1", "", "h1"});
  EXPECT_EQ(r.per_node[1], Parity::kUnknown);
  EXPECT_EQ(r.majority_hash, "h1");
  EXPECT_FALSE(r.all_match);
}

TEST(ParityTest, ASingleNodeMatchesItself) {
  ParityResult r = ComputeParity({"h1"});
  EXPECT_TRUE(r.all_match);
  EXPECT_EQ(r.per_node[0], Parity::kMatch);
}

TEST(ParityTest, NoNodesIsNotAMatch) {
  EXPECT_FALSE(ComputeParity({}).all_match);
  EXPECT_FALSE(ComputeParity({"", ""}).all_match);
}

TEST(ParityTest, NamesAreStableForOperators) {
  EXPECT_EQ(ParityName(Parity::kMatch), "match");
  EXPECT_EQ(ParityName(Parity::kMismatch), "MISMATCH");
  EXPECT_EQ(ParityName(Parity::kSplit), "split");
  EXPECT_EQ(ParityName(Parity::kUnknown), "unknown");
}

}  // namespace
}  // namespace kmsfleet
