// `kmsfleetctl node swap` progress: one line per phase change.
#include "cli/operation_progress.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kmsfleet {
namespace {

v1::Operation Op(const std::string& phase, const std::string& reason = "",
                 const std::string& message = "") {
  v1::Operation op;
  op.set_operation_id("op-1");
  op.set_phase(phase);
  op.set_reason(reason);
  op.set_message(message);
  return op;
}

std::vector<std::string> Lines(const std::vector<v1::Operation>& updates) {
  OperationProgress progress;
  std::vector<std::string> lines;
  for (const v1::Operation& op : updates) {
    if (auto line = progress.Next(op)) lines.push_back(*line);
  }
  return lines;
}

TEST(OperationProgressTest, AClosingUpdateInTheSamePhasePrintsNothing) {
  // The journal's last update and its close both say Stable.
  EXPECT_EQ(Lines({Op("Staged"), Op("Stopped"), Op("Stable"), Op("Stable")}),
            (std::vector<std::string>{"op-1: Staged", "op-1: Stopped", "op-1: Stable"}));
}

TEST(OperationProgressTest, ARefusalInThePhaseItWasRefusedInIsNotASecondPhaseLine) {
  EXPECT_EQ(Lines({Op("Staged"), Op("Staged", "DOCTOR_FAILED", "doctor: fail")}),
            (std::vector<std::string>{"op-1: Staged"}));
  EXPECT_EQ(OperationRefusal(Op("Staged", "DOCTOR_FAILED", "doctor: fail")),
            "[DOCTOR_FAILED] doctor: fail");
}

TEST(OperationProgressTest, ReturningToAPhaseIsANewLine) {
  EXPECT_EQ(Lines({Op("Verifying"), Op("RollingBack"), Op("Verifying")}).size(), 3u);
}

TEST(OperationProgressTest, NoReasonMeansNoRefusal) {
  EXPECT_EQ(OperationRefusal(Op("Stable")), "");
}

TEST(CallRefusalTest, TheReasonShowsExactlyOnce) {
  // The Agent service's messages start with the reason already.
  EXPECT_EQ(CallRefusal("STALE_TERM", "[STALE_TERM] node cp-1 refused"),
            "[STALE_TERM] node cp-1 refused");
  EXPECT_EQ(CallRefusal("NOT_LEADER", "cp-2 is not the coordinator"),
            "[NOT_LEADER] cp-2 is not the coordinator");
  EXPECT_EQ(CallRefusal("", "failed to connect to all addresses"),
            "failed to connect to all addresses");
}

}  // namespace
}  // namespace kmsfleet
