#include "test_process.h"

namespace kmsfleet::fake::testing {

std::string FakeBinary() { return FAKE_PROVIDER_BINARY; }

ChildOptions FakeChildOptions(const std::string& out_path, const std::string& err_path,
                              const std::vector<std::string>& env) {
  ChildOptions options;
  options.out_path = out_path;
  options.err_path = err_path;
  options.extra_env = env;
  options.drop_env_prefixes = {"FAKE_BAO_KMS_", "BAO_KMS_PROVIDER_"};
  return options;
}

RunResult RunFake(const std::vector<std::string>& args, const std::vector<std::string>& env,
                  const std::string& binary) {
  TempDir dir;
  RunResult result;
  {
    std::vector<std::string> argv = {binary};
    argv.insert(argv.end(), args.begin(), args.end());
    ChildProcess child(argv, FakeChildOptions(dir.File("out"), dir.File("err"), env));
    result.exit_code = child.Wait(10s).value_or(-1);
  }
  result.out = ReadFile(dir.File("out"));
  result.err = ReadFile(dir.File("err"));
  return result;
}

}  // namespace kmsfleet::fake::testing
