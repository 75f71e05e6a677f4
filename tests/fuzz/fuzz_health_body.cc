// Fuzzes the provider's /ready and /live bodies (health_body.h): no input
// crashes them, and every refusal has a reason. (An empty "status" is
// present, so accepted; it is not "ok", so the node is not ready.)
#include "fuzz_check.h"
#include "kmsfleet/core/health_body.h"

using kmsfleet::fuzz::CheckError;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kmsfleet::fuzz::AsText(data, size);
  absl::StatusOr<kmsfleet::ReadyBody> ready = kmsfleet::ParseReadyBody(text);
  if (!ready.ok()) CheckError(ready.status());
  absl::StatusOr<kmsfleet::LiveBody> live = kmsfleet::ParseLiveBody(text);
  if (!live.ok()) CheckError(live.status());
  return 0;
}
