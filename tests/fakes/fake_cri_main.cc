// fake-cri: a container runtime's CRI socket for tests (README.md,
// "fake-cri"). Usage: fake-cri --socket PATH --state-dir DIR
// Serves until SIGTERM or SIGINT, then exits 0.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "fake_cri_service.h"
#include "fake_cri_store.h"
#include "stop_signal.h"

namespace kmsfleet::fake {
namespace {

constexpr char kUsage[] = "usage: fake-cri --socket PATH --state-dir DIR\n";

int Main(int argc, char** argv) {
  StopSignal stop;  // before gRPC starts any thread (stop_signal.h)
  std::string socket_path;
  std::string state_dir;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--socket" || arg == "--state-dir") && i + 1 < argc) {
      (arg == "--socket" ? socket_path : state_dir) = argv[++i];
    } else {
      std::cerr << "fake-cri: unknown argument \"" << arg << "\"\n" << kUsage;
      return 2;
    }
  }
  if (socket_path.empty() || state_dir.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  struct stat info {};
  if (::stat(state_dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    std::cerr << "fake-cri: --state-dir " << state_dir << " is not a directory\n";
    return 2;
  }
  // A socket left by an earlier, killed instance would make the bind fail.
  if (::lstat(socket_path.c_str(), &info) == 0 && S_ISSOCK(info.st_mode)) {
    ::unlink(socket_path.c_str());
  }
  FakeCriStore store(state_dir);
  FakeImageService images(store);
  FakeRuntimeService runtime(store);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + socket_path, grpc::InsecureServerCredentials());
  builder.RegisterService(&images);
  builder.RegisterService(&runtime);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    std::cerr << "fake-cri: cannot listen on unix:" << socket_path << "\n";
    return 1;
  }
  std::cout << "fake-cri: serving on " << socket_path << std::endl;
  while (!stop.WaitFor(std::chrono::seconds(1))) {
  }
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  ::unlink(socket_path.c_str());
  return 0;
}

}  // namespace
}  // namespace kmsfleet::fake

int main(int argc, char** argv) { return kmsfleet::fake::Main(argc, argv); }
