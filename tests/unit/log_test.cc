// The journal record of a log call (docs/logs.md) and the choice of sink.
// The real journald round trip is tests/integration/journald_test.sh.
#include "kmsfleet/node/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;

TEST(JournalFieldNameTest, UpperCasesTheKeyUnderTheProjectPrefix) {
  EXPECT_EQ(JournalFieldName("operation"), "KMSFLEET_OPERATION");
  EXPECT_EQ(JournalFieldName("plan"), "KMSFLEET_PLAN");
  EXPECT_EQ(JournalFieldName("metrics_port"), "KMSFLEET_METRICS_PORT");
  EXPECT_EQ(JournalFieldName("Node2"), "KMSFLEET_NODE2");
}

TEST(JournalFieldNameTest, ReplacesBytesJournaldWouldRefuse) {
  EXPECT_EQ(JournalFieldName("grpc-code.x y"), "KMSFLEET_GRPC_CODE_X_Y");
  EXPECT_EQ(JournalFieldName("k\xc3\xa9="), "KMSFLEET_K___");
}

TEST(JournalFieldNameTest, IsCutToTheJournalsNameLimit) {
  std::string name = JournalFieldName(std::string(100, 'a'));
  EXPECT_EQ(name.size(), kMaxJournalFieldName);
  EXPECT_EQ(name, "KMSFLEET_" + std::string(kMaxJournalFieldName - 9, 'A'));
}

TEST(JournalFieldNameTest, EmptyKeyHasNoName) { EXPECT_EQ(JournalFieldName(""), ""); }

TEST(JournalEntryTest, CarriesMessagePriorityIdentifierAndFieldsInOrder) {
  EXPECT_THAT(JournalEntry(LogLevel::kWarn, "swap refused",
                           {{"node", "cp-1"}, {"operation", "op-7"}, {"reason", "FENCE_STALE"}},
                           "kmsfleetd"),
              ElementsAre("MESSAGE=swap refused", "PRIORITY=4", "SYSLOG_IDENTIFIER=kmsfleetd",
                          "KMSFLEET_NODE=cp-1", "KMSFLEET_OPERATION=op-7",
                          "KMSFLEET_REASON=FENCE_STALE"));
}

TEST(JournalEntryTest, MapsEachLevelToItsSyslogPriority) {
  EXPECT_EQ(JournalEntry(LogLevel::kInfo, "m", {}, "x")[1], "PRIORITY=6");
  EXPECT_EQ(JournalEntry(LogLevel::kWarn, "m", {}, "x")[1], "PRIORITY=4");
  EXPECT_EQ(JournalEntry(LogLevel::kError, "m", {}, "x")[1], "PRIORITY=3");
}

TEST(JournalEntryTest, KeepsNewlinesForTheBinarySafeEncoding) {
  // sd_journal_sendv length-prefixes a value with a newline in it.
  EXPECT_EQ(JournalEntry(LogLevel::kError, "m", {{"error", "a\nb"}}, "x")[3],
            "KMSFLEET_ERROR=a\nb");
}

TEST(JournalEntryTest, BoundsValuesAndMessage) {
  std::vector<std::string> entry = JournalEntry(
      LogLevel::kInfo, std::string(100000, 'm'), {{"error", std::string(100000, 'e')}}, "x");
  EXPECT_EQ(entry[0].size(), std::string("MESSAGE=").size() + kMaxJournalMessage);
  EXPECT_TRUE(entry[0].ends_with("mm..."));
  EXPECT_EQ(entry[3].size(), std::string("KMSFLEET_ERROR=").size() + kMaxJournalValue);
  EXPECT_TRUE(entry[3].ends_with("ee..."));
}

TEST(JournalEntryTest, CutsOnACharacterBoundary) {
  // 4095 ASCII bytes then a two-byte character straddling the cut.
  std::string value = std::string(kMaxJournalValue - 4, 'v') + "\xc3\xa9\xc3\xa9";
  value += "tail";
  std::string field = JournalEntry(LogLevel::kInfo, "m", {{"k", value}}, "x")[3];
  EXPECT_EQ(field, "KMSFLEET_K=" + std::string(kMaxJournalValue - 4, 'v') + "...");
}

TEST(JournalEntryTest, DropsEmptyKeysAndValuesAndBoundsTheFieldCount) {
  EXPECT_EQ(JournalEntry(LogLevel::kInfo, "m", {{"", "v"}}, "x").size(), 3u);
  EXPECT_EQ(JournalEntry(LogLevel::kInfo, "m", {{"reason", ""}}, "x").size(), 3u);
  std::vector<std::pair<std::string_view, std::string>> many;
  for (int i = 0; i < 40; ++i) many.emplace_back("k", std::to_string(i));
  std::vector<std::string> entry = JournalEntry(LogLevel::kInfo, "m", many, "x");
  ASSERT_EQ(entry.size(), 3 + kMaxJournalFields);
  EXPECT_EQ(entry.back(), "KMSFLEET_K=" + std::to_string(kMaxJournalFields - 1));
}

TEST(StderrIsJournalTest, MatchesOnlyTheSameDeviceAndInode) {
  EXPECT_TRUE(StderrIsJournal("8:123456", 8, 123456));
  EXPECT_FALSE(StderrIsJournal("8:123456", 9, 123456));
  EXPECT_FALSE(StderrIsJournal("8:123456", 8, 123457));
}

TEST(StderrIsJournalTest, RefusesMalformedValues) {
  EXPECT_FALSE(StderrIsJournal("", 0, 0));
  EXPECT_FALSE(StderrIsJournal(":", 0, 0));
  EXPECT_FALSE(StderrIsJournal("8:", 8, 0));
  EXPECT_FALSE(StderrIsJournal("8:12x", 8, 12));
  EXPECT_FALSE(StderrIsJournal("-8:12", 8, 12));
  EXPECT_FALSE(StderrIsJournal("8 12", 8, 12));
}

TEST(ParseLogTargetTest, KnowsTheThreeTargets) {
  EXPECT_EQ(ParseLogTarget("auto"), LogTarget::kAuto);
  EXPECT_EQ(ParseLogTarget("journal"), LogTarget::kJournal);
  EXPECT_EQ(ParseLogTarget("stderr"), LogTarget::kStderr);
  EXPECT_EQ(ParseLogTarget("Journal"), std::nullopt);
  EXPECT_EQ(ParseLogTarget("syslog"), std::nullopt);
}

}  // namespace
}  // namespace kmsfleet
