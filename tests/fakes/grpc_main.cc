// fake-bao-kms-provider-grpc: the whole fake, `serve` and `probe` included.
// fake-bao-kms-provider execs it for those two (grpc_handoff.h); run
// directly, it behaves exactly as fake-bao-kms-provider does.
#include "commands.h"
#include "grpc_handoff.h"
#include "provider_main.h"

namespace kmsfleet::fake {
namespace {

int RunGrpcCommand(CommandContext& ctx, char** /*argv*/) {
  return ctx.args.command.front() == "serve" ? RunServe(ctx) : RunProbe(ctx);
}

}  // namespace
}  // namespace kmsfleet::fake

int main(int argc, char** argv) {
  kmsfleet::fake::AdoptHandOff();
  return kmsfleet::fake::ProviderMain(argc, argv, kmsfleet::fake::RunGrpcCommand);
}
