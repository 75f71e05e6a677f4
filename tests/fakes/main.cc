// fake-bao-kms-provider: a test double for the real bao-kms-provider binary.
// See README.md for flags, environment and scenario keys. This executable
// links no gRPC (so it starts fast) and hands `serve` and `probe` to
// fake-bao-kms-provider-grpc (grpc_handoff.h).
#include <openssl/crypto.h>

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
  // OpenSSL serves only SHA-256 here. Its default start reads openssl.cnf
  // and registers every cipher and digest, which took ~0.8 ms, a quarter
  // of this executable's start; a digest does not depend on either.
  OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG | OPENSSL_INIT_NO_ADD_ALL_CIPHERS |
                          OPENSSL_INIT_NO_ADD_ALL_DIGESTS,
                      nullptr);
  return kmsfleet::fake::ProviderMain(argc, argv, kmsfleet::fake::HandOff);
}
