// The fake's command line, from argv to exit code, shared by its two
// executables (README.md, "Build targets"):
// - fake-bao-kms-provider links no gRPC, so the one-shot commands kmsfleet
//   runs on an upgrade's critical path start as fast as the real static Go
//   binary; it hands `serve` and `probe` to the other executable;
// - fake-bao-kms-provider-grpc runs every command, `serve` and `probe` too.
// Single-threaded until a command starts its own threads.
#ifndef KMSFLEET_TESTS_FAKES_PROVIDER_MAIN_H_
#define KMSFLEET_TESTS_FAKES_PROVIDER_MAIN_H_

#include "command_context.h"

namespace kmsfleet::fake {

// Runs `serve` or `probe` (ctx.args.command.front() says which) and returns
// the exit code; `argv` is the process's own, for a hand-off by exec.
using GrpcCommandRunner = int (*)(CommandContext& ctx, char** argv);

// Parses argv, loads the scenario, resolves the version and runs the
// command. Returns the process exit code.
int ProviderMain(int argc, char** argv, GrpcCommandRunner run_grpc_command);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_PROVIDER_MAIN_H_
