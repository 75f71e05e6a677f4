// Fuzzes what an agent reads back from its election and fence state files
// (election.pb, fence.pb): whatever protobuf accepts round-trips, and a
// fence guard built from it answers a command without crashing: a refusal
// has a reason, and an admitted fence is never below the highest term.
#include "fuzz_check.h"
#include "kmsfleet/core/fence_guard.h"
#include "kmsfleet/v1/peer.pb.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(kmsfleet::fuzz::AsText(data, size));
  kmsfleet::v1::HardState hard;
  if (hard.ParseFromString(bytes)) {
    kmsfleet::v1::HardState again;
    Require(again.ParseFromString(hard.SerializeAsString()));
    Require(again.SerializeAsString() == hard.SerializeAsString());
  }
  kmsfleet::v1::FenceState state;
  if (!state.ParseFromString(bytes)) return 0;
  kmsfleet::FenceGuard guard("cp-1", state);
  kmsfleet::v1::Fence fence;
  fence.set_term(hard.committed().term());
  fence.set_index(hard.committed().index());
  fence.set_in_flight(hard.committed().in_flight());
  absl::Status s = guard.AdmitSwap(fence, hard.committed());
  if (!s.ok()) {
    CheckError(s);
  } else {
    Require(fence.term() >= state.highest_term());
    Require(hard.committed().in_flight() == "cp-1");
  }
  return 0;
}
