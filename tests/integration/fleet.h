// A local fleet for integration tests: per node, a fake provider process
// and a kmsfleetd process configured against it, all on loopback with
// ports and sockets in a temporary directory.
#ifndef KMSFLEET_TESTS_INTEGRATION_FLEET_H_
#define KMSFLEET_TESTS_INTEGRATION_FLEET_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/subprocess.h"
#include "process_harness.h"

namespace kmsfleet::testing {

struct NodeOptions {
  std::string name;
  std::string scenario = "key_seed: fleet-key-1\n";  // fake provider scenario YAML
  std::string provider_binary = FAKE_PROVIDER_PATH;
  std::string extra_config = "";  // appended to the agent's config (top-level keys)
  // The agent's `listen:` section in place of the default (its unix socket
  // at agent_socket()): a key may appear only once in the config.
  std::string listen_config = "";
};

class TestNode {
 public:
  TestNode(const TempDir& dir, NodeOptions options);

  void StartProvider();
  void StartAgent();
  // Rewrites the provider's scenario; the fake reloads it while serving.
  void SetScenario(const std::string& yaml);

  const std::string& name() const { return options_.name; }
  std::string agent_socket() const { return dir_ + "/agent.sock"; }
  std::string agent_config() const { return dir_ + "/kmsfleet.yaml"; }
  ChildProcess* provider() { return provider_.get(); }
  ChildProcess* agent() { return agent_.get(); }

 private:
  std::string dir_;
  NodeOptions options_;
  uint16_t metrics_port_;
  uint16_t health_port_;
  std::unique_ptr<ChildProcess> provider_;
  std::unique_ptr<ChildProcess> agent_;
};

// Runs kmsfleetctl with `args` and returns what it did.
absl::StatusOr<SubprocessResult> RunCtl(const std::vector<std::string>& args);

// Runs `kmsfleetctl status --output json` against `nodes`' agents.
absl::StatusOr<SubprocessResult> Status(const std::vector<TestNode*>& nodes,
                                        const std::string& output = "json");

// Writes a node's provider files into `dir`: provider.yaml (the fake's
// config: socket <dir>/run/kms.sock, metrics and health on loopback at the
// ports, the key registry <dir>/pstate/key-registry.json, and OpenBao at
// `openbao_url` unless "") and encryption-config.yaml naming that socket.
void WriteProviderConfigs(const std::string& dir, uint16_t metrics_port, uint16_t health_port,
                          const std::string& openbao_url = "");

// Starts `agent_path` (kmsfleetd, or a test build of it) with --config
// <dir>/kmsfleet.yaml and its output in <dir>/agent.log, and waits for its
// socket <dir>/agent.sock (a killed agent's stale one is removed first).
// Throws with the log if it does not appear.
std::unique_ptr<ChildProcess> StartAgentIn(const std::string& dir,
                                           const std::vector<std::string>& extra_env,
                                           const std::string& agent_path);
// SIGTERM, then wait up to 30 s; does nothing when `agent` is null.
void StopAgentProcess(std::unique_ptr<ChildProcess>& agent);
// kmsfleetctl node --agent unix:<socket> --timeout-ms <timeout_ms> <args>.
absl::StatusOr<SubprocessResult> NodeCtl(const std::string& socket,
                                         const std::vector<std::string>& args,
                                         int timeout_ms = 90000);

// The version in openbao_kms_build_info of the provider whose metrics
// listen on 127.0.0.1:`metrics_port`; "" when none answers.
std::string ServedBuildVersion(uint16_t metrics_port);

// Copies the fake provider to `path` with a version stamp appended, which the
// fake reports as its version (tests/fakes/README.md), like a distinct
// release artifact.
void StampedProviderCopy(const std::string& path, const std::string& version);

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_FLEET_H_
