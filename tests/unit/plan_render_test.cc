// What kmsfleetctl prints of a dry run (plan_render.h): the closing line
// says what a real run would do, as the plan machine would.
#include "cli/plan_render.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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

// A start refuses only on its own guards; parity, OpenBao, rotation and
// doctor hold a started plan in Preflight instead.
TEST(RenderDryRunTest, APreflightGuardThatRefusesHoldsAStartedPlan) {
  v1::PlanView view = DryRun({{"fleet health", ""}, {"version policy", ""},
                              {"parity", "KEY_ID_HASH_MISSING"}, {"openbao", "OPENBAO_SEALED"}});
  EXPECT_TRUE(DryRunRefused(view));
  const std::string text = RenderDryRun(view);
  EXPECT_THAT(text, HasSubstr("a real run would start, then wait before the first swap"));
  EXPECT_THAT(text, Not(HasSubstr("refused now")));
}

TEST(RenderDryRunTest, AStartGuardThatRefusesRefusesTheRun) {
  v1::PlanView view = DryRun({{"version policy", "VERSION_NOT_HIGHER"},
                              {"parity", "KEY_ID_HASH_MISSING"}});
  EXPECT_THAT(RenderDryRun(view), HasSubstr("a real run would be refused now"));
  view = DryRun({{"fleet health", ""}, {"doctor", "NOT_EVALUATED"}});
  EXPECT_FALSE(DryRunRefused(view));
  EXPECT_THAT(RenderDryRun(view), HasSubstr("NOT_EVALUATED in its Preflight phase"));
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

}  // namespace
}  // namespace kmsfleet
