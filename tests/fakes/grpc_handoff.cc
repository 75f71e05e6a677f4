#include "grpc_handoff.h"

#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace kmsfleet::fake {
namespace {

// The directory of the executable file this process runs (symlinks
// resolved by the kernel), or "" when /proc is unreadable.
std::string OwnDirectory() {
  char path[PATH_MAX];
  ssize_t length = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  if (length <= 0) return "";
  std::string exe(path, static_cast<size_t>(length));
  size_t slash = exe.rfind('/');
  return slash == std::string::npos ? "" : exe.substr(0, slash);
}

}  // namespace

std::vector<std::string> GrpcBinaryCandidates(const std::string& build_path) {
  if (const char* env = std::getenv(kGrpcBinaryEnv); env && *env) return {env};
  std::vector<std::string> candidates;
  if (std::string dir = OwnDirectory(); !dir.empty()) {
    candidates.push_back(dir + "/" + kGrpcBinaryName);
  }
  if (!build_path.empty() && (candidates.empty() || candidates.front() != build_path)) {
    candidates.push_back(build_path);
  }
  return candidates;
}

int HandOffToGrpcBinary(CommandContext& ctx, char** argv,
                        const std::vector<std::string>& candidates) {
  // Present only if a hand-off already happened: the "gRPC executable" was
  // this one again (a wrong FAKE_BAO_KMS_GRPC_BINARY). Exec'ing once more
  // would loop forever.
  if (std::getenv(kHandOffCommEnv) != nullptr) {
    return ctx.Fail(kExitError, std::string("the hand-off to ") + kGrpcBinaryName +
                                    " started fake-bao-kms-provider again; check " +
                                    kGrpcBinaryEnv);
  }
  if (!ctx.args.Has("fake-version") || ctx.args.Flag("fake-version").empty()) {
    ::setenv(kVersionEnv, ctx.version.version.c_str(), 1);
  }
  char name[17] = {};
  if (::prctl(PR_GET_NAME, name) == 0) ::setenv(kHandOffCommEnv, name, 1);
  std::string tried;
  for (const std::string& path : candidates) {
    ::execv(path.c_str(), argv);
    tried += (tried.empty() ? "" : ", ") + path + " (" + std::strerror(errno) + ")";
  }
  ::unsetenv(kHandOffCommEnv);
  return ctx.Fail(kExitError, std::string("cannot run ") + kGrpcBinaryName + " for \"" +
                                  ctx.args.command.front() + "\": tried " + tried);
}

void AdoptHandOff() {
  const char* name = std::getenv(kHandOffCommEnv);
  if (name == nullptr) return;
  ::prctl(PR_SET_NAME, name);
  ::unsetenv(kHandOffCommEnv);
}

}  // namespace kmsfleet::fake
