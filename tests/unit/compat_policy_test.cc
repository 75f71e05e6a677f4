// Tests of the release compatibility policy and the CHANGELOG.md reader
// (compat_policy.h, changelog.h; reference §7.3, §7.4).
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kmsfleet/core/changelog.h"
#include "kmsfleet/core/compat_policy.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

SemVer V(std::string_view text) { return *SemVer::Parse(text); }

TEST(BuiltinPolicyTest, CatalogParsesAndMarksPreview3FreshInstallOneWay) {
  const CompatPolicy policy = BuiltinCompatPolicy();
  ASSERT_EQ(policy.releases.size(), 4u);
  const v1::CompatFacts facts =
      FactsCrossed(policy, V("0.1.0-preview.2"), V("0.1.0-preview.3"));
  EXPECT_TRUE(facts.fresh_install_only());
  EXPECT_TRUE(facts.one_way());
  EXPECT_THAT(facts.releases(), ElementsAre("0.1.0-preview.3"));
}

TEST(BuiltinPolicyTest, TheUnreleasedLineAppliesToTheFirstReleaseAbove) {
  const CompatPolicy policy = BuiltinCompatPolicy();
  v1::CompatFacts facts = FactsCrossed(policy, V("0.1.0-preview.3"), V("0.1.0"));
  EXPECT_THAT(facts.releases(), ElementsAre(">0.1.0-preview.3"));
  EXPECT_FALSE(facts.one_way());
  // Already above it: not crossed again.
  facts = FactsCrossed(policy, V("0.1.0"), V("0.1.1"));
  EXPECT_EQ(facts.releases_size(), 0);
}

TEST(BuiltinPolicyTest, RollbackCrossesTheSameReleases) {
  const CompatPolicy policy = BuiltinCompatPolicy();
  const v1::CompatFacts facts =
      FactsCrossed(policy, V("0.1.0-preview.3"), V("0.1.0-preview.2"));
  EXPECT_TRUE(facts.one_way());
}

constexpr char kOperatorPolicy[] = R"(apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - version: 0.2.0
    wireFormatChange: true
    migrationPlanned: true
    apiServerRestartRequired: true
  - version: 0.1.0-preview.2
    oneWay: true
)";

TEST(PolicyFileTest, OperatorEntriesAddAndOverride) {
  absl::StatusOr<CompatPolicy> file = ParseCompatPolicy(kOperatorPolicy, "ops.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  const CompatPolicy merged = MergePolicies(BuiltinCompatPolicy(), *file);
  v1::CompatFacts facts = FactsCrossed(merged, V("0.1.0"), V("0.2.0"));
  EXPECT_TRUE(facts.wire_format_change());
  EXPECT_TRUE(facts.migration_planned());
  EXPECT_TRUE(facts.apiserver_restart_required());
  facts = FactsCrossed(merged, V("0.1.0-preview.1"), V("0.1.0-preview.2"));
  EXPECT_TRUE(facts.one_way());  // the operator's entry added to the builtin
}

// Found by the requirements audit: a file entry replaced the catalog's
// entry whole, so one that gave only notes for 0.1.0-preview.3 cleared its
// fresh-installation boundary, and an in-place upgrade across it passed.
// A file extends the catalog: it adds flags and notes, and clears none.
TEST(PolicyFileTest, AFileEntryCannotClearABuiltinFlag) {
  absl::StatusOr<CompatPolicy> file = ParseCompatPolicy(R"(apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - version: 0.1.0-preview.3
    notes: our notes
)", "ops.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  const CompatPolicy merged = MergePolicies(BuiltinCompatPolicy(), *file);
  const v1::CompatFacts builtin =
      FactsCrossed(BuiltinCompatPolicy(), V("0.1.0-preview.2"), V("0.1.0-preview.3"));
  ASSERT_TRUE(builtin.fresh_install_only());
  const v1::CompatFacts facts =
      FactsCrossed(merged, V("0.1.0-preview.2"), V("0.1.0-preview.3"));
  EXPECT_TRUE(facts.fresh_install_only());
  EXPECT_EQ(facts.one_way(), builtin.one_way());
  EXPECT_THAT(facts.notes(), ::testing::Contains(::testing::HasSubstr("our notes")));
}

// Found in review: SemVer orders 0.2.0-rc.1 below 0.2.0, so an entry for
// 0.2.0 did not apply to its release candidate, which carries the change.
TEST(PolicyFileTest, AnEntryForAReleaseCoversItsPreReleases) {
  absl::StatusOr<CompatPolicy> file = ParseCompatPolicy(kOperatorPolicy, "ops.yaml");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(FactsCrossed(*file, V("0.1.0"), V("0.2.0-rc.1")).wire_format_change());
  EXPECT_TRUE(FactsCrossed(*file, V("0.2.0-rc.1"), V("0.1.0")).wire_format_change())
      << "rolling back from the candidate crosses it too";
  EXPECT_FALSE(FactsCrossed(*file, V("0.2.0-rc.1"), V("0.2.0-rc.2")).wire_format_change())
      << "both candidates carry it already";
  EXPECT_FALSE(FactsCrossed(*file, V("0.2.0-rc.1"), V("0.2.0")).wire_format_change())
      << "so do the candidate and the release";
  EXPECT_FALSE(FactsCrossed(*file, V("0.1.0"), V("0.1.1-rc.1")).wire_format_change());
}

TEST(PolicyFileTest, MigrationIsPlannedOnlyIfEveryWireChangePlansOne) {
  absl::StatusOr<CompatPolicy> p = ParseCompatPolicy(R"(apiVersion: kmsfleet.io/v1
kind: CompatibilityPolicy
releases:
  - {version: 0.2.0, wireFormatChange: true, migrationPlanned: true}
  - {version: 0.3.0, wireFormatChange: true}
)", "p.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(FactsCrossed(*p, V("0.1.0"), V("0.3.0")).migration_planned());
  EXPECT_TRUE(FactsCrossed(*p, V("0.1.0"), V("0.2.0")).migration_planned());
}

void ExpectBadPolicy(std::string_view yaml, std::string_view key,
                     std::string_view in_message) {
  absl::StatusOr<CompatPolicy> p = ParseCompatPolicy(yaml, "ops.yaml");
  ASSERT_FALSE(p.ok()) << yaml;
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReasonOf(p.status()), reason::kMalformedPolicy) << p.status();
  EXPECT_EQ(MetadataOf(p.status(), "file"), "ops.yaml");
  EXPECT_EQ(MetadataOf(p.status(), "key"), key) << p.status();
  EXPECT_THAT(p.status().message(), HasSubstr(in_message));
}

constexpr char kHead[] = "apiVersion: kmsfleet.io/v1\nkind: CompatibilityPolicy\n";

// Found by the requirements audit: an entry's notes, which the reference
// promises in plans and refusals, were parsed and dropped. They travel in
// the facts now, cut to 300 bytes each, and the refusals they cause show
// them.
TEST(PolicyFileTest, NotesTravelWithTheFactsAndShowInTheirRefusals) {
  absl::StatusOr<CompatPolicy> p = ParseCompatPolicy(std::string(kHead) +
                                                         "releases:\n"
                                                         "  - version: 0.2.0\n"
                                                         "    oneWay: true\n"
                                                         "    notes: state 0.1.0 cannot read\n"
                                                         "  - version: 0.3.0\n"
                                                         "    notes: " +
                                                         std::string(400, 'x') + "\n",
                                                     "p.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  const v1::CompatFacts facts = FactsCrossed(*p, V("0.1.0"), V("0.3.0"));
  ASSERT_EQ(facts.notes_size(), 2);
  EXPECT_EQ(facts.notes(0), "0.2.0: state 0.1.0 cannot read");
  EXPECT_EQ(facts.notes(1), "0.3.0: " + std::string(300, 'x') + "...");
  // After the remedy: a text the plan cuts loses notes, not advice.
  EXPECT_THAT(std::string(CheckRollbackAcrossRelease(facts).message()),
              HasSubstr("instead. The policy's notes: 0.2.0: state 0.1.0 cannot read; 0.3.0: xxx"));
  CompatInput upgrade;
  upgrade.facts = facts;
  EXPECT_THAT(std::string(CheckCompatibility(upgrade).message()),
              HasSubstr("0.2.0: state 0.1.0 cannot read"));
}

// The plan's record is bounded: the notes of 16 entries at most travel.
TEST(PolicyFileTest, OnlySixteenEntriesNotesTravel) {
  std::string yaml = std::string(kHead) + "releases:\n";
  for (int patch = 1; patch <= 20; ++patch) {
    const std::string n = std::to_string(patch);
    yaml += "  - {version: 0.1." + n + ", notes: n" + n + "}\n";
  }
  absl::StatusOr<CompatPolicy> p = ParseCompatPolicy(yaml, "p.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  const v1::CompatFacts facts = FactsCrossed(*p, V("0.1.0"), V("0.1.20"));
  ASSERT_EQ(facts.notes_size(), 17);
  EXPECT_EQ(facts.notes(15), "0.1.16: n16");
  EXPECT_EQ(facts.notes(16), "and the notes of 4 more releases crossed, in the policy");
  // A refusal shows 600 bytes of notes at most.
  v1::CompatFacts long_notes;
  long_notes.set_one_way(true);
  for (int i = 0; i < 3; ++i) long_notes.add_notes(std::string(300, 'n'));
  const std::string said(CheckRollbackAcrossRelease(long_notes).message());
  EXPECT_THAT(said, HasSubstr("... (the rest in the policy)."));
  EXPECT_LT(said.size(), 800u);
}


TEST(PolicyFileTest, BadValuesNameFileKeyAndValue) {
  ExpectBadPolicy(std::string(kHead) + "releases:\n  - version: 0.2.0\n    oneWay: yes\n",
                  "releases[0].oneWay", "got \"yes\"");
  ExpectBadPolicy(std::string(kHead) + "releases:\n  - version: v0.2.0\n",
                  "releases[0].version", "\"v0.2.0\"");
  ExpectBadPolicy(std::string(kHead) + "releases:\n  - version: 0.2.0\n    oneway: true\n",
                  "releases[0].oneway", "unknown key");
  ExpectBadPolicy(std::string(kHead) + "releases:\n  - notes: x\n",
                  "releases[0]", "exactly one of version and above");
  ExpectBadPolicy(std::string(kHead) +
                      "releases:\n  - version: 0.2.0\n  - version: 0.2.0\n",
                  "releases[1]", "repeats release 0.2.0");
  ExpectBadPolicy("apiVersion: v2\nkind: CompatibilityPolicy\n", "apiVersion",
                  "kmsfleet.io/v1");
}

// yaml-cpp keeps a repeated key and a lookup reads one: a second
// `releases:` block, or `oneWay: true` then `oneWay: false`, would be
// half-ignored without a word.
TEST(PolicyFileTest, ARepeatedKeyIsRefused) {
  ExpectBadPolicy(std::string(kHead) +
                      "releases:\n  - version: 0.2.0\n    oneWay: true\n    oneWay: false\n",
                  "releases[0].oneWay", "repeats");
  ExpectBadPolicy(std::string(kHead) + "releases:\n  - version: 0.2.0\n"
                                       "releases:\n  - version: 0.3.0\n    oneWay: true\n",
                  "releases", "repeats");
}

TEST(PolicyFileTest, SyntaxErrorNamesLine) {
  absl::StatusOr<CompatPolicy> p =
      ParseCompatPolicy(std::string(kHead) + "releases: [\n", "ops.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(ReasonOf(p.status()), reason::kMalformedPolicy);
  EXPECT_THAT(p.status().message(), HasSubstr("invalid YAML at line"));
}

TEST(PolicyFileTest, OversizedFileIsRefused) {
  absl::StatusOr<CompatPolicy> p =
      ParseCompatPolicy(std::string(kMaxPolicyBytes + 1, '#'), "big.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(ReasonOf(p.status()), reason::kInputTooLarge);
  EXPECT_THAT(p.status().message(), HasSubstr("big.yaml"));
}

constexpr char kChangelog[] = R"(# Changelog

## Unreleased

### Compatibility

Key IDs, AAD, annotations, and state schema remain unchanged.

## [0.3.0](https://example/compare/0.2.0...0.3.0) (2026-12-01)

### Features

* faster status cache

## [0.2.0](https://example/compare/0.1.0...0.2.0) (2026-11-01)

### ⚠ BREAKING CHANGES

* auth.jwt.source replaces auth.jwt.jwtFile; this upgrade is one-way.

## 0.1.0 (2026-10-15)

* requires a fresh installation.
)";

TEST(ChangelogTest, FlagsBreakingSectionsAndPhrasesPerRelease) {
  absl::StatusOr<Changelog> c = ParseChangelog(kChangelog, "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->releases.size(), 4u);
  EXPECT_EQ(c->releases[0].version, "");  // Unreleased
  EXPECT_EQ(c->releases[1].version, "0.3.0");
  EXPECT_TRUE(c->releases[1].flags.empty());
  const std::vector<ChangelogFlag>& f = c->releases[2].flags;
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].code, "CHANGELOG_BREAKING");
  EXPECT_EQ(f[0].line, 17);
  EXPECT_EQ(f[1].code, "ONE_WAY_UPGRADE");
}

TEST(ChangelogTest, OnlyReleasesBetweenInstalledAndTargetCount) {
  absl::StatusOr<Changelog> c = ParseChangelog(kChangelog, "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(FlagsCrossed(*c, V("0.2.0"), V("0.3.0")).empty());
  std::vector<ChangelogFlag> f = FlagsCrossed(*c, V("0.1.0"), V("0.3.0"));
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].version, "0.2.0");
  f = FlagsCrossed(*c, V("0.0.9"), V("0.1.0"));
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].code, "FRESH_INSTALLATION");
}

// A changelog without the target's heading (the installed release's, or a
// branch's with its notes under "Unreleased") would pass every release up
// to the target unread.
TEST(ChangelogTest, AChangelogMustNameTheTarget) {
  absl::StatusOr<Changelog> c = ParseChangelog(kChangelog, "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(CheckChangelogNamesTarget(*c, V("0.3.0"), "CHANGELOG.md").ok());
  absl::Status s = CheckChangelogNamesTarget(*c, V("0.4.0"), "CHANGELOG.md");
  EXPECT_EQ(ReasonOf(s), reason::kMalformedChangelog) << s;
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("CHANGELOG.md has no release heading for the target 0.4.0"));
  EXPECT_EQ(MetadataOf(s, "target"), "0.4.0");
}

TEST(ChangelogTest, CompatibilitySectionAndWireFormatPhraseAreFlagged) {
  absl::StatusOr<Changelog> c = ParseChangelog(
      "## 0.4.0\n### Compatibility\nThe wire format of annotations changed.\n",
      "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<std::string> codes;
  for (const ChangelogFlag& f : c->releases[0].flags) codes.push_back(f.code);
  EXPECT_THAT(codes, ElementsAre("CHANGELOG_COMPATIBILITY", "WIRE_FORMAT_CHANGE"));
}

// Found in review: phrases were matched one line at a time, so one that
// a wrapped paragraph split ("wire\nformat") passed unread, and upstream's
// own words, "fresh disposable installation" (reference 7.4), were not
// "fresh installation".
TEST(ChangelogTest, PhrasesAreFoundAcrossAWrapAndWithAWordBetween) {
  absl::StatusOr<Changelog> c = ParseChangelog(
      "## 0.5.0\n"
      "* The annotations now use a new wire\n"
      "  format that older releases cannot read.\n"
      "* This release requires a fresh disposable installation.\n"
      "* Upgrading is a\n"
      "  one-way step.\n"
      "## 0.4.0\n"
      "* a fresh\n"
      "## 0.3.0\n"
      "installation of nothing; a fresh coat of paint on the installation docs.\n",
      "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<std::string> codes;
  std::vector<int> lines;
  for (const ChangelogFlag& f : c->releases[0].flags) {
    codes.push_back(f.code);
    lines.push_back(f.line);
  }
  EXPECT_THAT(codes, ElementsAre("WIRE_FORMAT_CHANGE", "FRESH_INSTALLATION", "ONE_WAY_UPGRADE"));
  EXPECT_THAT(lines, ElementsAre(3, 4, 6));  // the line that completes the phrase
  // A phrase is never joined across a release heading, nor stretched over
  // more than one word between.
  EXPECT_TRUE(c->releases[1].flags.empty());
  EXPECT_TRUE(c->releases[2].flags.empty());
}

// Found in review of the change above: "refresh" held "fresh", and a list
// item was joined to the one before it, its marker counted as the word
// between. These flags now also refuse a rollback, so a false one costs.
TEST(ChangelogTest, APhraseIsMadeOfWholeWordsWithinOneParagraph) {
  absl::StatusOr<Changelog> c = ParseChangelog(
      "## 0.6.0\n"
      "* Fix token refresh after installation.\n"
      "* Keys stay fresh\n"
      "* installation docs moved.\n"
      "* The wire\n"
      "\n"
      "format section of the docs.\n"
      "1. fresh\n"
      "2. installation\n",
      "CHANGELOG.md");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->releases[0].flags.empty())
      << ::testing::PrintToString(c->releases[0].flags.size()) << " flags, first "
      << (c->releases[0].flags.empty() ? "" : c->releases[0].flags[0].code);
}

TEST(ChangelogTest, BadHeadingNamesFileLineAndValue) {
  absl::StatusOr<Changelog> c =
      ParseChangelog("# Changelog\n\n## version two\n", "notes/CHANGELOG.md");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(ReasonOf(c.status()), reason::kMalformedChangelog);
  EXPECT_EQ(MetadataOf(c.status(), "file"), "notes/CHANGELOG.md");
  EXPECT_EQ(MetadataOf(c.status(), "line"), "3");
  EXPECT_EQ(MetadataOf(c.status(), "value"), "version");
  c = ParseChangelog("## 0.1.0\n## 0.1.0\n", "CHANGELOG.md");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(c.status().message(), HasSubstr("appears twice"));
}

TEST(ChangelogTest, OversizedChangelogIsRefused) {
  absl::StatusOr<Changelog> c =
      ParseChangelog(std::string(kMaxChangelogBytes + 1, 'x'), "CHANGELOG.md");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(ReasonOf(c.status()), reason::kInputTooLarge);
}

}  // namespace
}  // namespace kmsfleet
