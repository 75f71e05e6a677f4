// Helpers for fake_provider_tests on top of the shared process harness:
// run the fake to completion as kmsfleet does, and read its listeners.
// Thread-compatible.
#ifndef KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_
#define KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_

#include <string>
#include <vector>

#include "process_harness.h"

namespace kmsfleet::fake::testing {

using namespace std::chrono_literals;
using kmsfleet::testing::ChildOptions;
using kmsfleet::testing::ChildProcess;
using kmsfleet::testing::PathExists;
using kmsfleet::testing::ReadFile;
using kmsfleet::testing::TempDir;
using kmsfleet::testing::WaitUntil;
using kmsfleet::testing::WriteFile;
using HttpResponse = kmsfleet::testing::HttpReply;

// Path of the built fake-bao-kms-provider.
std::string FakeBinary();

// Options for a fake child: separate output files, and none of the
// FAKE_BAO_KMS_* or BAO_KMS_PROVIDER_* variables of the developer's shell.
ChildOptions FakeChildOptions(const std::string& out_path, const std::string& err_path,
                              const std::vector<std::string>& env = {});

struct RunResult {
  int exit_code = -1;  // -1 when it did not finish within 10 s
  std::string out;
  std::string err;
};

// Runs the fake to completion (10 s limit) with `args`.
RunResult RunFake(const std::vector<std::string>& args,
                  const std::vector<std::string>& env = {},
                  const std::string& binary = FakeBinary());

inline HttpResponse HttpGet(const std::string& host_port, const std::string& path) {
  return kmsfleet::testing::HttpRequest(host_port, "GET", path);
}
inline HttpResponse HttpRequest(const std::string& host_port, const std::string& method,
                                const std::string& path) {
  return kmsfleet::testing::HttpRequest(host_port, method, path);
}

}  // namespace kmsfleet::fake::testing

#endif  // KMSFLEET_TESTS_FAKES_TEST_PROCESS_H_
