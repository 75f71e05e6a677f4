// Fuzzes the fleet plan payload (plan_machine.h), which a new coordinator
// reads from the replicated record: a payload that decodes encodes and
// decodes again to the same plan, and no payload over the bound decodes.
#include <google/protobuf/util/message_differencer.h>

#include "fuzz_check.h"
#include "kmsfleet/core/plan_machine.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<kmsfleet::v1::FleetPlan> plan =
      kmsfleet::DecodePlan(kmsfleet::fuzz::AsText(data, size));
  if (!plan.ok()) {
    CheckError(plan.status());
    return 0;
  }
  Require(size <= kmsfleet::kMaxPlanBytes);
  absl::StatusOr<std::string> again = kmsfleet::EncodePlan(*plan);
  if (!again.ok()) {
    CheckError(again.status());
    return 0;
  }
  absl::StatusOr<kmsfleet::v1::FleetPlan> back = kmsfleet::DecodePlan(*again);
  Require(back.ok());
  Require(google::protobuf::util::MessageDifferencer::Equals(*plan, *back));
  return 0;
}
