// The subcommands the fake implements. Each returns the process exit code
// and writes its report to stdout and any error line to stderr (reference
// §2.1). Single-threaded except RunServe, which owns its threads.
#ifndef KMSFLEET_TESTS_FAKES_COMMANDS_H_
#define KMSFLEET_TESTS_FAKES_COMMANDS_H_

#include "command_context.h"

namespace kmsfleet::fake {

int RunVersion(CommandContext& ctx);       // §2.2
int RunConfig(CommandContext& ctx);        // §2.8
int RunConfigSchema(CommandContext& ctx);  // §2.8
int RunDoctor(CommandContext& ctx);        // §2.3
int RunVerifyKey(CommandContext& ctx);     // §2.4
// rotation-plan, or verify-rotation when `verify` (§2.6).
int RunRotationPlan(CommandContext& ctx, bool verify);
int RunProbe(CommandContext& ctx);  // §2.5
int RunServe(CommandContext& ctx);  // §2.10, §3, §4

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_COMMANDS_H_
