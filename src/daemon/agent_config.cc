#include "daemon/agent_config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "kmsfleet/core/caller_auth.h"
#include "kmsfleet/core/election.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/preflight.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

// RFC 1123 host name: dot-separated labels of letters, digits and '-',
// each 1-63 characters that neither start nor end with '-'.
bool IsHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string_view label =
        host.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
      return false;
    }
    for (char ch : label) {
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// "dns:///cp-2:7443", "ipv4:10.0.0.2:7443", "unix:/run/a.sock",
// "https://cp-2:7443": a scheme, then something other than a port. A host
// named "dns" with a port ("dns:7443") is no target.
bool IsGrpcTargetOrUrl(std::string_view s) {
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  const std::string_view scheme = s.substr(0, colon), rest = s.substr(colon + 1);
  const bool known = scheme == "dns" || scheme == "ipv4" || scheme == "ipv6" ||
                     scheme == "unix" || scheme == "unix-abstract" || scheme == "vsock" ||
                     scheme == "http" || scheme == "https";
  return known && !rest.empty() && rest.find_first_not_of("0123456789") != std::string_view::npos;
}

// What is wrong with `s` as host:port (a host name, an IPv4 address or an
// IPv6 address in brackets; a port 1-65535, or 0 with `allow_port_zero`),
// or nullopt when it is one.
std::optional<std::string> HostPortProblem(std::string_view s, bool allow_port_zero) {
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return "no ']' closes the IPv6 address";
    const std::string host(s.substr(1, close - 1));
    in6_addr v6{};
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) {
      return "\"" + host + "\" is not an IPv6 address";
    }
    if (close + 1 == s.size()) return "the port is missing";
    if (s[close + 1] != ':') return "only :port may follow the ']'";
    port = s.substr(close + 2);
  } else {
    // A gRPC target (dns:///cp-2:7443, ipv4:..., unix:...) reads below as
    // an odd host name; say what it is instead.
    if (IsGrpcTargetOrUrl(s)) {
      return "a plain host:port such as cp-2.example.com:7443, not a gRPC target or URL";
    }
    size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return "the port is missing";
    const std::string host(s.substr(0, colon));
    port = s.substr(colon + 1);
    if (host.empty()) return "the host is missing";
    if (host.find(':') != std::string::npos) {
      return "an IPv6 address goes in brackets, as in [::1]:7443";
    }
    if (host.find_first_not_of("0123456789.") == std::string::npos) {
      in_addr v4{};
      if (inet_pton(AF_INET, host.c_str(), &v4) != 1) {
        return "\"" + host + "\" is not an IPv4 address";
      }
    } else if (host.size() > 1 && host.back() == '.' &&
               IsHostName(std::string_view(host).substr(0, host.size() - 1))) {
      // A fully qualified name's root dot: say so, IsHostName's message would not.
      return "write the host name without its trailing '.', as in " +
             host.substr(0, host.size() - 1) + ":" + std::string(s.substr(colon + 1));
    } else if (!IsHostName(host)) {
      return "\"" + host + "\" is not a host name (letters, digits, '-' and '.')";
    }
  }
  if (port.empty()) return "the port is missing";
  const int min = allow_port_zero ? 0 : 1;
  int n = -1;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
  if (port.size() > 5 || ec != std::errc() || end != port.data() + port.size() || n < min ||
      n > 65535) {
    return "the port must be a number from " + std::to_string(min) + " to 65535";
  }
  return std::nullopt;
}

// `section[key]` when it is given, else `section`: where an error about
// that key points.
YAML::Node EntryOr(const YAML::Node& section, const std::string& key) {
  if (section.IsMap()) {
    const YAML::Node entry = section[key];
    if (entry.IsDefined()) return entry;
  }
  return section;
}

// The key `key` of mapping `parent` itself, else `parent`: an error about a
// whole section points at the section's own line, not at its first entry.
YAML::Node KeyOf(const YAML::Node& parent, std::string_view key) {
  if (parent.IsMap()) {
    for (const auto& entry : parent) {
      if (entry.first.Scalar() == key) return entry.first;
    }
  }
  return parent;
}

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
  // yaml-cpp keeps a repeated key, and a handler would read both (the last
  // value winning, or two lists joined): a repeat is refused instead.
  absl::Status Mapping(const YAML::Node& node, const std::string& path,
                       const std::map<std::string, Handler>& handlers) const {
    if (!node.IsMap()) return Error(node, path, "must be a mapping");
    std::map<std::string, int> first_line;
    for (const auto& entry : node) {
      std::string key = entry.first.Scalar();
      std::string full = path.empty() ? key : path + "." + key;
      auto it = handlers.find(key);
      if (it == handlers.end()) return Error(entry.first, full, "unknown key");
      const int line = entry.first.Mark().line + 1;
      if (auto [seen, inserted] = first_line.emplace(key, line); !inserted) {
        return Error(entry.first, full,
                     "repeats (first at line " + std::to_string(seen->second) +
                         "); keep one of them");
      }
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

  // A string that must be an absolute path: paths are passed on to other
  // processes and must not depend on the agent's working directory.
  Handler Path(std::string& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      KMSFLEET_RETURN_IF_ERROR(String(out)(v, key));
      return AbsolutePath(v, key, out);
    };
  }

  Handler PathList(std::vector<std::string>& out) const {
    return [this, &out](const YAML::Node& v, const std::string& key) {
      KMSFLEET_RETURN_IF_ERROR(StringList(out)(v, key));
      for (size_t i = 0; i < v.size(); ++i) {
        KMSFLEET_RETURN_IF_ERROR(
            AbsolutePath(v[i], key + "[" + std::to_string(i) + "]", v[i].Scalar()));
      }
      return absl::OkStatus();
    };
  }

  // host:port (HostPortProblem); port 0 (the system picks one) only where
  // `allow_port_zero`.
  Handler Address(std::string& out, bool allow_port_zero) const {
    return [this, &out, allow_port_zero](const YAML::Node& v, const std::string& key) {
      KMSFLEET_RETURN_IF_ERROR(String(out)(v, key));
      if (std::optional<std::string> problem = HostPortProblem(out, allow_port_zero)) {
        return Error(v, key, "must be host:port (" + *problem + "), got \"" + out + "\"");
      }
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
  absl::Status AbsolutePath(const YAML::Node& v, const std::string& key,
                            const std::string& path) const {
    if (!path.empty() && path.front() == '/') return absl::OkStatus();
    return Error(v, key, "must be an absolute path, got \"" + path + "\"");
  }

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
                                     {{"manifest", r.Path(p.manifest)},
                                      {"container", r.String(p.container)},
                                      {"pod_name", r.String(p.pod_name)},
                                      {"pod_namespace", r.String(p.pod_namespace)},
                                      {"cri_socket", r.Path(p.cri_socket)},
                                      {"pull_timeout_ms", r.Millis(p.pull_timeout)},
                                      {"doctor_command", r.StringList(p.doctor_command)}}));
  if (!p.doctor_command.empty()) {
    if (absl::Status s = CheckDoctorCommand(p.doctor_command); !s.ok()) {
      return r.Error(node["doctor_command"], "static_pod.doctor_command", std::string(s.message()));
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
                    {"kms_socket", r.Path(p.kms_socket)},
                    {"binary", r.Path(p.binary)},
                    {"config",
                     [&r, &config](const YAML::Node& v, const std::string& key) {
                       config.provider_config_line = v.Mark().line + 1;
                       return r.Path(config.provider_config)(v, key);
                     }},
                    {"encryption_config", r.Path(config.encryption_config)},
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
                    {"public_keys", r.PathList(e.public_keys)},
                    {"allow_unsigned", r.Bool(e.allow_unsigned)},
                    {"registry_path",
                     [&r, &e](const YAML::Node& v, const std::string& key) {
                       e.registry_path_set = true;
                       return r.Path(e.registry_path)(v, key);
                     }},
                    {"run_as", r.String(e.run_as)},
                    {"stabilization_ms", r.Millis(e.stabilization)},
                    {"ready_timeout_ms", r.Millis(e.ready_timeout)},
                    {"unit_timeout_ms", r.Millis(e.unit_timeout)},
                    {"poll_interval_ms", r.Millis(e.poll_interval)},
                    {"doctor_timeout_ms", r.Millis(e.doctor_timeout)},
                    {"rollback_steps", r.Int(e.rollback_steps, 1, 1'000)},
                    {"download_ca_file", r.Path(e.download_ca_file)},
                    {"download_timeout_ms", r.Millis(e.download_timeout)},
                    {"allowed_url_prefixes", [&](const YAML::Node& v, const std::string& key) {
                       KMSFLEET_RETURN_IF_ERROR(r.StringList(e.allowed_url_prefixes)(v, key));
                       return CheckUrlPrefixes(r, v, key, e.allowed_url_prefixes);
                     }}});
}

// The `apiserver:` section; with it, `restart` is required.
absl::Status ReadApiServer(const ConfigReader& r, const YAML::Node& section_key,
                           const YAML::Node& node, AgentConfig& config) {
  ApiServerRestartOptions& a = config.apiserver;
  std::string restart, readyz;
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      node, "apiserver",
      {{"restart", r.String(restart)},
       {"readyz_url", r.String(readyz)},
       {"ca_file", r.Path(a.http.ca_file)},
       {"tls_server_name", r.String(a.http.tls_server_name)},
       {"timeout_ms", r.Millis(a.ready_timeout)},
       {"restart_timeout_ms", r.Millis(a.restart_timeout)}}));
  if (restart.empty()) {
    return r.Error(section_key, "apiserver.restart",
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
    // The default URL is https: an http one was given.
    return r.Error(EntryOr(node, "readyz_url"), "apiserver.readyz_url",
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
                                        {"address", r.Address(peer.address, false)}}));
    if (peer.name.empty()) return r.Error(node[i], path + ".name", "is required");
    KMSFLEET_RETURN_IF_ERROR(CheckNodeName(r, node[i]["name"], path + ".name", peer.name));
    if (peer.address.empty()) {
      return r.Error(node[i], path + ".address", "is required");
    }
    config.peers.push_back(std::move(peer));
  }
  return absl::OkStatus();
}

// Each peer is another agent, listed once: a peer named after this node
// would replace its own address, and of two entries with one name only the
// last address would be used.
absl::Status CheckPeers(const ConfigReader& r, const YAML::Node& root,
                        const AgentConfig& config) {
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < config.peers.size(); ++i) {
    const std::string& name = config.peers[i].name;
    const std::string key = "peers[" + std::to_string(i) + "].name";
    const YAML::Node at = root["peers"][i]["name"];
    if (name == config.node) {
      return r.Error(at, key,
                     "\"" + name + "\" is this node (node: " + config.node +
                         "); peers lists only the other agents");
    }
    if (auto [seen, inserted] = first.emplace(name, i); !inserted) {
      return r.Error(at, key,
                     "\"" + name + "\" is already peers[" + std::to_string(seen->second) +
                         "].name; list each peer once");
    }
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

absl::Status ReadCluster(const ConfigReader& r, const YAML::Node& section_key,
                         const YAML::Node& node, AgentConfig& config) {
  ClusterConfig& c = config.cluster;
  c.enabled = true;
  bool tls_given = false;
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      node, "cluster",
      {{"listen", r.Address(c.listen, false)},
       {"voters", r.StringList(c.voters)},
       {"learners", r.StringList(c.learners)},
       {"tick_ms", r.Int(c.tick_ms, 1, 10'000)},
       {"plan_tick_ms", r.Int(c.plan_tick_ms, 10, 60'000)},
       {"election_ticks", r.Int(c.election_ticks, 2, 1'000)},
       {"heartbeat_ticks", r.Int(c.heartbeat_ticks, 1, 1'000)},
       {"upload_streams", r.Int(c.upload_streams, 1, 64)},
       {"upload_idle_timeout_ms", r.Int(c.upload_idle_timeout_ms, 1'000, 3'600'000)},
       {"insecure", r.Bool(c.insecure)},
       {"tls", [&](const YAML::Node& v, const std::string&) {
          tls_given = true;
          return r.Mapping(v, "cluster.tls",
                           {{"ca", r.Path(c.tls.ca)},
                            {"cert", r.Path(c.tls.cert)},
                            {"key", r.Path(c.tls.key)},
                            {"operator_trust_domain", r.String(c.tls.operator_trust_domain)}});
        }}}));
  if (c.listen.empty()) return r.Error(section_key, "cluster.listen", "is required");
  // Plain TCP would silently drop the TLS settings.
  if (c.insecure && tls_given) {
    return r.Error(KeyOf(node, "tls"), "cluster.tls",
                   "is not used with cluster.insecure: true (plain TCP); remove cluster.tls "
                   "or set cluster.insecure: false");
  }
  if (!c.insecure && (c.tls.ca.empty() || c.tls.cert.empty() || c.tls.key.empty())) {
    return r.Error(node["tls"].IsDefined() ? KeyOf(node, "tls") : section_key, "cluster.tls",
                   "ca, cert and key are required unless insecure: true");
  }
  if (!c.tls.operator_trust_domain.empty() &&
      !IsValidTrustDomain(c.tls.operator_trust_domain)) {
    return r.Error(node["tls"]["operator_trust_domain"], "cluster.tls.operator_trust_domain",
                   "must be lower-case letters, digits, '.', '-' or '_', got \"" +
                       c.tls.operator_trust_domain + "\"");
  }
  if (c.insecure && !IsLoopbackAddress(c.listen)) {
    return r.Error(node["insecure"], "cluster.insecure",
                   "plain TCP is allowed only on a loopback address, not " + c.listen);
  }
  if (c.heartbeat_ticks >= c.election_ticks) {
    const YAML::Node at = node["heartbeat_ticks"];
    const YAML::Node election = node["election_ticks"];
    return r.Error(at.IsDefined() ? at : election.IsDefined() ? election : section_key,
                   "cluster.heartbeat_ticks",
                   "must be below election_ticks (" + std::to_string(c.election_ticks) +
                       "), got " + std::to_string(c.heartbeat_ticks));
  }
  return absl::OkStatus();
}

std::string NameList(const std::vector<std::string>& names) {
  std::string out = "[";
  for (const std::string& name : names) out += (out.size() > 1 ? ", " : "") + name;
  return out + "]";
}

// Every voter and learner must be this node or a listed peer, so that each
// member has an address and a name its certificate must carry; and the
// members must be what the election accepts at start (ValidateElectionConfig).
absl::Status CheckClusterMembers(const ConfigReader& r, const YAML::Node& root,
                                 AgentConfig& config) {
  ClusterConfig& c = config.cluster;
  const YAML::Node cluster = root["cluster"];
  // Found in review: `voters: []` (a template that rendered nothing) meant
  // every member, where it reads as none.
  if (c.voters.empty() && cluster.IsMap() && cluster["voters"].IsDefined()) {
    return r.Error(cluster["voters"], "cluster.voters",
                   "is an empty list; list 1 to 7 voters, or leave the key out for every "
                   "member not listed in learners");
  }
  // Voters left out: every member not listed as a learner, this node too.
  if (c.voters.empty()) {
    auto is_learner = [&c](const std::string& name) {
      return std::find(c.learners.begin(), c.learners.end(), name) != c.learners.end();
    };
    if (!is_learner(config.node)) c.voters.push_back(config.node);
    for (const PeerConfig& p : config.peers) {
      if (!is_learner(p.name)) c.voters.push_back(p.name);
    }
  }
  // Only a listed name can be unknown: the default voters are the peers.
  for (const auto& [list, key] : {std::pair{&c.voters, "voters"}, {&c.learners, "learners"}}) {
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string& name = (*list)[i];
      bool known = name == config.node;
      for (const PeerConfig& p : config.peers) known = known || p.name == name;
      if (!known) {
        const YAML::Node list_node = EntryOr(cluster, key);
        const YAML::Node at = list_node.IsSequence() ? list_node[i] : list_node;
        return r.Error(at.IsDefined() ? at : list_node, "cluster." + std::string(key),
                       "member " + name + " is neither this node nor in peers");
      }
    }
  }
  // A peer in neither list would be dialled by no one and its certificate
  // refused. A plan swaps the voters alone, so the fix to offer is voters;
  // a learner is a deliberate choice.
  for (size_t i = 0; i < config.peers.size(); ++i) {
    const std::string& name = config.peers[i].name;
    auto listed = [&name](const std::vector<std::string>& list) {
      return std::find(list.begin(), list.end(), name) != list.end();
    };
    if (listed(c.voters) || listed(c.learners)) continue;
    return r.Error(root["peers"][i]["name"], "peers[" + std::to_string(i) + "].name",
                   "\"" + name + "\" is in neither cluster.voters " + NameList(c.voters) +
                       " nor cluster.learners " + NameList(c.learners) +
                       ", so it would take no part in the election or any plan; add it to "
                       "cluster.voters (a plan upgrades voters only; a learner follows "
                       "the plan record without being upgraded) or remove it from peers");
  }
  const ElectionConfig election{.self = config.node, .voters = c.voters,
                                .learners = c.learners,
                                .election_ticks = c.election_ticks,
                                .heartbeat_ticks = c.heartbeat_ticks};
  if (absl::Status s = ValidateElectionConfig(election); !s.ok()) {
    std::string problem(s.message());
    if (problem.starts_with("cluster: ")) problem.erase(0, 9);
    const bool listed = cluster["voters"].IsDefined();
    return r.Error(listed ? cluster["voters"] : KeyOf(root, "cluster"),
                   listed ? "cluster.voters" : "cluster",
                   problem + " (voters " + NameList(c.voters) + ", learners " +
                       NameList(c.learners) + ")");
  }
  return absl::OkStatus();
}

absl::Status ReadListen(const ConfigReader& r, const YAML::Node& node,
                        AgentConfig& config) {
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(node, "listen",
                                     {{"unix", r.Path(config.listen_unix)},
                                      {"unix_mode", r.Mode(config.listen_unix_mode)},
                                      {"unix_group", r.String(config.listen_unix_group)},
                                      {"tcp", r.Address(config.listen_tcp, true)},
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
  bool static_pod_given = false;
  // Staged files and fetched uploads are passed on by path, and a path the
  // agent passes on must not depend on its working directory: state_dir,
  // like every path key, is absolute (ConfigReader::Path).
  KMSFLEET_RETURN_IF_ERROR(r.Mapping(
      root, "",
      {{"node", r.String(config.node)},
       {"state_dir", r.Path(config.state_dir)},
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
          return ReadCluster(r, KeyOf(root, "cluster"), v, config);
        }},
       {"apiserver", [&](const YAML::Node& v, const std::string&) {
          return ReadApiServer(r, KeyOf(root, "apiserver"), v, config);
        }},
       {"static_pod", [&](const YAML::Node& v, const std::string&) {
          static_pod_given = true;
          return ReadStaticPod(r, v, config);
        }},
       {"metrics", [&](const YAML::Node& v, const std::string&) {
          // Port 0: the system picks one, and the agent logs it.
          return r.Mapping(v, "metrics", {{"listen", r.Address(config.metrics_listen, true)}});
        }},
       {"log", [&](const YAML::Node& v, const std::string&) {
          return r.Mapping(v, "log", {{"target", LogTargetHandler(r, config.log_target)}});
        }}}));
  if (config.node.empty()) return r.Error(root, "node", "is required");
  KMSFLEET_RETURN_IF_ERROR(CheckNodeName(r, root["node"], "node", config.node));
  KMSFLEET_RETURN_IF_ERROR(CheckPeers(r, root, config));
  // Without static_pod mode the section would be ignored without a word.
  if (static_pod_given && config.provider_mode != ProviderMode::kStaticPod) {
    return r.Error(KeyOf(root, "static_pod"), "static_pod",
                   "is used only with provider.mode: static_pod (provider.mode is \"systemd\"); "
                   "set provider.mode: static_pod or remove the static_pod: section");
  }
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
  // Found in review: a node that lists other agents yet swaps unfenced
  // could be swapped while one of them is.
  if (config.standalone && !config.peers.empty()) {
    return r.Error(root["standalone"], "standalone",
                   "a node with peers is not a single-node control plane (peers lists " +
                       config.peers.front().name +
                       "); remove standalone: true and add a cluster: section, or remove peers");
  }
  return absl::OkStatus();
}

// Reads `config.provider_config` and applies it. A missing file at the
// default path is not an error: an agent that only observes may run where
// the provider's config is elsewhere; the swap's doctor would fail on it
// first. Any other path was written by the operator, and a missing file
// there is a mistake: the error names `file`, the agent's config.
absl::Status ReadProviderConfig(const std::string& file, AgentConfig& config) {
  const std::string& path = config.provider_config;
  absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxProviderConfigBytes, Symlinks::kFollow);
  if (absl::IsNotFound(text.status())) {
    if (path == kDefaultProviderConfigPath) return absl::OkStatus();
    return MakeFileError(reason::kInvalidConfig, file, config.provider_config_line,
                         "provider.config",
                         "no such file, got \"" + path + "\" (only the default " +
                             kDefaultProviderConfigPath + " may be missing)");
  }
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
  // Found in review: a list or a bare scalar was told ": must be a mapping".
  if (!root.IsMap()) return reader.Error(root, "(file)", "must be a mapping of keys (node:, ...)");
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
  KMSFLEET_RETURN_IF_ERROR(ReadProviderConfig(path, config));
  return config;
}

}  // namespace kmsfleet
