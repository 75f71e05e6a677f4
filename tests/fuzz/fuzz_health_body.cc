// Fuzzes the provider's /ready and /live bodies (health_body.h): no input
// crashes them, every refusal has a reason, and an accepted body always
// has the required status.
#include "fuzz_check.h"
#include "kmsfleet/core/health_body.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<kmsfleet::ReadyBody> ready = kmsfleet::ParseReadyBody(text);
  if (!ready.ok()) {
    CheckError(ready.status());
  } else {
    Require(!ready->status.empty());
  }
  absl::StatusOr<kmsfleet::LiveBody> live = kmsfleet::ParseLiveBody(text);
  if (!live.ok()) {
    CheckError(live.status());
  } else {
    Require(!live->status.empty());
  }
  return 0;
}
