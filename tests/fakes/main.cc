// fake-bao-kms-provider: a test double for the real bao-kms-provider binary.
// See README.md for flags, environment and scenario keys. This executable
// links no gRPC (so it starts fast) and hands `serve` and `probe` to
// fake-bao-kms-provider-grpc (grpc_handoff.h).
#include "grpc_handoff.h"
#include "provider_main.h"

namespace kmsfleet::fake {
namespace {

int HandOff(CommandContext& ctx, char** argv) {
  return HandOffToGrpcBinary(ctx, argv, GrpcBinaryCandidates(FAKE_GRPC_BINARY_BUILD_PATH));
}

}  // namespace
}  // namespace kmsfleet::fake

int main(int argc, char** argv) {
  return kmsfleet::fake::ProviderMain(argc, argv, kmsfleet::fake::HandOff);
}
