#include "daemon/agent_config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "kmsfleet/core/caller_auth.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/preflight.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

// Walks one YAML mapping, checking each key against a table of handlers so
// that unknown keys are refused and every error carries file, line and key.
class ConfigReader {
 public:
  explicit ConfigReader(std::string_view file) : file_(file) {}

  absl::Status Error(const YAML::Node& at, std::string_view key,
                     std::string_view problem) const {
    return MakeFileError(reason::kInvalidConfig, file_, at.Mark().line + 1, key, problem);
  }

  absl::Status SyntaxError(int line, std::string_view problem) const {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     file_ + ":" + std::to_string(line) + ": invalid YAML: " +
                         std::string(problem),
                     {{"file", file_}, {"line", std::to_string(line)}});
  }

  using Handler = std::function<absl::Status(const YAML::Node&, const std::string&)>;

  // Applies `handlers` to the entries of mapping `node` found at `path`.
  absl::Status Mapping(const YAML::Node& node, const std::string& path,
                       const std::map<std::string, Handler>& handlers) const {
    if (!node.IsMap()) return Error(node, path, "must be a mapping");
    for (const auto& entry : node) {
      std::string key = entry.first.Scalar();
      std::string full = path.empty() ? key : path + "." + key;
      auto it = handlers.find(key);
      if (it == handlers.end()) return Error(entry.first, full, "unknown key");
      KMSFLEET_RETURN_IF_ERROR(it->second(entry.second, full));
    }
    return absl::OkStatus();
  }

  Handler String(std::string& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      if (!v.IsScalar() || v.Scalar().empty()) {
        return Error(v, key, "must be a non-empty string");
      }
      out = v.Scalar();
      return absl::OkStatus();
    };
  }

  Handler Bool(bool& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      if (!v.IsScalar() || (v.Scalar() != "true" && v.Scalar() != "false")) {
        return Error(v, key, "must be true or false, got \"" +
                                 (v.IsScalar() ? v.Scalar() : std::string()) + "\"");
      }
      out = v.Scalar() == "true";
      return absl::OkStatus();
    };
  }

  Handler Int(int& out, int64_t min, int64_t max) const {
    return [this, &out, min, max](const YAML::Node& v, const std::string& key) {
      int64_t n = 0;
      KMSFLEET_RETURN_IF_ERROR(Integer(v, key, min, max, n));
      out = static_cast<int>(n);
      return absl::OkStatus();
    };
  }

  Handler Millis(std::chrono::milliseconds& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      int64_t n = 0;
      KMSFLEET_RETURN_IF_ERROR(Integer(v, key, 1, 3'600'000, n));
      out = std::chrono::milliseconds(n);
      return absl::OkStatus();
    };
  }

  Handler Bytes(size_t& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      int64_t n = 0;
      KMSFLEET_RETURN_IF_ERROR(Integer(v, key, 1024, 64 << 20, n));
      out = static_cast<size_t>(n);
      return absl::OkStatus();
    };
  }

  // A file mode written as an octal string, e.g. "0660".
  Handler Mode(unsigned& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      const std::string& s = v.IsScalar() ? v.Scalar() : std::string();
      unsigned mode = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), mode, 8);
      if (s.empty() || s.size() > 4 || ec != std::errc() || end != s.data() + s.size()) {
        return Error(v, key, "must be an octal mode such as \"0660\", got \"" + s + "\"");
      }
      if ((mode & 0007) != 0 || (mode & 0600) != 0600 || mode > 0777) {
        return Error(v, key, "must give the owner rw and others nothing (e.g. 0600, 0660), got " + s);
      }
      out = mode;
      return absl::OkStatus();
    };
  }

  Handler StringList(std::vector<std::string>& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      if (!v.IsSequence()) return Error(v, key, "must be a list of strings");
      for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].IsScalar() || v[i].Scalar().empty()) {
          return Error(v[i], key + "[" + std::to_string(i) + "]",
                       "must be a non-empty string");
        }
        out.push_back(v[i].Scalar());
      }
      return absl::OkStatus();
    };
  }

  Handler Url(HttpUrl& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      if (!v.IsScalar()) return Error(v, key, "must be an http:// URL");
      absl::StatusOr<HttpUrl> url = ParseHttpUrl(v.Scalar());
      if (!url.ok()) return Error(v, key, std::string(url.status().message()));
      out = *url;
      return absl::OkStatus();
    };
  }

 private:
  absl::Status Integer(const YAML::Node& v, const std::string& key, int64_t min,
                       int64_t max, int64_t& out) const {
    const std::string& s = v.IsScalar() ? v.Scalar() : std::string();
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
      return Error(v, key, "must be an integer, got \"" + s + "\"");
    }
    if (out < min || out > max) {
      return Error(v, key, "must be between " + std::to_string(min) + " and " +
                               std::to_string(max) + ", got " + s);
    }
    return absl::OkStatus();
  }

  std::string file_;
};

auto ModeHandler(const ConfigReader& r, ProviderMode& out) {
  return [&r, &out](const YAML::Node& v, const std::string& key) {
    const std::string& s = v.IsScalar() ? v.Scalar() : std::string();
    if (s == "systemd") {
      out = ProviderMode::kSystemd;
    } else if (s == "static_pod") {
      out = ProviderMode::kStaticPod;
    } else {
      return r.Error(v, key, "must be systemd or static_pod, got \"" + s + "\"");
    }
    return absl::OkStatus();
  };
}

absl::Status ReadStaticPod(const ConfigReader& r, const YAML::Node& node,
                           AgentConfig& config) {
  StaticPodConfig& p = config.static_pod;
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(node, "static_pod",
                                     {{"manifest", r.String(p.manifest)},
                                      {"container", r.String(p.container)},
                                      {"pod_name", r.String(p.pod_name)},
                                      {"pod_namespace", r.String(p.pod_namespace)},
                                      {"cri_socket", r.String(p.cri_socket)},
                                      {"pull_timeout_ms", r.Millis(p.pull_timeout)},
                                      {"doctor_command", r.StringList(p.doctor_command)}}));
  if (!p.doctor_command.empty()) {
    if (absl::Status s = CheckDoctorCommand(p.doctor_command); !s.ok()) {
      return r.Error(node["doctor_command"], "static_pod.doctor_command", std::string(s.message()));
    }
  }
  for (auto [key, value] : {std::pair{"manifest", &p.manifest},
                            std::pair{"cri_socket", &p.cri_socket}}) {
    if (value->empty() || value->front() != '/') {
      return r.Error(node[key], std::string("static_pod.") + key,
                     "must be an absolute path, got \"" + *value + "\"");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadProvider(const ConfigReader& r, const YAML::Node& node,
                          AgentConfig& config) {
  ProviderEndpoints& p = config.provider;
  return r.Mapping(node, "provider",
                   {{"metrics_url", r.Url(p.metrics)},
                    {"ready_url", r.Url(p.ready)},
                    {"live_url", r.Url(p.live)},
                    {"kms_socket", r.String(p.kms_socket)},
                    {"binary", r.String(p.binary)},
                    {"config", r.String(config.provider_config)},
                    {"encryption_config", r.String(config.encryption_config)},
                    {"unit", r.String(config.provider_unit)},
                    {"mode", ModeHandler(r, config.provider_mode)},
                    {"connect_timeout_ms", r.Millis(p.http.connect_timeout)},
                    {"http_timeout_ms", r.Millis(p.http.total_timeout)},
                    {"kms_timeout_ms", r.Millis(p.kms_timeout)},
                    {"command_timeout_ms", r.Millis(p.command_timeout)},
                    {"max_body_bytes", r.Bytes(p.http.max_body_bytes)}});
}

// A prefix names at least a scheme, a host and the start of a path, so
// that "https://example.com" cannot also admit "https://example.com.evil".
absl::Status CheckUrlPrefixes(const ConfigReader& r, const YAML::Node& node,
                              const std::string& key,
                              const std::vector<std::string>& prefixes) {
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const std::string& p = prefixes[i];
    size_t scheme = p.rfind("https://", 0) == 0 ? 8 : p.rfind("http://", 0) == 0 ? 7 : 0;
    size_t slash = scheme == 0 ? std::string::npos : p.find('/', scheme);
    if (slash == std::string::npos || slash == scheme || p.back() != '/') {
      return r.Error(node[i], key + "[" + std::to_string(i) + "]",
                     "must be http(s)://host/path/ ending in '/', got \"" + p + "\"");
    }
  }
  return absl::OkStatus();
}

absl::Status ReadExecutor(const ConfigReader& r, const YAML::Node& node,
                          AgentConfig& config) {
  ExecutorConfig& e = config.executor;
  return r.Mapping(node, "executor",
                   {{"bus_address", r.String(e.bus_address)},
                    {"public_keys", r.StringList(e.public_keys)},
                    {"allow_unsigned", r.Bool(e.allow_unsigned)},
                    {"registry_path",
                     [&r, &e](const YAML::Node& v, const std::string& key) {
                       e.registry_path_set = true;
                       return r.String(e.registry_path)(v, key);
                     }},
                    {"run_as", r.String(e.run_as)},
                    {"stabilization_ms", r.Millis(e.stabilization)},
                    {"ready_timeout_ms", r.Millis(e.ready_timeout)},
                    {"unit_timeout_ms", r.Millis(e.unit_timeout)},
                    {"poll_interval_ms", r.Millis(e.poll_interval)},
                    {"doctor_timeout_ms", r.Millis(e.doctor_timeout)},
                    {"rollback_steps", r.Int(e.rollback_steps, 1, 1'000)},
                    {"download_ca_file", r.String(e.download_ca_file)},
                    {"download_timeout_ms", r.Millis(e.download_timeout)},
                    {"allowed_url_prefixes", [&](const YAML::Node& v, const std::string& key) {
                       KMSFLEET_RETURN_IF_ERROR(r.StringList(e.allowed_url_prefixes)(v, key));
                       return CheckUrlPrefixes(r, v, key, e.allowed_url_prefixes);
                     }}});
}

// The `apiserver:` section; with it, `restart` is required.
absl::Status ReadApiServer(const ConfigReader& r, const YAML::Node& node,
                           AgentConfig& config) {
  ApiServerRestartOptions& a = config.apiserver;
  std::string restart, readyz;
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      node, "apiserver",
      {{"restart", r.String(restart)},
       {"readyz_url", r.String(readyz)},
       {"ca_file", r.String(a.http.ca_file)},
       {"tls_server_name", r.String(a.http.tls_server_name)},
       {"timeout_ms", r.Millis(a.ready_timeout)},
       {"restart_timeout_ms", r.Millis(a.restart_timeout)}}));
  if (restart.empty()) {
    return r.Error(node, "apiserver.restart",
                   "is required in an apiserver: section (systemd:<unit> or "
                   "command:<absolute path>)");
  }
  if (absl::Status s = ParseApiServerRestartMethod(restart, a); !s.ok()) {
    return r.Error(node["restart"], "apiserver.restart", std::string(s.message()));
  }
  if (!readyz.empty()) {
    absl::StatusOr<HttpUrl> url = ParseHttpOrHttpsUrl(readyz);
    if (!url.ok()) return r.Error(node["readyz_url"], "apiserver.readyz_url",
                                      std::string(url.status().message()));
    a.readyz = *url;
  }
  if (!a.readyz.tls && (!a.http.ca_file.empty() || !a.http.tls_server_name.empty())) {
    return r.Error(node, "apiserver.readyz_url",
                   "ca_file and tls_server_name need an https:// URL, got " +
                       a.readyz.ToString());
  }
  return absl::OkStatus();
}

absl::Status CheckNodeName(const ConfigReader& r, const YAML::Node& at,
                           const std::string& key, const std::string& name) {
  if (IsValidNodeName(name)) return absl::OkStatus();
  return r.Error(at, key,
                 "\"" + name + "\" is not a node name: it must be 1-" +
                     std::to_string(kMaxNodeNameBytes) +
                     " characters of [A-Za-z0-9._-] that start and end with a letter or digit "
                     "(it names the node's plan steps and its certificate)");
}

absl::Status ReadPeers(const ConfigReader& r, const YAML::Node& node,
                       AgentConfig& config) {
  if (!node.IsSequence()) return r.Error(node, "peers", "must be a list");
  for (size_t i = 0; i < node.size(); ++i) {
    PeerConfig peer;
    std::string path = "peers[" + std::to_string(i) + "]";
    KMSFLEET_RETURN_IF_ERROR(r.Mapping(node[i], path,
                                       {{"name", r.String(peer.name)},
                                        {"address", r.String(peer.address)}}));
    if (peer.name.empty()) return r.Error(node[i], path + ".name", "is required");
    KMSFLEET_RETURN_IF_ERROR(CheckNodeName(r, node[i]["name"], path + ".name", peer.name));
    if (peer.address.empty()) {
      return r.Error(node[i], path + ".address", "is required");
    }
    config.peers.push_back(std::move(peer));
  }
  return absl::OkStatus();
}

}  // namespace

bool IsLoopbackAddress(std::string_view host_port) {
  std::string host;
  if (!host_port.empty() && host_port.front() == '[') {
    size_t close = host_port.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(host_port.substr(1, close - 1));
  } else {
    size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = std::string(host_port.substr(0, colon));
  }
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

namespace {

absl::Status ReadCluster(const ConfigReader& r, const YAML::Node& node,
                         AgentConfig& config) {
  ClusterConfig& c = config.cluster;
  c.enabled = true;
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      node, "cluster",
      {{"listen", r.String(c.listen)},
       {"voters", r.StringList(c.voters)},
       {"learners", r.StringList(c.learners)},
       {"tick_ms", r.Int(c.tick_ms, 1, 10'000)},
       {"plan_tick_ms", r.Int(c.plan_tick_ms, 10, 60'000)},
       {"election_ticks", r.Int(c.election_ticks, 2, 1'000)},
       {"heartbeat_ticks", r.Int(c.heartbeat_ticks, 1, 1'000)},
       {"insecure", r.Bool(c.insecure)},
       {"tls", [&](const YAML::Node& v, const std::string&) {
          return r.Mapping(v, "cluster.tls",
                           {{"ca", r.String(c.tls.ca)},
                            {"cert", r.String(c.tls.cert)},
                            {"key", r.String(c.tls.key)},
                            {"operator_trust_domain", r.String(c.tls.operator_trust_domain)}});
        }}}));
  if (c.listen.empty()) return r.Error(node, "cluster.listen", "is required");
  if (!c.insecure && (c.tls.ca.empty() || c.tls.cert.empty() || c.tls.key.empty())) {
    return r.Error(node, "cluster.tls",
                   "ca, cert and key are required unless insecure: true");
  }
  if (!c.tls.operator_trust_domain.empty() &&
      !IsValidTrustDomain(c.tls.operator_trust_domain)) {
    return r.Error(node, "cluster.tls.operator_trust_domain",
                   "must be lower-case letters, digits, '.', '-' or '_', got \"" +
                       c.tls.operator_trust_domain + "\"");
  }
  if (c.insecure && !IsLoopbackAddress(c.listen)) {
    return r.Error(node, "cluster.insecure",
                   "plain TCP is allowed only on a loopback address, not " + c.listen);
  }
  if (c.heartbeat_ticks >= c.election_ticks) {
    return r.Error(node, "cluster.heartbeat_ticks",
                   "must be below election_ticks (" +
                       std::to_string(c.election_ticks) + ")");
  }
  return absl::OkStatus();
}

// Every voter and learner must be this node or a listed peer, so that each
// member has an address and a name its certificate must carry.
absl::Status CheckClusterMembers(const ConfigReader& r, const YAML::Node& root,
                                 AgentConfig& config) {
  ClusterConfig& c = config.cluster;
  if (c.voters.empty()) {
    c.voters.push_back(config.node);
    for (const PeerConfig& p : config.peers) {
      if (std::find(c.learners.begin(), c.learners.end(), p.name) == c.learners.end()) {
        c.voters.push_back(p.name);
      }
    }
  }
  for (const auto* list : {&c.voters, &c.learners}) {
    for (const std::string& name : *list) {
      bool known = name == config.node;
      for (const PeerConfig& p : config.peers) known = known || p.name == name;
      if (!known) {
        return r.Error(root["cluster"], "cluster",
                       "member " + name + " is neither this node nor in peers");
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ReadListen(const ConfigReader& r, const YAML::Node& node,
                        AgentConfig& config) {
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(node, "listen",
                                     {{"unix", r.String(config.listen_unix)},
                                      {"unix_mode", r.Mode(config.listen_unix_mode)},
                                      {"unix_group", r.String(config.listen_unix_group)},
                                      {"tcp", r.String(config.listen_tcp)},
                                      {"insecure", r.Bool(config.listen_insecure)}}));
  if (config.listen_tcp.empty()) return absl::OkStatus();
  if (!config.listen_insecure) {
    return r.Error(node["tcp"], "listen.tcp",
                   "plain TCP is served only with listen.insecure: true on a loopback "
                   "address; remote callers use the mTLS cluster.listen");
  }
  if (!IsLoopbackAddress(config.listen_tcp)) {
    return r.Error(node["tcp"], "listen.tcp",
                   "insecure plain TCP is allowed only on a loopback address, not " +
                       config.listen_tcp);
  }
  return absl::OkStatus();
}

ConfigReader::Handler LogTargetHandler(const ConfigReader& r, LogTarget& out) {
  return [&r, &out](const YAML::Node& v, const std::string& key) {
    const std::string& s = v.IsScalar() ? v.Scalar() : std::string();
    std::optional<LogTarget> target = ParseLogTarget(s);
    if (!target) {
      return r.Error(v, key, "must be auto, journal or stderr, got \"" + s + "\"");
    }
    out = *target;
    return absl::OkStatus();
  };
}

absl::Status ReadRoot(const ConfigReader& r, const YAML::Node& root,
                      AgentConfig& config) {
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      root, "",
      {{"node", r.String(config.node)},
       {"state_dir", r.String(config.state_dir)},
       {"provider",
        [&](const YAML::Node& v, const std::string&) {
          return ReadProvider(r, v, config);
        }},
       {"listen",
        [&](const YAML::Node& v, const std::string&) {
          return ReadListen(r, v, config);
        }},
       {"standalone", r.Bool(config.standalone)},
       {"peers", [&](const YAML::Node& v, const std::string&) {
          return ReadPeers(r, v, config);
        }},
       {"executor", [&](const YAML::Node& v, const std::string&) {
          return ReadExecutor(r, v, config);
        }},
       {"cluster", [&](const YAML::Node& v, const std::string&) {
          return ReadCluster(r, v, config);
        }},
       {"apiserver", [&](const YAML::Node& v, const std::string&) {
          return ReadApiServer(r, v, config);
        }},
       {"static_pod", [&](const YAML::Node& v, const std::string&) {
          return ReadStaticPod(r, v, config);
        }},
       {"metrics", [&](const YAML::Node& v, const std::string&) {
          return r.Mapping(v, "metrics", {{"listen", r.String(config.metrics_listen)}});
        }},
       {"log", [&](const YAML::Node& v, const std::string&) {
          return r.Mapping(v, "log", {{"target", LogTargetHandler(r, config.log_target)}});
        }}}));
  if (config.node.empty()) return r.Error(root, "node", "is required");
  // Staged files and fetched uploads are passed on by path, and a path the
  // agent passes on must not depend on its working directory.
  if (config.state_dir.empty() || config.state_dir.front() != '/') {
    return r.Error(root["state_dir"], "state_dir",
                   "must be an absolute path, got \"" + config.state_dir + "\"");
  }
  KMSFLEET_RETURN_IF_ERROR(CheckNodeName(r, root["node"], "node", config.node));
  if (config.static_pod.pod_name.empty()) {
    config.static_pod.pod_name = "bao-kms-provider-" + config.node;
  }
  // A static pod's image is no binary on this host: never run `version`
  // on a file that is not the provider that runs.
  if (config.provider_mode == ProviderMode::kStaticPod) config.provider.binary.clear();
  if (config.cluster.enabled) KMSFLEET_RETURN_IF_ERROR(CheckClusterMembers(r, root, config));
  if (config.cluster.enabled && config.standalone) {
    return r.Error(root["standalone"], "standalone",
                   "a node with a cluster: section is not standalone; remove one of them");
  }
  return absl::OkStatus();
}

// Reads `config.provider_config`, if it exists, and applies it. A missing
// file is not an error: an agent that only observes may run where the
// provider's config is elsewhere; the swap's doctor would fail on it first.
absl::Status ReadProviderConfig(AgentConfig& config) {
  const std::string& path = config.provider_config;
  absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxProviderConfigBytes, Symlinks::kFollow);
  if (absl::IsNotFound(text.status())) return absl::OkStatus();
  if (!text.ok()) return text.status();
  KMSFLEET_ASSIGN_OR_RETURN(ProviderConfigFacts facts, ParseProviderConfig(*text, path));
  return ApplyProviderConfig(config, facts);
}

}  // namespace

absl::Status ApplyProviderConfig(AgentConfig& config, const ProviderConfigFacts& facts) {
  ExecutorConfig& e = config.executor;
  if (!facts.state_path.empty()) {
    if (e.registry_path_set && e.registry_path != facts.state_path) {
      return MakeError(
          absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
          "executor.registry_path is " + e.registry_path + " but the provider's config " +
              config.provider_config + " has state.path " + facts.state_path +
              "; remove executor.registry_path or make them agree",
          {{"key", "executor.registry_path"},
           {"registry_path", e.registry_path},
           {"file", config.provider_config},
           {"state_path", facts.state_path}});
    }
    e.registry_path = facts.state_path;
  }
  config.provider_facts = facts;
  return absl::OkStatus();
}

absl::StatusOr<AgentConfig> ParseAgentConfig(std::string_view text,
                                             std::string_view file_name) {
  ConfigReader reader(file_name);
  YAML::Node root;
  // yaml-cpp reports syntax errors by exception; they stop here.
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return reader.SyntaxError(e.mark.line + 1, e.msg);
  }
  if (root.IsNull()) return reader.Error(root, "(file)", "is empty");
  AgentConfig config;
  try {
    KMSFLEET_RETURN_IF_ERROR(ReadRoot(reader, root, config));
  } catch (const YAML::Exception& e) {
    return reader.Error(root, "(file)", e.what());
  }
  return config;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxConfigBytes, Symlinks::kFollow);
  if (!text.ok()) {
    std::string why = ReasonOf(text.status()) == reason::kInputTooLarge
                          ? "config file " + path + " is larger than 1 MiB"
                          : "cannot read config file " + path + ": " +
                                std::string(text.status().message());
    return MakeError(text.status().code(),
                     ReasonOf(text.status()) == reason::kInputTooLarge
                         ? reason::kInputTooLarge
                         : reason::kInvalidConfig,
                     why, {{"file", path}});
  }
  KMSFLEET_ASSIGN_OR_RETURN(AgentConfig config, ParseAgentConfig(*text, path));
  KMSFLEET_RETURN_IF_ERROR(ReadProviderConfig(config));
  return config;
}

}  // namespace kmsfleet
