// fake-openbao-health: serves OpenBao's GET /v1/sys/health for end-to-end
// tests and the demo (see README.md, "fake-openbao-health").
//
//   fake-openbao-health --state-file FILE [--listen HOST:PORT]
//                       [--listen-info FILE]
//
// FILE holds one state (openbao_health_fake.h) and is re-read on every
// request, so a test can seal OpenBao mid-run by rewriting it.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <string>

#include "http_server.h"
#include "openbao_health_fake.h"
#include "serve_runtime.h"
#include "stop_signal.h"

namespace kmsfleet::fake {
namespace {

constexpr char kUsage[] =
    "usage: fake-openbao-health --state-file FILE [--listen HOST:PORT] "
    "[--listen-info FILE]\n";

struct Flags {
  std::string listen = "127.0.0.1:0";
  std::string listen_info;
  std::string state_file;
};

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) return false;
    std::string value = argv[++i];
    if (arg == "--listen") {
      flags.listen = value;
    } else if (arg == "--listen-info") {
      flags.listen_info = value;
    } else if (arg == "--state-file") {
      flags.state_file = value;
    } else {
      return false;
    }
  }
  return !flags.state_file.empty();
}

HttpReply Serve(std::string_view method, std::string_view target, const std::string& file) {
  std::ifstream in(file);
  std::string state(64, '\0');
  in.read(state.data(), static_cast<std::streamsize>(state.size()));
  if (in.bad() || !in.is_open()) {
    return {500, "application/json",
            "{\"errors\":[\"fake-openbao-health: cannot read " + file + "\"]}\n", ""};
  }
  state.resize(static_cast<size_t>(in.gcount()));
  return HandleOpenBaoHealth(method, target, state);
}

int Run(const Flags& flags) {
  StopSignal stop;  // before any thread starts
  HttpServer server;
  absl::StatusOr<std::string> bound = server.Listen(
      flags.listen, [file = flags.state_file](std::string_view method, std::string_view target) {
        return Serve(method, target, file);
      });
  if (!bound.ok()) {
    std::cerr << "Error: " << bound.status().message() << "\n";
    return 5;
  }
  server.Start();
  if (!flags.listen_info.empty()) {
    absl::Status s = WriteFileAtomically(
        flags.listen_info, "{\"address\":\"" + *bound + "\",\"url\":\"http://" + *bound +
                               "\",\"pid\":" + std::to_string(getpid()) + "}\n");
    if (!s.ok()) {
      std::cerr << "Error: " << s.message() << "\n";
      return 1;
    }
  }
  while (!stop.WaitFor(std::chrono::seconds(1))) {
  }
  server.Stop();
  if (!flags.listen_info.empty()) ::unlink(flags.listen_info.c_str());
  return 0;
}

}  // namespace
}  // namespace kmsfleet::fake

int main(int argc, char** argv) {
  kmsfleet::fake::Flags flags;
  if (!kmsfleet::fake::ParseFlags(argc, argv, flags)) {
    std::cerr << kmsfleet::fake::kUsage;
    return 2;
  }
  return kmsfleet::fake::Run(flags);
}
