#include "fleet.h"

#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace kmsfleet::testing {

TestNode::TestNode(const TempDir& dir, NodeOptions options)
    : dir_(dir.File(options.name)),
      options_(std::move(options)),
      metrics_port_(FreeLoopbackPort()),
      health_port_(FreeLoopbackPort()) {
  std::filesystem::create_directories(dir_);
  WriteFile(dir_ + "/provider.yaml",
            "configVersion: v1alpha1\n"
            "server:\n"
            "  socketPath: " + dir_ + "/kms.sock\n"
            "  metricsAddress: 127.0.0.1:" + std::to_string(metrics_port_) + "\n"
            "  healthAddress: 127.0.0.1:" + std::to_string(health_port_) + "\n");
  WriteFile(dir_ + "/scenario.yaml", options_.scenario);
  WriteFile(agent_config(),
            "node: " + options_.name + "\n"
            "state_dir: " + dir_ + "/state\n" +
            (options_.listen_config.empty() ? "listen:\n  unix: " + agent_socket() + "\n"
                                            : options_.listen_config) +
            "provider:\n"
            "  metrics_url: http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics\n"
            "  ready_url: http://127.0.0.1:" + std::to_string(health_port_) + "/ready\n"
            "  live_url: http://127.0.0.1:" + std::to_string(health_port_) + "/live\n"
            "  kms_socket: " + dir_ + "/kms.sock\n"
            "  binary: " + options_.provider_binary + "\n"
            "  config: " + dir_ + "/provider.yaml\n"
            "  http_timeout_ms: 2000\n"
            "  kms_timeout_ms: 2000\n" +
                options_.extra_config);
}

void TestNode::StartProvider() {
  provider_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{options_.provider_binary, "serve", "--config",
                               dir_ + "/provider.yaml", "--scenario",
                               dir_ + "/scenario.yaml"},
      ChildOptions{.out_path = dir_ + "/provider.log"});
}

void TestNode::StartAgent() {
  agent_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{KMSFLEETD_PATH, "--config", agent_config()},
      ChildOptions{.out_path = dir_ + "/agent.log"});
}

void TestNode::SetScenario(const std::string& yaml) {
  WriteFile(dir_ + "/scenario.yaml", yaml);
}

absl::StatusOr<SubprocessResult> RunCtl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {KMSFLEETCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(30);
  return RunSubprocess(argv, options);
}

absl::StatusOr<SubprocessResult> Status(const std::vector<TestNode*>& nodes,
                                        const std::string& output) {
  std::vector<std::string> args = {"status", "--output", output};
  for (TestNode* node : nodes) {
    args.push_back("--agent");
    args.push_back("unix:" + node->agent_socket());
  }
  return RunCtl(args);
}

void WriteProviderConfigs(const std::string& dir, uint16_t metrics_port, uint16_t health_port,
                          const std::string& openbao_url) {
  const std::string sock = dir + "/run/kms.sock";
  WriteFile(dir + "/provider.yaml",
            "configVersion: v1alpha1\n"
            "server:\n"
            "  socketPath: " + sock + "\n"
            "  metricsAddress: 127.0.0.1:" + std::to_string(metrics_port) + "\n"
            "  healthAddress: 127.0.0.1:" + std::to_string(health_port) + "\n" +
            (openbao_url.empty() ? "" : "openbao:\n  address: " + openbao_url + "\n") +
            "transit:\n"
            "  keyIdScope: {providerName: openbao-kms-a, clusterId: a,"
            " transitMountId: transit-a, keyLineageId: lineage-a}\n"
            "state:\n  path: " + dir + "/pstate/key-registry.json\n");
  WriteFile(dir + "/encryption-config.yaml",
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n"
            "resources:\n  - resources: [secrets]\n    providers:\n      - kms:\n"
            "          apiVersion: v2\n          name: openbao-kms-a\n"
            "          endpoint: unix://" + sock + "\n");
}

std::unique_ptr<ChildProcess> StartAgentIn(const std::string& dir,
                                           const std::vector<std::string>& extra_env,
                                           const std::string& agent_path) {
  const std::string socket = dir + "/agent.sock";
  std::filesystem::remove(socket);
  auto agent = std::make_unique<ChildProcess>(
      std::vector<std::string>{agent_path, "--config", dir + "/kmsfleet.yaml"},
      ChildOptions{.out_path = dir + "/agent.log", .extra_env = extra_env});
  if (!WaitUntil([&] { return PathExists(socket); }, std::chrono::seconds(10))) {
    throw std::runtime_error("kmsfleetd did not start:\n" + ReadFile(dir + "/agent.log"));
  }
  return agent;
}

void StopAgentProcess(std::unique_ptr<ChildProcess>& agent) {
  if (!agent) return;
  agent->Signal(SIGTERM);
  agent->Wait(std::chrono::seconds(30));
  agent.reset();
}

absl::StatusOr<SubprocessResult> NodeCtl(const std::string& socket,
                                         const std::vector<std::string>& args,
                                         int timeout_ms) {
  std::vector<std::string> argv = {KMSFLEETCTL_PATH, "node", "--agent", "unix:" + socket,
                                   "--timeout-ms", std::to_string(timeout_ms)};
  argv.insert(argv.end(), args.begin(), args.end());
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(100);
  return RunSubprocess(argv, o);
}

std::string ServedBuildVersion(uint16_t metrics_port) {
  HttpReply r = HttpRequest("127.0.0.1:" + std::to_string(metrics_port), "GET", "/metrics");
  size_t at = r.body.find("openbao_kms_build_info{");
  if (r.status != 200 || at == std::string::npos) return "";
  size_t v = r.body.find("version=\"", at);
  if (v == std::string::npos) return "";
  v += 9;
  return r.body.substr(v, r.body.find('"', v) - v);
}

void StampedProviderCopy(const std::string& path, const std::string& version) {
  std::filesystem::copy_file(FAKE_PROVIDER_PATH, path,
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream out(path, std::ios::binary | std::ios::app);
  out << "\nFAKE_BAO_KMS_VERSION=" << version << "\n";
  out.close();
  chmod(path.c_str(), 0755);
}

}  // namespace kmsfleet::testing
