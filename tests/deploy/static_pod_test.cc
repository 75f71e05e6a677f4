// static-pod/kmsfleetd.yaml against the config it runs with
// (deploy/config/config-static-pod.yaml), read by the agent's own loader:
// the pod mounts exactly the host paths that config makes the agent read or
// write, read-only unless it writes there, and nothing else from the host.
// Each rule is also run on a broken copy of the manifest, which it must
// reject, so that a rule that can no longer fail is noticed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/agent_config.h"

namespace kmsfleet {
namespace {

using ::testing::HasSubstr;
using ::testing::Contains;
using ::testing::IsEmpty;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A host path the agent uses, as the container sees it.
struct UsedPath {
  std::string path;
  std::string why;  // the config key, for messages
  bool write = false;
};

// Every path `config` makes the agent (or the provider commands it runs)
// read or write; `config_file` is the --config the pod passes.
std::vector<UsedPath> PathsUsedBy(const AgentConfig& config, const std::string& config_file) {
  std::vector<UsedPath> used = {
      {config_file, "--config"},
      {config.state_dir, "state_dir", true},
      {Dirname(config.listen_unix), "listen.unix", true},
      // A swap renames a temp file in the binary's directory over it.
      {Dirname(config.provider.binary), "provider.binary", true},
      {config.provider.kms_socket, "provider.kms_socket"},
      {config.provider_config, "provider.config"},
      {config.encryption_config, "provider.encryption_config"},
      {config.executor.registry_path, "executor.registry_path (state.path)"},
  };
  const std::string bus_prefix = "unix:path=";
  if (config.executor.bus_address.rfind(bus_prefix, 0) == 0) {
    used.push_back({config.executor.bus_address.substr(bus_prefix.size()),
                    "executor.bus_address"});
  } else if (config.executor.bus_address.empty()) {
    used.push_back({"/run/dbus/system_bus_socket", "executor.bus_address (system bus)"});
  }
  for (const std::string& key : config.executor.public_keys) {
    used.push_back({key, "executor.public_keys"});
  }
  for (const auto& [path, why] :
       {std::pair{config.cluster.tls.ca, "cluster.tls.ca"},
        std::pair{config.cluster.tls.cert, "cluster.tls.cert"},
        std::pair{config.cluster.tls.key, "cluster.tls.key"},
        std::pair{config.executor.download_ca_file, "executor.download_ca_file"},
        std::pair{config.apiserver.http.ca_file, "apiserver.ca_file"},
        std::pair{config.apiserver.command, "apiserver.restart"}}) {
    if (!path.empty()) used.push_back({path, why});
  }
  // setpriv resolves executor.run_as, and doctor the provider's socket
  // group, in the user database: it must be the host's.
  if (!config.executor.run_as.empty()) {
    used.push_back({"/etc/passwd", "executor.run_as"});
    used.push_back({"/etc/group", "executor.run_as"});
  }
  return used;
}

// node[k0][k1]..., or an undefined node when a step is missing (yaml-cpp
// throws when indexing past a missing key). reset(), not operator=, which
// would write into the tree `node` points at.
YAML::Node At(const YAML::Node& start, std::initializer_list<const char*> keys) {
  YAML::Node node;
  node.reset(start);
  for (const char* key : keys) {
    if (!node.IsMap() || !node[key]) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(node[key]);
  }
  return node;
}

bool Covers(const std::string& mount, const std::string& path) {
  return path == mount || path.rfind(mount + "/", 0) == 0;
}

struct Mount {
  std::string name, host_path, mount_path;
  bool read_only = false;
};

// The container's hostPath mounts; problems (an unknown volume, a mount
// whose container path is not its host path) go to `problems`.
std::vector<Mount> HostMounts(const YAML::Node& pod, const YAML::Node& container,
                              std::vector<std::string>& problems) {
  std::vector<Mount> mounts;
  for (const YAML::Node& m : container["volumeMounts"]) {
    std::string name = m["name"].as<std::string>();
    YAML::Node volume;
    for (const YAML::Node& v : pod["spec"]["volumes"]) {
      if (v["name"].as<std::string>() == name) volume.reset(v);
    }
    if (!volume) {
      problems.push_back("volumeMount " + name + " names no volume");
    } else if (volume["hostPath"]) {
      Mount mount{name, volume["hostPath"]["path"].as<std::string>(),
                  m["mountPath"].as<std::string>(), m["readOnly"].as<bool>(false)};
      // The host's /usr/bin sits under /host so that the image's own
      // /usr/bin stays visible; every other path is the host's own.
      if (mount.mount_path != mount.host_path && mount.mount_path != "/host" + mount.host_path) {
        problems.push_back("volume " + name + " mounts host " + mount.host_path + " at " +
                           mount.mount_path + ": keep the host's path (or /host + it)");
      }
      mounts.push_back(mount);
    } else if (!volume["emptyDir"]) {
      problems.push_back("volume " + name + " is neither hostPath nor emptyDir");
    }
  }
  return mounts;
}

void CheckMounts(const std::vector<Mount>& mounts, const std::vector<UsedPath>& used,
                 std::vector<std::string>& problems) {
  for (const UsedPath& u : used) {
    auto covering = std::find_if(mounts.begin(), mounts.end(),
                                 [&](const Mount& m) { return Covers(m.mount_path, u.path); });
    if (covering == mounts.end()) {
      problems.push_back(u.why + " " + u.path + " is not mounted");
    } else if (u.write && covering->read_only) {
      problems.push_back(u.why + " " + u.path + " must be writable, but mount " +
                         covering->name + " is readOnly");
    }
  }
  for (const Mount& m : mounts) {
    bool any = false, writes = false;
    for (const UsedPath& u : used) {
      if (!Covers(m.mount_path, u.path)) continue;
      any = true;
      writes = writes || u.write;
    }
    if (!any) {
      problems.push_back("mount " + m.name + " brings in host " + m.host_path +
                         ", which the config does not use");
    } else if (!writes && !m.read_only) {
      problems.push_back("mount " + m.name + " (" + m.mount_path +
                         ") is only read by the agent: make it readOnly");
    }
  }
}

// The probes must ask the agent's health service on the configured socket.
void CheckProbes(const YAML::Node& container, const AgentConfig& config,
                 std::vector<std::string>& problems) {
  for (const char* probe : {"livenessProbe", "readinessProbe"}) {
    const YAML::Node command = At(container, {probe, "exec", "command"});
    if (!command.IsSequence()) {
      problems.push_back(std::string(probe) + " is missing or not an exec probe");
      continue;
    }
    auto args = command.as<std::vector<std::string>>();
    auto agent = std::find(args.begin(), args.end(), "--agent");
    if (std::find(args.begin(), args.end(), "health") == args.end() || agent == args.end() ||
        agent + 1 == args.end() || *(agent + 1) != "unix:" + config.listen_unix) {
      problems.push_back(std::string(probe) + " does not run `kmsfleetctl health --agent unix:" +
                         config.listen_unix + "`");
    }
  }
}

void CheckSecurity(const YAML::Node& container, std::vector<std::string>& problems) {
  const YAML::Node sc = At(container, {"securityContext"});
  if (At(sc, {"privileged"}).as<bool>(false)) problems.push_back("the container is privileged");
  if (At(sc, {"allowPrivilegeEscalation"}).as<bool>(true)) {
    problems.push_back("allowPrivilegeEscalation must be false");
  }
  if (!At(sc, {"readOnlyRootFilesystem"}).as<bool>(false)) {
    problems.push_back("readOnlyRootFilesystem must be true");
  }
  auto drop = At(sc, {"capabilities", "drop"})
                  .as<std::vector<std::string>>(std::vector<std::string>{});
  if (std::find(drop.begin(), drop.end(), "ALL") == drop.end()) {
    problems.push_back("capabilities must drop ALL");
  }
}

// Everything wrong with `pod` as the static pod for `config`.
std::vector<std::string> CheckManifest(const YAML::Node& pod, const AgentConfig& config) {
  std::vector<std::string> problems;
  if (pod["apiVersion"].as<std::string>("") != "v1" || pod["kind"].as<std::string>("") != "Pod") {
    problems.push_back("not a v1 Pod");
    return problems;
  }
  const YAML::Node spec = pod["spec"];
  if (!spec["hostNetwork"].as<bool>(false)) problems.push_back("hostNetwork must be true");
  if (spec["priorityClassName"].as<std::string>("") != "system-node-critical") {
    problems.push_back("priorityClassName must be system-node-critical");
  }
  if (!spec["containers"].IsSequence() || spec["containers"].size() != 1) {
    problems.push_back("expected exactly one container");
    return problems;
  }
  const YAML::Node container = spec["containers"][0];
  static const std::regex kDigestPinned("[^@\\s]+@sha256:[0-9a-f]{64}");
  if (!std::regex_match(container["image"].as<std::string>(""), kDigestPinned)) {
    problems.push_back("image " + container["image"].as<std::string>("") +
                       " is not pinned by digest (repo@sha256:<64 hex>)");
  }
  auto command = container["command"].as<std::vector<std::string>>(std::vector<std::string>{});
  auto flag = std::find(command.begin(), command.end(), "--config");
  if (flag == command.end() || flag + 1 == command.end()) {
    problems.push_back("the command passes no --config");
    return problems;
  }
  std::vector<Mount> mounts = HostMounts(pod, container, problems);
  CheckMounts(mounts, PathsUsedBy(config, *(flag + 1)), problems);
  CheckProbes(container, config, problems);
  CheckSecurity(container, problems);
  return problems;
}

// As CheckManifest; a value of the wrong shape is a problem too.
std::vector<std::string> ManifestProblems(const YAML::Node& pod, const AgentConfig& config) {
  try {
    return CheckManifest(pod, config);
  } catch (const YAML::Exception& e) {
    return {std::string("malformed manifest: ") + e.what()};
  }
}

class StaticPodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ParseAgentConfig, not LoadAgentConfig: the provider's config file of
    // the machine running the test must not change the answer.
    absl::StatusOr<AgentConfig> config =
        ParseAgentConfig(ReadText(KMSFLEET_STATIC_POD_CONFIG), KMSFLEET_STATIC_POD_CONFIG);
    ASSERT_TRUE(config.ok()) << config.status();
    config_ = *config;
    pod_ = YAML::LoadFile(KMSFLEET_STATIC_POD_MANIFEST);
  }
  // The problems of a copy of the manifest changed by `mutate`.
  std::vector<std::string> ProblemsAfter(const std::function<void(YAML::Node&)>& mutate) {
    YAML::Node copy = YAML::Clone(pod_);
    mutate(copy);
    return ManifestProblems(copy, config_);
  }
  YAML::Node Container(YAML::Node& pod) { return pod["spec"]["containers"][0]; }
  // Index of the volumeMount or volume named `name` in `list`.
  static size_t IndexOf(const YAML::Node& list, const std::string& name) {
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i]["name"].as<std::string>() == name) return i;
    }
    ADD_FAILURE() << "no " << name;
    return 0;
  }

  AgentConfig config_;
  YAML::Node pod_;
};

TEST_F(StaticPodTest, ManifestMountsExactlyWhatTheConfigUses) {
  EXPECT_THAT(ManifestProblems(pod_, config_), IsEmpty());
  EXPECT_EQ(pod_["metadata"]["namespace"].as<std::string>(), "kube-system");
}

TEST_F(StaticPodTest, RejectsAMissingMount) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    YAML::Node mounts = Container(pod)["volumeMounts"];
    mounts.remove(IndexOf(mounts, "state"));
  });
  EXPECT_THAT(problems, Contains(HasSubstr("state_dir /var/lib/kmsfleet is not mounted")));
}

TEST_F(StaticPodTest, RejectsAHostPathTheConfigDoesNotUse) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    YAML::Node volume;
    volume["name"] = "pki";
    volume["hostPath"]["path"] = "/etc/kubernetes/pki";
    pod["spec"]["volumes"].push_back(volume);
    YAML::Node mount;
    mount["name"] = "pki";
    mount["mountPath"] = "/etc/kubernetes/pki";
    mount["readOnly"] = true;
    Container(pod)["volumeMounts"].push_back(mount);
  });
  EXPECT_THAT(problems, Contains(HasSubstr("brings in host /etc/kubernetes/pki")));
}

TEST_F(StaticPodTest, RejectsWritableReadsAndReadOnlyWrites) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    YAML::Node mounts = Container(pod)["volumeMounts"];
    mounts[IndexOf(mounts, "provider-state")]["readOnly"] = false;
    mounts[IndexOf(mounts, "provider-bin")]["readOnly"] = true;
  });
  EXPECT_THAT(problems, Contains(HasSubstr("mount provider-state (/var/lib/openbao-kms) is "
                                           "only read by the agent")));
  EXPECT_THAT(problems, Contains(HasSubstr("provider.binary /host/usr/bin must be writable")));
}

TEST_F(StaticPodTest, RejectsAMountAtAnotherPath) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    YAML::Node volumes = pod["spec"]["volumes"];
    volumes[IndexOf(volumes, "provider-config")]["hostPath"]["path"] = "/srv/openbao-kms";
  });
  EXPECT_THAT(problems, Contains(HasSubstr("mounts host /srv/openbao-kms at /etc/openbao-kms")));
}

TEST_F(StaticPodTest, RejectsATagOnlyImage) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    Container(pod)["image"] = "registry.example.com/kmsfleet/kmsfleetd:0.1.0";
  });
  EXPECT_THAT(problems, Contains(HasSubstr("is not pinned by digest")));
}

TEST_F(StaticPodTest, RejectsAPodOffTheHostNetworkOrNotAPod) {
  EXPECT_THAT(ProblemsAfter([](YAML::Node& pod) { pod["spec"]["hostNetwork"] = false; }),
              Contains(HasSubstr("hostNetwork must be true")));
  EXPECT_THAT(ProblemsAfter([](YAML::Node& pod) { pod["kind"] = "Deployment"; }),
              Contains(HasSubstr("not a v1 Pod")));
}

TEST_F(StaticPodTest, RejectsMissingOrMisdirectedProbes) {
  EXPECT_THAT(ProblemsAfter([&](YAML::Node& pod) { Container(pod).remove("livenessProbe"); }),
              Contains(HasSubstr("livenessProbe is missing")));
  EXPECT_THAT(ProblemsAfter([&](YAML::Node& pod) {
                Container(pod)["readinessProbe"]["exec"]["command"][3] = "unix:/run/other.sock";
              }),
              Contains(HasSubstr("readinessProbe does not run `kmsfleetctl health")));
}

TEST_F(StaticPodTest, RejectsALooserSecurityContext) {
  auto problems = ProblemsAfter([&](YAML::Node& pod) {
    YAML::Node sc = Container(pod)["securityContext"];
    sc["allowPrivilegeEscalation"] = true;
    sc["readOnlyRootFilesystem"] = false;
    sc["capabilities"].remove("drop");
  });
  EXPECT_THAT(problems, Contains(HasSubstr("allowPrivilegeEscalation")));
  EXPECT_THAT(problems, Contains(HasSubstr("readOnlyRootFilesystem")));
  EXPECT_THAT(problems, Contains(HasSubstr("drop ALL")));
}

// A config change moves the rule: a new path the config uses must be
// mounted before the manifest passes again.
TEST_F(StaticPodTest, AConfigPathOutsideEveryMountIsReported) {
  config_.executor.download_ca_file = "/etc/ssl/site-ca.pem";
  EXPECT_THAT(ManifestProblems(pod_, config_),
              Contains(HasSubstr("executor.download_ca_file /etc/ssl/site-ca.pem is not mounted")));
}

}  // namespace
}  // namespace kmsfleet
