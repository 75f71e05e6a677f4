// What kmsfleetctl prints of a dry run (plan_render.h): the closing line
// says what a real run would do, as the plan machine would.
#include "cli/plan_render.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_join.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

v1::PlanView DryRun(const std::vector<std::pair<std::string, std::string>>& guards) {
  v1::PlanView view;
  for (const auto& [guard, reason] : guards) {
    v1::GuardResult* g = view.add_dry_run();
    g->set_guard(guard);
    g->set_reason(reason);
    if (!reason.empty()) g->set_message("because");
  }
  return view;
}

// A start refuses only on its own guards; parity, rotation and doctor
// hold a started plan in Preflight instead.
TEST(RenderDryRunTest, APreflightGuardThatRefusesHoldsAStartedPlan) {
  v1::PlanView view = DryRun({{"fleet health", ""}, {"version policy", ""},
                              {"parity", "KEY_ID_HASH_MISSING"},
                              {"rotation", "ROTATION_IN_PROGRESS"}});
  EXPECT_TRUE(DryRunRefused(view));
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("a real run would start, then wait before the first swap"));
  EXPECT_THAT(text, Not(HasSubstr("refused now")));
}

TEST(RenderDryRunTest, AStartGuardThatRefusesRefusesTheRun) {
  v1::PlanView view = DryRun({{"version policy", "VERSION_NOT_HIGHER"},
                              {"parity", "KEY_ID_HASH_MISSING"}});
  EXPECT_THAT(RenderDryRun(view), HasSubstr("a real run would be refused now"));
  // OpenBao sealed, standby-only or unreachable refuses the start too.
  view = DryRun({{"version policy", ""}, {"openbao", "OPENBAO_SEALED"}});
  EXPECT_THAT(RenderDryRun(view), HasSubstr("a real run would be refused now"));
  view = DryRun({{"fleet health", ""}, {"doctor", "NOT_EVALUATED"}});
  EXPECT_FALSE(DryRunRefused(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("no guard refuses"));
  // Parity held for fewer rounds than asked: a wait that ends by itself.
  view = DryRun({{"fleet health", ""}, {"parity", "PARITY_NOT_STABLE"}});
  EXPECT_FALSE(DryRunRefused(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("wait for parity's rounds"));
}

// A fleet already on the target: the dry run says there is nothing to do
// and exits 0, as the real run does; another refusal beside it still
// refuses.
TEST(RenderDryRunTest, AFleetOnTheTargetHasNothingToDo) {
  v1::PlanView view = DryRun({{"fleet health", ""}, {"version policy", "ALREADY_AT_TARGET"},
                              {"doctor", "NOT_EVALUATED"}});
  EXPECT_FALSE(DryRunRefused(view));
  EXPECT_TRUE(DryRunNothingToDo(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("nothing to do"));
  view = DryRun({{"fleet health", "AGENT_UNREACHABLE"}, {"version policy", "ALREADY_AT_TARGET"}});
  EXPECT_TRUE(DryRunRefused(view));
  EXPECT_FALSE(DryRunNothingToDo(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("a real run would be refused now"));
  // Found in review: guards after the version policy are never asked by a
  // real start that finds the fleet on the target.
  view = DryRun({{"fleet health", ""}, {"version policy", "ALREADY_AT_TARGET"},
                 {"compatibility", "INVALID_ARGUMENT"}, {"openbao", "OPENBAO_UNREACHABLE"}});
  EXPECT_FALSE(DryRunRefused(view));
  EXPECT_TRUE(DryRunNothingToDo(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("nothing to do"));
}

// Found in review: a refused `rollback --dry-run` closed with "a real run
// would start", though the rollback command answers with that refusal.
TEST(RenderDryRunTest, ARefusedRollbackIsRefusedNow) {
  v1::PlanView view = DryRun({{"rollback", "ROLLBACK_REFUSED_ONE_WAY"}});
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("a real run would be refused now"));
  EXPECT_THAT(text, Not(HasSubstr("would start")));
}

// A rollback is refused by its own guard only; fleet health, parity,
// OpenBao and rotation hold a started rollback before its first node, as
// they hold every node's step (not "would be refused now", as for a
// start, whose guards some of them are too).
TEST(RenderDryRunTest, AGateThatRefusesHoldsAStartedRollback) {
  v1::PlanView view = DryRun({{"rollback", ""}, {"soak", ""},
                              {"fleet health", "PROVIDER_NOT_READY"}, {"parity", ""},
                              {"openbao", "OPENBAO_UNREACHABLE"}, {"rotation", ""}});
  view.add_dry_run_order("b");
  view.add_dry_run_order("a");
  EXPECT_TRUE(DryRunRefused(view));
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("walk-back order: b a"));
  EXPECT_THAT(text, HasSubstr("a real rollback would start, then wait before its first node"));
  EXPECT_THAT(text, Not(HasSubstr("would be refused now")));
  // Found in review: a soak still running made the dry run exit 1 as if
  // refused; like parity's rounds, it is a wait the rollback sits out.
  for (const char* wait : {"PARITY_NOT_STABLE", "SOAK_IN_PROGRESS"}) {
    view = DryRun({{"rollback", ""}, {"members", ""}, {"soak", ""}, {"fleet health", ""},
                   {"parity", ""}, {"openbao", ""}, {"rotation", ""}});
    view.mutable_dry_run(std::string(wait) == "SOAK_IN_PROGRESS" ? 2 : 4)->set_reason(wait);
    view.add_dry_run_order("a");
    EXPECT_FALSE(DryRunRefused(view)) << wait;
    EXPECT_THAT(RenderDryRun(view), HasSubstr("a real rollback would start, and wait for parity"))
        << wait;
  }
}

// Found in review: with no node upgraded, the rollback ends the plan at
// once and the walk back is empty, which is not a refusal.
TEST(RenderDryRunTest, ARollbackWithNothingToWalkBackEndsThePlan) {
  v1::PlanView view = DryRun({{"rollback", ""}, {"members", ""}, {"completion", ""}});
  view.set_dry_run_would_start(true);
  std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("walk-back order: none"));
  EXPECT_THAT(text, HasSubstr("would end the plan RolledBack now"));
  view = DryRun({{"rollback", ""}, {"members", ""}, {"completion", "FLEET_NOT_CONVERGED"}});
  EXPECT_TRUE(DryRunRefused(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("would be accepted, then wait until the guards"));
  // Found in review: an end that waits on parity's rounds read "now".
  view = DryRun({{"rollback", ""}, {"members", ""}, {"completion", "PARITY_NOT_STABLE"}});
  EXPECT_FALSE(DryRunRefused(view));
  text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("RolledBack once parity's rounds come"));
  EXPECT_THAT(text, Not(HasSubstr("RolledBack now")));
}

// Found in review: a coordinator from before the gates' rows answers with
// the rollback's own guard only; the dry run does not read as if every
// gate had passed.
TEST(RenderDryRunTest, AnOlderCoordinatorsRollbackDryRunSaysTheGatesWereNotReported) {
  v1::PlanView view = DryRun({{"rollback", ""}});
  view.set_dry_run_would_start(true);
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("does not report the gates"));
  EXPECT_THAT(text, HasSubstr("walk-back order: not reported by this coordinator"));
  EXPECT_THAT(text, Not(HasSubstr("none")));
}

// Plan messages carry agents' and providers' words (a doctor's output in a
// halt): watch draws each line once, and redraws by counting them.
TEST(RenderProgressTest, AMessageIsOneLineWithoutEscapeSequences) {
  v1::PlanView view;
  v1::FleetPlan* plan = view.mutable_plan();
  plan->set_plan_id("plan-1");
  plan->set_target_version("0.2.0");
  plan->set_phase(v1::PLAN_PHASE_HALTED);
  plan->mutable_halt()->set_reason("DOCTOR_FAILED");
  plan->mutable_halt()->set_message("doctor said:\n\x1b]0;owned\x07" "done");
  for (const std::string& line : RenderProgress(view)) {
    EXPECT_EQ(line.find_first_of("\n\x1b\x07"), std::string::npos) << line;
  }
  EXPECT_THAT(RenderPlan(view), HasSubstr("doctor said:\\n\\x1B]0;owned\\x07done"));
}

// A step sent again after its agent stopped says so while it runs.
TEST(RenderProgressTest, AStepSentAgainAfterItsAgentStoppedSaysSo) {
  v1::PlanView view;
  v1::FleetPlan* plan = view.mutable_plan();
  plan->set_plan_id("plan-1");
  plan->set_target_version("0.2.0");
  plan->set_phase(v1::PLAN_PHASE_ROLLING);
  v1::PlanNode* n = plan->add_nodes();
  n->set_node("cp-1");
  n->set_phase(v1::PLAN_NODE_PHASE_IN_FLIGHT);
  n->set_stage(v1::PLAN_STEP_STAGE_SWAPPING);
  n->set_message("cp-1's agent ended plan-1.cp-1.swap.3 before the provider's stop "
                 "(AGENT_STOPPING); sent again as plan-1.cp-1.swap.4, retry 1 of 3");
  n->set_agent_stop_retries(1);
  std::string shown;
  for (const std::string& line : RenderProgress(view)) shown += line + "\n";
  EXPECT_THAT(shown, HasSubstr("(AGENT_STOPPING); sent again as plan-1.cp-1.swap.4"));
  // Its step over (Done), the old words are history, not shown.
  n->set_phase(v1::PLAN_NODE_PHASE_DONE);
  n->set_stage(v1::PLAN_STEP_STAGE_UNSPECIFIED);
  shown.clear();
  for (const std::string& line : RenderProgress(view)) shown += line + "\n";
  EXPECT_THAT(shown, Not(HasSubstr("sent again")));
}

v1::PlanView PlanIn(v1::PlanPhase phase) {
  v1::PlanView view;
  v1::FleetPlan* plan = view.mutable_plan();
  plan->set_plan_id("plan-1");
  plan->set_target_version("0.2.0");
  plan->set_phase(phase);
  for (const char* node : {"cp-1", "cp-2", "cp-3"}) plan->add_nodes()->set_node(node);
  plan->mutable_nodes(0)->set_phase(v1::PLAN_NODE_PHASE_DONE);
  return view;
}

// Found in review: nothing sets PLAN_KIND_ROLLBACK on an upgrade that is
// walked back, so `watch` and `rollback --watch` said "upgrade to 0.2.0"
// while the nodes went back to 0.1.0.
TEST(RenderProgressTest, APlanWalkingBackSaysRollbackToTheVersionBefore) {
  for (v1::PlanPhase phase : {v1::PLAN_PHASE_ROLLING_BACK, v1::PLAN_PHASE_ROLLED_BACK}) {
    v1::PlanView view = PlanIn(phase);
    view.mutable_plan()->set_version_before("0.1.0");
    EXPECT_EQ(RenderProgress(view).front(), "plan plan-1: rollback to 0.1.0");
  }
  v1::PlanView paused = PlanIn(v1::PLAN_PHASE_PAUSED);
  paused.mutable_plan()->set_version_before("0.1.0");
  paused.mutable_plan()->set_resume_phase(v1::PLAN_PHASE_ROLLING_BACK);
  EXPECT_EQ(RenderProgress(paused).front(), "plan plan-1: rollback to 0.1.0");
  paused.mutable_plan()->set_resume_phase(v1::PLAN_PHASE_ROLLING);
  EXPECT_EQ(RenderProgress(paused).front(), "plan plan-1: upgrade to 0.2.0");
}

// Found in review: lines were printed once per watch, ever, so a CI log
// left at "Paused" showed nothing when the plan went on Rolling.
TEST(WatchLogTest, AStateThatComesBackIsPrintedAgain) {
  WatchLog log;
  std::vector<std::string> first = log.Next(PlanIn(v1::PLAN_PHASE_ROLLING));
  ASSERT_FALSE(first.empty());
  EXPECT_TRUE(log.Next(PlanIn(v1::PLAN_PHASE_ROLLING)).empty()) << "nothing changed";
  std::vector<std::string> paused = log.Next(PlanIn(v1::PLAN_PHASE_PAUSED));
  ASSERT_EQ(paused.size(), 1u);
  EXPECT_THAT(paused[0], HasSubstr("Paused"));
  std::vector<std::string> again = log.Next(PlanIn(v1::PLAN_PHASE_ROLLING));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_THAT(again[0], HasSubstr("Rolling"));
}

// Issue 9 asks for each node's elapsed time: plain lines carry it (and
// the bar the plan's), but a line is not printed again only because its
// time moved on.
TEST(WatchLogTest, LinesCarryTheirElapsedTimeButATimeAloneIsNoChange) {
  WatchLog log;
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_ROLLING);
  view.mutable_plan()->set_created_unix_ms(1'000);
  view.mutable_plan()->mutable_nodes(0)->set_phase_since_unix_ms(4'000);
  view.set_now_unix_ms(7'000);
  std::vector<std::string> first = log.Next(view);
  ASSERT_FALSE(first.empty());
  EXPECT_THAT(absl::StrJoin(first, "\n"), HasSubstr("3s"));  // the node's phase
  EXPECT_THAT(first.back(), HasSubstr("elapsed 6s"));       // the plan
  view.set_now_unix_ms(9'000);
  EXPECT_TRUE(log.Next(view).empty()) << "only the times moved";
}

TEST(WatchLogTest, AWaitIsOneLinePerReasonWhileItLasts) {
  WatchLog log;
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_PREFLIGHT);
  view.set_blocked_reason("PARITY_NOT_STABLE");
  view.set_blocked_message("held for 1 of 3");
  EXPECT_THAT(log.Next(view).back(), HasSubstr("waiting: [PARITY_NOT_STABLE]"));
  view.set_blocked_message("held for 2 of 3");
  EXPECT_TRUE(log.Next(view).empty());
  view.set_blocked_reason("OPENBAO_SEALED");
  EXPECT_THAT(log.Next(view).back(), HasSubstr("waiting: [OPENBAO_SEALED]"));
}

// Found in review: ack-break-glass --watch exited 1 after the acknowledgement
// worked (the plan is Halted then), and pause --watch never ended.
TEST(WatchEndsTest, TheCommandsOwnPhaseEndsItsWatchAsDone) {
  bool ok = false;
  const v1::FleetPlan halted = PlanIn(v1::PLAN_PHASE_HALTED).plan();
  EXPECT_TRUE(WatchEnds(halted, v1::PLAN_PHASE_HALTED, &ok));
  EXPECT_TRUE(ok);
  EXPECT_TRUE(WatchEnds(halted, v1::PLAN_PHASE_UNSPECIFIED, &ok));
  EXPECT_FALSE(ok) << "an upgrade that halts failed";
  EXPECT_TRUE(WatchEnds(PlanIn(v1::PLAN_PHASE_PAUSED).plan(), v1::PLAN_PHASE_PAUSED, &ok));
  EXPECT_TRUE(ok);
  EXPECT_FALSE(WatchEnds(PlanIn(v1::PLAN_PHASE_PAUSED).plan(), v1::PLAN_PHASE_UNSPECIFIED, &ok));
  EXPECT_TRUE(WatchEnds(PlanIn(v1::PLAN_PHASE_BREAK_GLASS).plan(), v1::PLAN_PHASE_HALTED, &ok));
  EXPECT_FALSE(ok) << "a new break-glass after the acknowledgement";
}

// Found in review: `abort --watch` after an acknowledged break-glass (the
// plan Halted, its node still in flight) exited 1 at once, though the
// abort takes effect at that node's hand-off.
TEST(WatchEndsTest, AnAbortWaitsForTheHandOffOfAHaltedPlansNode) {
  bool ok = false;
  v1::FleetPlan halted = PlanIn(v1::PLAN_PHASE_HALTED).plan();
  halted.set_in_flight("cp-2");
  halted.set_abort_requested(true);
  EXPECT_FALSE(WatchEnds(halted, v1::PLAN_PHASE_ABORTED, &ok));
  EXPECT_TRUE(WatchEnds(PlanIn(v1::PLAN_PHASE_ABORTED).plan(), v1::PLAN_PHASE_ABORTED, &ok));
  EXPECT_TRUE(ok);
  // A new break-glass while waiting still ends it, as a failure.
  EXPECT_TRUE(WatchEnds(PlanIn(v1::PLAN_PHASE_BREAK_GLASS).plan(), v1::PLAN_PHASE_ABORTED, &ok));
  EXPECT_FALSE(ok);
  // Any other watch of that plan ends there, as before.
  EXPECT_TRUE(WatchEnds(halted, v1::PLAN_PHASE_UNSPECIFIED, &ok));
}

TEST(RenderHistoryTest, NamesWhoStartedThePlanAndWhoRolledItBack) {
  v1::PlanHistory history;
  v1::FleetPlan* p = history.add_plans();
  *p = PlanIn(v1::PLAN_PHASE_ROLLED_BACK).plan();
  p->set_version_before("0.1.0");
  for (const auto& [who, what] : std::vector<std::pair<std::string, std::string>>{
           {"operator alice", "upgrade to 0.2.0"},
           {"coordinator cp-1", "Rolling"},
           {"operator bob", "rollback"}}) {
    v1::AuditEntry* e = p->add_audit();
    e->set_who(who);
    e->set_what(what);
  }
  p->mutable_audit(0)->add_acknowledgements("ONE_WAY_UPGRADE");
  EXPECT_THAT(RenderHistory(history),
              HasSubstr("by operator alice ack:ONE_WAY_UPGRADE, rollback by operator bob"));
}

// Found by the requirements audit: `plan` showed how long ago each node
// reached its phase, but not how long a finished node's step took (the
// time it went in flight was overwritten when it became Done).
TEST(RenderPlanTest, AFinishedNodeShowsHowLongItsStepTook) {
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_ROLLING);
  v1::PlanNode* done = view.mutable_plan()->mutable_nodes(0);
  done->set_in_flight_since_unix_ms(1'796'457'100'000);
  done->set_done_unix_ms(1'796'457'172'000);
  done->set_phase_since_unix_ms(1'796'457'172'000);
  view.set_now_unix_ms(1'796'457'182'000);
  EXPECT_THAT(RenderPlan(view), ::testing::ContainsRegex("cp-1 +Done +10s  \\(its step took 1m12s\\)"));
}

// Found by the requirements audit: `history` named who started a plan and
// who rolled it back, but not who paused, resumed, aborted it or
// acknowledged its break-glass, nor when. Each such command is a row of
// its own under the plan's; the coordinator's entries stay in `plan`.
TEST(RenderHistoryTest, ShowsEveryOperatorCommandAfterTheStartWithWhoAndWhen) {
  v1::PlanHistory history;
  v1::FleetPlan* p = history.add_plans();
  *p = PlanIn(v1::PLAN_PHASE_ABORTED).plan();
  struct Entry {
    int64_t at;
    std::string who, what, ack;
  };
  for (const Entry& e : std::vector<Entry>{
           {1'796'457'178'955, "operator alice", "upgrade to 0.2.0", ""},
           {1'796'457'180'000, "coordinator cp-1", "Preflight -> Rolling: preflight passed", ""},
           {1'796'457'181'000, "operator bob", "pause", ""},
           {1'796'457'182'000, "local root", "resume", ""},
           {1'796'457'183'000, "coordinator cp-1", "Rolling -> BreakGlass: cp-2 failed", ""},
           {1'796'457'184'000, "operator bob", "ack-break-glass", "break-glass nonce 6f2a"},
           {1'796'457'185'000, "operator carol", "abort", ""}}) {
    v1::AuditEntry* a = p->add_audit();
    a->set_at_unix_ms(e.at);
    a->set_who(e.who);
    a->set_what(e.what);
    if (!e.ack.empty()) a->add_acknowledgements(e.ack);
  }
  const std::string text = RenderHistory(history);
  EXPECT_THAT(text, HasSubstr("\n    2026-12-05 07:53:01Z  pause           by operator bob\n"
                              "    2026-12-05 07:53:02Z  resume          by local root\n"
                              "    2026-12-05 07:53:04Z  ack-break-glass by operator bob  "
                              "ack:break-glass nonce 6f2a\n"
                              "    2026-12-05 07:53:05Z  abort           by operator carol\n"));
  EXPECT_THAT(text, Not(HasSubstr("Rolling ->")));
  EXPECT_THAT(text, Not(HasSubstr("    2026-12-05 07:52:58Z"))) << "the start is the plan's row";
}

// Found in review: `plan`, the dry run and `history` escaped the agent's
// text but kept its newlines, so a guard message (doctor's output, say)
// could print a row of its own, one that reads "pass". Each row's text
// stays in its row, a newline in it shown as \n.
TEST(RenderPlanTest, AnAgentsNewlineStaysInItsRow) {
  const std::string forged = "doctor said\n  rotation            pass";
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_HALTED);
  v1::GuardRecord* g = view.mutable_plan()->add_guards();
  g->set_guard("doctor");
  g->set_reason("DOCTOR_FAILED");
  g->set_message(forged);
  v1::AuditEntry* a = view.mutable_plan()->add_audit();
  a->set_who("operator\nalice");
  a->set_what("upgrade");
  const std::string plan = RenderPlan(view);
  EXPECT_THAT(plan, HasSubstr("[DOCTOR_FAILED] doctor said\\n  rotation            pass\n"));
  EXPECT_THAT(plan, HasSubstr("operator\\nalice"));
  EXPECT_THAT(plan, Not(HasSubstr("\n  rotation")));

  v1::PlanView dry = DryRun({{"doctor", "DOCTOR_FAILED"}});
  dry.mutable_dry_run(0)->set_message(forged);
  EXPECT_THAT(RenderDryRun(dry), Not(HasSubstr("\n  rotation")));

  v1::PlanHistory history;
  *history.add_plans() = view.plan();
  EXPECT_THAT(RenderHistory(history), HasSubstr("by operator\\nalice"));
}

TEST(RenderDryRunTest, APassWithANoteShowsIt) {
  v1::PlanView view = DryRun({{"compatibility", ""}, {"rotation", ""}});
  view.mutable_dry_run(0)->set_message("release notes: 0.2.0: rotate after");
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, ::testing::ContainsRegex("compatibility +pass; release notes: 0.2.0: rotate after\n"));
  EXPECT_THAT(text, ::testing::ContainsRegex("rotation +pass\n"));
  EXPECT_FALSE(DryRunRefused(view));
}

// Found by the requirements audit: the notes of the releases crossed (the
// catalog's "upgrade every node before the next rotation", say) showed only
// in a refusal or the plan's JSON, and the audit's times as raw
// milliseconds. `plan` shows the notes; `plan` and `history` show times.
TEST(RenderPlanTest, ShowsTheReleaseNotesCrossedAndWhenThingsWereAsked) {
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_ROLLING);
  view.mutable_plan()->mutable_compat()->add_notes(
      "0.2.0: upgrade every node before the next rotation");
  view.mutable_plan()->set_created_unix_ms(1'796'457'178'955);
  v1::AuditEntry* a = view.mutable_plan()->add_audit();
  a->set_who("operator alice");
  a->set_what("upgrade to 0.2.0");
  a->set_at_unix_ms(1'796'457'178'955);
  const std::string plan = RenderPlan(view);
  EXPECT_THAT(plan, HasSubstr("release notes of the versions crossed:\n"
                              "  - 0.2.0: upgrade every node before the next rotation\n"));
  EXPECT_THAT(plan, HasSubstr("  2026-12-05 07:52:58Z  operator alice"));
  v1::PlanHistory history;
  *history.add_plans() = view.plan();
  EXPECT_THAT(RenderHistory(history), HasSubstr("0.2.0  2026-12-05 07:52:58Z  "));
  EXPECT_EQ(FormatUnixMs(0), "-");
}

// Found in review: during a rollback the upgraded nodes counted as done,
// so the bar stood at the upgrade's count and the ETA never shrank. It
// counts the nodes walked back, of those it walks back, timed from the
// rollback's start.
TEST(RenderProgressTest, ARollbackCountsTheNodesItWalkedBack) {
  v1::PlanView view = PlanIn(v1::PLAN_PHASE_ROLLING_BACK);
  v1::FleetPlan& plan = *view.mutable_plan();
  plan.set_created_unix_ms(1'000);
  plan.mutable_nodes(0)->set_phase(v1::PLAN_NODE_PHASE_DONE);
  plan.mutable_nodes(0)->set_done_unix_ms(60'000);
  plan.mutable_nodes(1)->set_phase(v1::PLAN_NODE_PHASE_IN_FLIGHT);
  plan.mutable_nodes(2)->set_phase(v1::PLAN_NODE_PHASE_ROLLED_BACK);
  plan.mutable_nodes(2)->set_done_unix_ms(120'000);
  plan.mutable_nodes(2)->set_phase_since_unix_ms(700'000);
  v1::AuditEntry* rollback = plan.add_audit();
  rollback->set_what("rollback");
  rollback->set_at_unix_ms(600'000);
  view.set_now_unix_ms(710'000);
  std::string shown;
  for (const std::string& line : RenderProgress(view)) shown += line + "\n";
  EXPECT_THAT(shown, HasSubstr("] 1/3 nodes  RollingBack"));
  // 100 s for the one node walked back since the rollback began: two to go.
  EXPECT_THAT(shown, HasSubstr("ETA ~" + FormatDuration(200'000)));

  // Paused (or halted) on the way back, it still counts the walk back.
  plan.set_phase(v1::PLAN_PHASE_PAUSED);
  plan.set_resume_phase(v1::PLAN_PHASE_ROLLING_BACK);
  shown.clear();
  for (const std::string& line : RenderProgress(view)) shown += line + "\n";
  EXPECT_THAT(shown, HasSubstr("] 1/3 nodes  Paused"));
}

// Found in review: a node line with a message is longer than a terminal's
// 80 columns; it took two rows, and the redraw, moving up one row per
// line, left rows of the previous frame on the screen.
TEST(FitToWidthTest, EveryLineFitsOneRow) {
  const std::string wide(200, 'x');
  std::vector<std::string> lines = FitToWidth({"short", wide, "caf\xC3\xA9" + wide}, 80);
  EXPECT_EQ(lines[0], "short");
  for (const std::string& line : lines) EXPECT_LT(line.size(), 80u) << line;
  EXPECT_EQ(lines[1], std::string(76, 'x') + "...");
  EXPECT_EQ(FitToWidth({wide}, 0)[0], wide) << "unknown width: as it is";
  // A cut never splits a UTF-8 character.
  std::vector<std::string> accented = FitToWidth({std::string(75, 'a') + "\xC3\xA9zzz"}, 80);
  EXPECT_EQ(accented[0], std::string(75, 'a') + "...");
}

}  // namespace
}  // namespace kmsfleet
