// One control-plane node under a real systemd user manager: its own
// XDG_RUNTIME_DIR (0700) and XDG_CONFIG_HOME, the fake provider as
// bao-kms-provider.service, and kmsfleetd reaching the manager over sd-bus at
// unix:path=$XDG_RUNTIME_DIR/systemd/private. Several can run side by side.
#ifndef KMSFLEET_TESTS_INTEGRATION_SYSTEMD_NODE_H_
#define KMSFLEET_TESTS_INTEGRATION_SYSTEMD_NODE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/subprocess.h"
#include "process_harness.h"

namespace kmsfleet::testing {

inline constexpr char kArtifactPrefix[] = "bao-kms-provider_";

class SystemdNode {
 public:
  // Installs `installed_binary_script` (a shell script body, or "" for a
  // stamped copy of the fake at `installed_version`) and starts the manager,
  // the unit and, unless told not to, kmsfleetd.
  explicit SystemdNode(const std::string& installed_version,
                       const std::string& installed_script = "");
  ~SystemdNode();

  const std::string& dir() const { return dir_.path(); }
  std::string install_path() const { return dir_.File("bin/bao-kms-provider"); }
  std::string registry_path() const { return dir_.File("pstate/key-registry.json"); }
  std::string state_dir() const { return dir_.File("agent-state"); }
  const std::string& unit() const { return unit_; }

  // A release: the binary (a stamped fake copy, or `script` wrapping the
  // fake), checksums.txt listing it, and an Ed25519 signature of that.
  struct Release {
    std::string binary, checksums, signature;
  };
  Release MakeRelease(const std::string& version, const std::string& script = "");
  // A shell script that runs the fake as `version` with extra --fake-set
  // arguments, e.g. "--fake-set ready=false".
  std::string FakeScript(const std::string& version, const std::string& extra) const;

  // Makes the agent a single-voter election member (plain TCP on
  // loopback), so its swaps and rollbacks need the coordinator's fence.
  // REQUIRES: called before StartAgent.
  void JoinSingleVoterCluster();
  // kmsfleetctl plan commit --in-flight <in_flight> against this agent.
  absl::StatusOr<SubprocessResult> CommitPlan(const std::string& in_flight);

  // Starts `agent_path` (kmsfleetd, or the crash tests' build of it).
  void StartAgent(const std::vector<std::string>& extra_env = {},
                  const std::string& agent_path = KMSFLEETD_PATH);
  void StopAgent();
  ChildProcess* agent() { return agent_.get(); }

  // kmsfleetctl node <args> --agent <this agent>, waiting up to
  // `timeout_ms` (its --timeout-ms).
  absl::StatusOr<SubprocessResult> Node(const std::vector<std::string>& args,
                                        int timeout_ms = 90000);
  // systemctl --user <args> against this manager.
  std::string Systemctl(const std::vector<std::string>& args);
  bool ProviderReady();
  // The version the running provider reports in build_info, "" if none.
  std::string ServingVersion();
  std::string InstalledVersion();
  std::string Logs();

 private:
  void WriteConfigs();
  void StartManager();

  TempDir dir_;
  std::string unit_;
  uint16_t metrics_port_, health_port_;
  std::unique_ptr<ChildProcess> manager_;
  std::unique_ptr<ChildProcess> agent_;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_SYSTEMD_NODE_H_
