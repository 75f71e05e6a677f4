#include "systemd_node.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "fleet.h"
#include "user_manager.h"

namespace kmsfleet::testing {

SystemdNode::SystemdNode(const std::string& installed_version,
                         const std::string& installed_script)
    : metrics_port_(FreeLoopbackPort()), health_port_(FreeLoopbackPort()) {
  // As root, every user manager nests its units under the cgroup it was
  // started in, the same for all tests; a name of its own keeps one test's
  // StopUnit from killing another test's provider.
  // Two free ports in a row can be the same one, which the provider
  // refuses (identical metrics and health addresses).
  while (health_port_ == metrics_port_) health_port_ = FreeLoopbackPort();
  unit_ = "bao-kms-provider-" +
          std::filesystem::path(dir_.path()).filename().string() + ".service";
  for (const char* sub : {"bin", "pstate", "cfg/systemd/user", "rel", "run"}) {
    std::filesystem::create_directories(dir_.File(sub));
  }
  if (installed_script.empty()) {
    StampedProviderCopy(install_path(), installed_version);
  } else {
    WriteExecutable(install_path(), installed_script);
  }
  Sh("openssl genpkey -algorithm ed25519 -out " + dir_.File("release.key") +
     " && openssl pkey -in " + dir_.File("release.key") + " -pubout -out " +
     dir_.File("release.pub"));
  WriteConfigs();
  StartManager();
  Systemctl({"start", unit_});
  if (!WaitUntil([&] { return ProviderReady(); }, std::chrono::seconds(15))) {
    throw std::runtime_error("provider never became ready:\n" + Logs());
  }
}

SystemdNode::~SystemdNode() {
  StopAgent();
  StopUserManager(manager_);
}

void SystemdNode::WriteConfigs() {
  const std::string sock = dir_.File("run/kms.sock");
  WriteProviderConfigs(dir_.path(), metrics_port_, health_port_);
  WriteFile(dir_.File("scenario.yaml"), "key_seed: swap-key-1\n");
  // Restart=no, unlike the shipped unit, so a failed start shows as
  // ActiveState=failed at once instead of after RestartSec.
  WriteFile(dir_.File("cfg/systemd/user/") + unit_,
            "[Unit]\nDescription=fake bao-kms-provider\n"
            "[Service]\nType=exec\n"
            "ExecStart=" + install_path() + " serve --config " +
                dir_.File("provider.yaml") + "\n"
            "Environment=FAKE_BAO_KMS_SCENARIO=" + dir_.File("scenario.yaml") + "\n"
            "Restart=no\n");
  WriteFile(dir_.File("kmsfleet.yaml"),
            "node: cp-1\n"
            "standalone: true\n"  // no cluster: admits unfenced swaps (issue 8 §3)
            "state_dir: " + state_dir() + "\n"
            "listen:\n  unix: " + dir_.File("agent.sock") + "\n"
            "provider:\n"
            "  metrics_url: http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics\n"
            "  ready_url: http://127.0.0.1:" + std::to_string(health_port_) + "/ready\n"
            "  live_url: http://127.0.0.1:" + std::to_string(health_port_) + "/live\n"
            "  kms_socket: " + sock + "\n"
            "  binary: " + install_path() + "\n"
            "  config: " + dir_.File("provider.yaml") + "\n"
            "  encryption_config: " + dir_.File("encryption-config.yaml") + "\n"
            "  unit: " + unit_ + "\n"
            "  http_timeout_ms: 1000\n  kms_timeout_ms: 1000\n"
            "executor:\n"
            "  bus_address: unix:path=" + dir_.File("rt/systemd/private") + "\n"
            "  public_keys: [" + dir_.File("release.pub") + "]\n"
            "  registry_path: " + registry_path() + "\n"
            "  stabilization_ms: 1500\n"
            "  ready_timeout_ms: 8000\n"
            "  unit_timeout_ms: 20000\n"
            "  poll_interval_ms: 200\n"
            "  doctor_timeout_ms: 20000\n");
}

void SystemdNode::StartManager() { manager_ = StartUserManager(dir_.path()); }

std::string SystemdNode::Systemctl(const std::vector<std::string>& args) {
  return UserSystemctl(dir_.path(), args);
}

SystemdNode::Release SystemdNode::MakeRelease(const std::string& version,
                                              const std::string& script) {
  std::string rel = dir_.File("rel/" + version);
  std::filesystem::create_directories(rel);
  std::string name = std::string(kArtifactPrefix) + version + "_linux_amd64";
  Release r{rel + "/" + name, rel + "/checksums.txt", rel + "/checksums.txt.sig"};
  if (script.empty()) {
    StampedProviderCopy(r.binary, version);
  } else {
    WriteExecutable(r.binary, script);
  }
  SignRelease(rel, name, dir_.File("release.key"));
  return r;
}

std::string SystemdNode::FakeScript(const std::string& version,
                                    const std::string& extra) const {
  return "#!/bin/sh\nexec " + std::string(FAKE_PROVIDER_PATH) + " --fake-version " +
         version + " " + extra + " \"$@\"\n";
}

void SystemdNode::JoinSingleVoterCluster() {
  std::string config = ReadFile(dir_.File("kmsfleet.yaml"));
  // A member is not standalone: the fence decides instead.
  config.erase(config.find("standalone: true\n"), std::string("standalone: true\n").size());
  WriteFile(dir_.File("kmsfleet.yaml"),
            config + "cluster:\n  listen: 127.0.0.1:" +
                std::to_string(FreeLoopbackPort()) + "\n  insecure: true\n");
}

absl::StatusOr<SubprocessResult> SystemdNode::CommitPlan(const std::string& in_flight) {
  return RunCtl({"plan", "commit", "--agent", "unix:" + dir_.File("agent.sock"),
                 "--in-flight", in_flight});
}

void SystemdNode::StartAgent(const std::vector<std::string>& extra_env,
                             const std::string& agent_path) {
  agent_ = StartAgentIn(dir_.path(), extra_env, agent_path);
}

void SystemdNode::StopAgent() {
  StopAgentProcess(agent_);
}

absl::StatusOr<SubprocessResult> SystemdNode::Node(const std::vector<std::string>& args,
                                                   int timeout_ms) {
  return NodeCtl(dir_.File("agent.sock"), args, timeout_ms);
}

bool SystemdNode::ProviderReady() {
  return HttpRequest("127.0.0.1:" + std::to_string(health_port_), "GET", "/ready")
             .status == 200;
}

std::string SystemdNode::ServingVersion() { return ServedBuildVersion(metrics_port_); }

std::string SystemdNode::InstalledVersion() {
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(10);
  absl::StatusOr<SubprocessResult> r = RunSubprocess({install_path(), "version"}, o);
  if (!r.ok() || r->exit_code != 0) return "";
  std::string out = r->stdout_text;
  size_t v = out.find("version: ");
  return v == std::string::npos ? "" : out.substr(v + 9, out.find('\n', v) - v - 9);
}

std::string SystemdNode::Logs() {
  return "--- agent.log\n" + ReadFile(dir_.File("agent.log")) + "--- manager.log\n" +
         ReadFile(dir_.File("manager.log")) + "--- unit\n" +
         Systemctl({"status", unit_});
}

}  // namespace kmsfleet::testing
