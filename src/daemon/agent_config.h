// kmsfleetd's configuration file (/etc/kmsfleet/config.yaml by default).
// docs/config.md lists every key; this header is the parser's contract.
//
// Loading is strict, like the provider's own config: an unknown or repeated
// key, a value of the wrong type, a relative path, an address that is not
// host:port, a missing required key, settings that contradict each other
// (a static_pod: section without provider.mode: static_pod, cluster.tls
// with cluster.insecure: true), a peer named after this node or listed
// twice, or members the election would refuse, is an error naming the
// file, the line, the key and the value, and nothing is started.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_DAEMON_AGENT_CONFIG_H_
#define KMSFLEET_DAEMON_AGENT_CONFIG_H_

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/cluster/cluster_config.h"
#include "kmsfleet/core/capture_retention.h"
#include "kmsfleet/core/provider_config.h"
#include "kmsfleet/node/apiserver_restart.h"
#include "kmsfleet/node/cri_client.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/node/provider_probe.h"
#include "kmsfleet/node/static_pod_installer.h"

namespace kmsfleet {

// `provider.config` when not set. Only at this path may the file be missing.
inline constexpr char kDefaultProviderConfigPath[] = "/etc/openbao-kms/config.yaml";

struct PeerConfig {
  std::string name;
  std::string address;  // host:port of the peer's agent
};

// The `executor:` section (docs/config.md, docs/node-swap.md).
struct ExecutorConfig {
  // D-Bus address of the service manager; "" means the system bus.
  std::string bus_address;
  // PEM public keys (ECDSA P-256 or Ed25519) that sign checksums.txt.
  std::vector<std::string> public_keys;
  bool allow_unsigned = false;
  // The provider's state.path. Taken from the provider's config file
  // (`provider.config`) when that file exists; an explicit setting must
  // agree with it. Without the file: the explicit setting, else this.
  std::string registry_path = "/var/lib/openbao-kms/state/key-registry.json";
  bool registry_path_set = false;  // `executor.registry_path` was given
  std::string run_as;  // user for doctor/version/rotation-plan; "" = ours
  std::chrono::milliseconds stabilization{30000};
  std::chrono::milliseconds ready_timeout{90000};
  std::chrono::milliseconds unit_timeout{90000};
  std::chrono::milliseconds poll_interval{500};
  std::chrono::milliseconds doctor_timeout{60000};
  // How many rollbacks in a row the kept copies of replaced releases
  // allow (capture_retention.h).
  int rollback_steps = static_cast<int>(kDefaultRollbackSteps);
  // For http(s):// artifact sources: trusted CAs ("" = system store) and
  // the time one download may take.
  std::string download_ca_file;
  std::chrono::milliseconds download_timeout{600000};
  // URL prefixes (scheme://host[:port]/path/) Stage may download from;
  // empty means URL sources are refused (SOURCE_NOT_ALLOWED).
  std::vector<std::string> allowed_url_prefixes;
};

// The `static_pod:` section (issue 10; docs/static-pod.md): where the
// kubelet's manifest and the container runtime are. Used only when
// provider.mode is static_pod.
struct StaticPodConfig {
  std::string manifest = kDefaultStaticPodManifest;
  std::string container = kDefaultProviderContainer;
  // The mirror pod's name: the manifest's metadata.name, a dash, and the
  // kubelet's node name. "" = "bao-kms-provider-<node>".
  std::string pod_name;
  std::string pod_namespace = "kube-system";
  std::string cri_socket = kDefaultCriSocket;
  std::chrono::milliseconds pull_timeout{300000};
  // doctor from the image (preflight.h PreflightOptions::doctor_command);
  // empty: from the static-pod kit's binary.
  std::vector<std::string> doctor_command;
};

enum class ProviderMode { kSystemd, kStaticPod };

struct AgentConfig {
  std::string node;  // this node's name; required
  ProviderEndpoints provider;
  // `provider.mode`: systemd (the default) or static_pod. In static_pod
  // mode provider.binary and provider.unit are not used.
  ProviderMode provider_mode = ProviderMode::kSystemd;
  StaticPodConfig static_pod;
  std::string provider_config = kDefaultProviderConfigPath;
  int provider_config_line = 0;  // line of `provider.config`; 0 when not set
  std::string encryption_config =
      "/etc/kubernetes/openbao-kms/encryption-config.yaml";
  std::string provider_unit = "bao-kms-provider.service";
  std::string state_dir = "/var/lib/kmsfleet";
  // The unix socket is for the local kmsfleetctl; it is created with
  // `listen_unix_mode` (no bits for others) and, if set, chowned to
  // `listen_unix_group`. Remote callers use the mTLS cluster listener.
  std::string listen_unix = "/run/kmsfleet/agent.sock";
  unsigned listen_unix_mode = 0660;
  std::string listen_unix_group;
  // Plain TCP, for local demos only: refused at load unless
  // `listen_insecure` is true and the address is loopback.
  std::string listen_tcp;
  bool listen_insecure = false;
  // Without a `cluster:` section, Swap and Rollback are refused unless the
  // node is declared a single-node control plane (`standalone: true`).
  bool standalone = false;
  // The other agents' cluster addresses (the `cluster:` section).
  std::vector<PeerConfig> peers;
  ExecutorConfig executor;
  // The `apiserver:` section: how to restart the local kube-apiserver when
  // a release needs it (method kNone without the section or its `restart`).
  ApiServerRestartOptions apiserver;
  ClusterConfig cluster;
  // host:port for kmsfleetd's Prometheus /metrics; "" (the default) serves
  // none. docs/metrics.md lists the series.
  std::string metrics_listen;
  // `log.target`: auto (the journal when stderr is connected to it, else
  // stderr), journal or stderr. docs/logs.md.
  LogTarget log_target = LogTarget::kAuto;
  // What LoadAgentConfig read from `provider_config` (empty when the file
  // does not exist): the OpenBao address and CA the fleet guards need.
  ProviderConfigFacts provider_facts;
};

// Parses `text` as the YAML config file `file_name` (used in messages only).
// Errors: InvalidArgument with reason INVALID_CONFIG and a message of the
// form "<file>:<line>: <key>: <problem>", with metadata file, line, key.
absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text,
                                             std::string_view file_name);

// Takes what the agent needs from the provider's own config (`facts`, read
// from `config.provider_config`) into `config`: today the registry path.
// Errors: InvalidArgument, INVALID_CONFIG, naming both files and values,
// when an explicit `executor.registry_path` disagrees with `state.path`.
absl::Status ApplyProviderConfig(AgentConfig& config, const ProviderConfigFacts& facts);

// True if the host of `host_port` ("127.0.0.1:7443", "[::1]:7443",
// "localhost:7443") is a loopback address.
bool IsLoopbackAddress(std::string_view host_port);

// Reads `path` (at most 1 MiB) and parses it, then reads the provider's
// config file `provider.config` (bounded, read-only) and applies it as
// above. A missing provider config is skipped only at
// kDefaultProviderConfigPath. Errors as above, plus NotFound /
// PermissionDenied / ResourceExhausted naming the path; InvalidArgument,
// INVALID_CONFIG naming `path`, the line, `provider.config` and its value
// when a provider config set elsewhere does not exist; and the provider
// config's own errors (ParseProviderConfig) naming that file.
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_AGENT_CONFIG_H_
