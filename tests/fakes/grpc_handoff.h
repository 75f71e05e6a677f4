// How fake-bao-kms-provider hands `serve` and `probe` to
// fake-bao-kms-provider-grpc (provider_main.h says why there are two).
//
// The hand-off is an execv() of the gRPC executable with the same argv, so
// the process keeps its PID, parent, open descriptors, signal mask and
// PR_SET_PDEATHSIG: systemd units and tests that signal the provider see
// one process, as before. Two things would otherwise change, and the
// environment carries them across:
// - the version: the gRPC executable is not the (possibly copied and
//   stamped) file that was started, so it cannot read that file's stamp.
//   Unless a non-empty --fake-version decides it, FAKE_BAO_KMS_VERSION is
//   set to the version already resolved; the precedence stays as it was
//   (flag > environment > stamp > default).
// - the process name (/proc/PID/comm, what ps and pkill match): the gRPC
//   executable restores the name of the file that was started.
// Thread-compatible: call before any thread starts.
#ifndef KMSFLEET_TESTS_FAKES_GRPC_HANDOFF_H_
#define KMSFLEET_TESTS_FAKES_GRPC_HANDOFF_H_

#include <string>
#include <vector>

#include "command_context.h"

namespace kmsfleet::fake {

inline constexpr char kGrpcBinaryName[] = "fake-bao-kms-provider-grpc";
// Overrides where the gRPC executable is (README.md, "Build targets").
inline constexpr char kGrpcBinaryEnv[] = "FAKE_BAO_KMS_GRPC_BINARY";
// Set only by the hand-off: the process name before the exec.
inline constexpr char kHandOffCommEnv[] = "FAKE_BAO_KMS_HANDOFF_COMM";

// Where the gRPC executable may be, in the order tried: $FAKE_BAO_KMS_GRPC_BINARY
// alone when set; else beside the real path of this executable, then
// `build_path` (where the build put it, so a copy of this executable made
// elsewhere, e.g. a stamped test artifact, still finds it).
std::vector<std::string> GrpcBinaryCandidates(const std::string& build_path);

// Replaces this process with the first candidate that can be executed, with
// the same argv. Returns only when none could be: prints one error line
// naming every path tried and returns the exit code (1).
int HandOffToGrpcBinary(CommandContext& ctx, char** argv,
                        const std::vector<std::string>& candidates);

// In fake-bao-kms-provider-grpc, first thing in main(): takes over what the
// hand-off carried (the process name) and removes it from the environment.
void AdoptHandOff();

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_GRPC_HANDOFF_H_
