#include "fleet_cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "election_cluster.h"
#include "fleet.h"
#include "kmsfleet/node/fs_util.h"
#include "user_manager.h"

namespace kmsfleet::testing {
namespace {

// "2026-11-30T12:00:00.123Z" -> Unix milliseconds; -1 if malformed.
int64_t ParseTs(const std::string& ts) {
  std::tm tm{};
  int millis = 0;
  if (sscanf(ts.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &millis) != 7) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + millis;
}

std::string Field(const std::string& line, const std::string& key) {
  std::string needle = "\"" + key + "\":\"";
  size_t at = line.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  return line.substr(at, line.find('"', at) - at);
}

// "cp-1 down [from,to)", or "cp-1 down since from".
std::string Describe(const Interval& down) {
  return down.node + " down " +
         (down.to_ms == INT64_MAX ? "since " + std::to_string(down.from_ms)
                                  : "[" + std::to_string(down.from_ms) + "," +
                                        std::to_string(down.to_ms) + ")");
}

// A provider binary: the fake as `version`. The node is the directory of
// the --config file every command gets (the agent runs provider commands
// in a cleared environment), and its scenario is the one the unit serves.
// Files in the node directory change one binary's behaviour on that node:
// a new release (`release`) obeys "never-ready" (/ready answers 503),
// "doctor-fails" (a failing doctor check) and "wrong-key" (it serves
// another key); the installed one obeys "old-broken" (serve exits 1).
std::string FakeScript(const std::string& version, bool release) {
  std::string script =
      "#!/bin/sh\n"
      "d=\"\"; prev=\"\"\n"
      "for a in \"$@\"; do [ \"$prev\" = --config ] && d=$(dirname \"$a\"); prev=$a; done\n"
      "[ -n \"$d\" ] && export FAKE_BAO_KMS_SCENARIO=\"$d/scenario.yaml\"\n";
  if (release) {
    script +=
        "if [ -n \"$d\" ] && [ -e \"$d/never-ready\" ]; then set -- --fake-set ready=false \"$@\"; fi\n"
        "if [ -n \"$d\" ] && [ -e \"$d/wrong-key\" ]; then set -- --fake-set key_seed=other \"$@\"; fi\n"
        "if [ -n \"$d\" ] && [ -e \"$d/doctor-fails\" ]; then\n"
        "  set -- --fake-set 'doctor={fail: [transit.metadata]}' \"$@\"\n"
        "fi\n";
  } else {
    script +=
        "if [ -n \"$d\" ] && [ -e \"$d/old-broken\" ] && [ \"$1\" = serve ]; then\n"
        "  echo 'old-broken: refusing to serve' >&2; exit 1\n"
        "fi\n";
  }
  return script + "exec " + std::string(FAKE_PROVIDER_PATH) + " --fake-version " + version +
         " \"$@\"\n";
}

}  // namespace

FleetCluster::FleetCluster(const std::string& installed_version, bool apiserver_restart,
                           int static_pod_node, int no_restart_node, int http_timeout_ms)
    : apiserver_restart_(apiserver_restart),
      static_pod_node_(static_pod_node),
      http_timeout_ms_(http_timeout_ms),
      no_restart_node_(no_restart_node) {
  pki_ = dir_.File("pki");
  if (!MakeCertificates(pki_, {Name(0), Name(1), Name(2)}) ||
      !MakeOperatorCertificate(pki_, "alice")) {
    throw std::runtime_error("openssl could not make the fleet's certificates");
  }
  Sh("openssl genpkey -algorithm ed25519 -out " + dir_.File("release.key") +
     " && openssl pkey -in " + dir_.File("release.key") + " -pubout -out " +
     dir_.File("release.pub"));
  for (const char* sub : {"cfg/systemd/user", "rel"}) {
    std::filesystem::create_directories(dir_.File(sub));
  }
  // Distinct ports: two calls can find the same free one.
  std::vector<uint16_t> taken;
  auto port = [&taken] {
    uint16_t p = FreeLoopbackPort();
    while (std::find(taken.begin(), taken.end(), p) != taken.end()) p = FreeLoopbackPort();
    taken.push_back(p);
    return p;
  };
  openbao_port_ = port();
  SetOpenBao("active");
  openbao_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{FAKE_OPENBAO_PATH, "--state-file", dir_.File("openbao.state"),
                               "--listen", "127.0.0.1:" + std::to_string(openbao_port_)},
      ChildOptions{.out_path = dir_.File("openbao.log")});
  for (int i = 0; i < kNodes; ++i) {
    cluster_ports_.push_back(port());
    metrics_ports_.push_back(port());
    health_ports_.push_back(port());
    agent_metrics_ports_.push_back(port());
  }
  for (int i = 0; i < kNodes; ++i) {
    for (const char* sub : {"bin", "pstate", "state", "run"}) {
      std::filesystem::create_directories(NodeDir(i) + "/" + sub);
    }
    WriteExecutable(NodeDir(i) + "/bin/bao-kms-provider", FakeScript(installed_version, false));
    WriteNode(i);
  }
  if (static_pod_node_ >= 0) {
    const std::string node = NodeDir(static_pod_node_);
    for (const char* sub : {"manifests", "cri"}) std::filesystem::create_directories(node + "/" + sub);
    // The kubelet runs version V's release script, whose toggles follow
    // this node's files, or the installed script for the installed image.
    WriteExecutable(node + "/bin/kubelet-run",
                    "#!/bin/sh\nv=\"\"; prev=\"\"\n"
                    "for a in \"$@\"; do [ \"$prev\" = --fake-version ] && v=$a; prev=$a; done\n"
                    "r=" + dir_.File("rel") + "/$v/bao-kms-provider_${v}_linux_amd64\n"
                    "[ -x \"$r\" ] && exec \"$r\" \"$@\"\n"
                    "exec " + node + "/bin/bao-kms-provider \"$@\"\n");
    AddImage(installed_version, /*present=*/true);
    WriteFile(node + "/manifests/bao-kms-provider.yaml",
              "# cp static pod\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bao-kms-provider\n"
              "  namespace: kube-system\nspec:\n  hostNetwork: true\n  containers:\n"
              "    - name: bao-kms-provider\n      image: " + ImageOf(installed_version) +
                  "  # pinned\n      args: [serve]\n");
  }
  try {
    Start();
  } catch (...) {
    Shutdown();  // a failed start must not leave units running
    throw;
  }
}

void FleetCluster::Start() {
  StartManager();
  for (int i = 0; i < kNodes; ++i) {
    if (i == static_pod_node_) {
      StartStaticPod(i);
    } else {
      Systemctl({"start", "bao-kms-provider-" + Name(i) + ".service"});
    }
  }
  for (int i = 0; i < kNodes; ++i) {
    if (!WaitUntil([&] { return ProviderReady(i); }, std::chrono::seconds(20))) {
      throw std::runtime_error(Name(i) + "'s provider never became ready:\n" + Logs());
    }
  }
  agents_.resize(kNodes);
  for (int i = 0; i < kNodes; ++i) StartAgent(i);
  if (WaitForCoordinator() < 0) throw std::runtime_error("no coordinator elected:\n" + Logs());
}

FleetCluster::~FleetCluster() { Shutdown(); }

void FleetCluster::Shutdown() {
  for (auto& agent : agents_) {
    if (!agent) continue;
    agent->Signal(SIGTERM);
    if (!agent->Wait(std::chrono::seconds(15))) agent->Signal(SIGKILL);
    agent.reset();
  }
  StopUserManager(manager_);  // which stops the units first
  for (auto* child : {&kubelet_, &cri_}) {  // the kubelet stops its provider
    if (!*child) continue;
    (*child)->Signal(SIGTERM);
    if (!(*child)->Wait(std::chrono::seconds(10))) (*child)->Signal(SIGKILL);
    child->reset();
  }
}

std::string ImageOf(const std::string& version) {
  return "ghcr.io/dc-tec/bao-kms-provider@sha256:" + Sha256Hex("image of " + version);
}

// fake-cri's registry gains `version`'s image; the kubelet's digest table
// maps it back to the version.
void FleetCluster::AddImage(const std::string& version, bool present) {
  if (static_pod_node_ < 0) return;
  const std::string image = ImageOf(version);
  const std::string digest = image.substr(image.find('@') + 1);
  images_json_ += std::string(images_json_.empty() ? "" : ", ") + "{\"ref\": \"" + image +
                  "\", \"digest\": \"" + digest + "\", \"present\": " +
                  (present ? "true" : "false") + "}";
  const std::string cri = NodeDir(static_pod_node_) + "/cri";
  if (!WriteFileAtomic(cri + "/images.json", "{\"images\": [" + images_json_ + "]}\n", 0644)
           .ok()) {
    throw std::runtime_error("cannot write " + cri + "/images.json");
  }
  WriteFile(dir_.File("digests.txt"),
            ReadFile(dir_.File("digests.txt")) + digest + " " + version + "\n");
}

void FleetCluster::StartStaticPod(int i) {
  const std::string node = NodeDir(i);
  cri_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{FAKE_CRI_PATH, "--socket", node + "/cri.sock", "--state-dir",
                               node + "/cri"},
      ChildOptions{.out_path = node + "/cri.log"});
  kubelet_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{
          FAKE_KUBELET_PATH, "--manifest-dir", node + "/manifests", "--cri-state-dir",
          node + "/cri", "--digest-table", dir_.File("digests.txt"), "--node", Name(i),
          "--provider-binary", node + "/bin/kubelet-run", "--provider-config",
          node + "/provider.yaml", "--provider-log", node + "/provider.log", "--event-log",
          node + "/kubelet-events.jsonl", "--provider-scenario", node + "/scenario.yaml",
          "--poll-ms", "20", "--restart-backoff-ms", "200"},
      ChildOptions{.out_path = node + "/kubelet.log"});
  if (!WaitUntil([&] { return PathExists(node + "/cri.sock"); }, std::chrono::seconds(10))) {
    throw std::runtime_error("fake-cri did not start:\n" + ReadFile(node + "/cri.log"));
  }
}

// provider.mode static_pod and where the kubelet's manifest and the CRI are.
std::string FleetCluster::StaticPodSection(int i) {
  if (i != static_pod_node_) return "";
  return "static_pod:\n"
         "  manifest: " + NodeDir(i) + "/manifests/bao-kms-provider.yaml\n"
         "  cri_socket: " + NodeDir(i) + "/cri.sock\n";
}

void FleetCluster::WriteNode(int i) {
  const std::string node = NodeDir(i);
  const std::string sock = node + "/run/kms.sock";
  WriteProviderConfigs(node, metrics_ports_[i], health_ports_[i],
                       "http://127.0.0.1:" + std::to_string(openbao_port_));
  SetScenario(i, "key_seed: fleet-key-1\n");
  const std::string unit = "bao-kms-provider-" + Name(i) + ".service";
  WriteFile(dir_.File("cfg/systemd/user/") + unit,
            "[Unit]\nDescription=fake bao-kms-provider " + Name(i) + "\n"
            "[Service]\nType=exec\n"
            "ExecStart=" + node + "/bin/bao-kms-provider serve --config " + node +
                "/provider.yaml\n"
            "Environment=FAKE_BAO_KMS_SCENARIO=" + node + "/scenario.yaml\n"

            "StandardError=append:" + node + "/provider.log\n"
            "Restart=no\n");
  std::string peers;
  for (int j = 0; j < kNodes; ++j) {
    if (j == i) continue;
    peers += "  - {name: " + Name(j) + ", address: 127.0.0.1:" +
             std::to_string(cluster_ports_[j]) + "}\n";
  }
  WriteFile(node + "/kmsfleet.yaml",
            "node: " + Name(i) + "\n"
            "state_dir: " + node + "/state\n"
            "listen:\n  unix: " + node + "/agent.sock\n"
            "provider:\n"
            "  metrics_url: http://127.0.0.1:" + std::to_string(metrics_ports_[i]) + "/metrics\n"
            "  ready_url: http://127.0.0.1:" + std::to_string(health_ports_[i]) + "/ready\n"
            "  live_url: http://127.0.0.1:" + std::to_string(health_ports_[i]) + "/live\n"
            "  kms_socket: " + sock + "\n"
            + (i == static_pod_node_ ? "  mode: static_pod\n"
                                     : "  binary: " + node + "/bin/bao-kms-provider\n"
                                       "  unit: " + unit + "\n") +
            "  config: " + node + "/provider.yaml\n"
            "  encryption_config: " + node + "/encryption-config.yaml\n"
            "  http_timeout_ms: " + std::to_string(http_timeout_ms_) + "\n  kms_timeout_ms: 1000\n"
            "executor:\n"
            "  bus_address: unix:path=" + dir_.File("rt/systemd/private") + "\n"
            "  public_keys: [" + dir_.File("release.pub") + "]\n"
            "  stabilization_ms: 1000\n"
            "  ready_timeout_ms: 6000\n"
            "  unit_timeout_ms: 20000\n"
            "  poll_interval_ms: 100\n"
            "  doctor_timeout_ms: 20000\n"
            "metrics:\n  listen: 127.0.0.1:" + std::to_string(agent_metrics_ports_[i]) + "\n"
            "peers:\n" + peers +
            "cluster:\n"
            "  listen: 127.0.0.1:" + std::to_string(cluster_ports_[i]) + "\n"
            // Uploads here are local files sent over loopback: one with no
            // chunk for 5 s has stalled (fleet_artifact_test waits it out).
            "  upload_idle_timeout_ms: 5000\n"
            "  tls:\n"
            "    ca: " + pki_ + "/ca.pem\n"
            "    cert: " + pki_ + "/" + Name(i) + ".pem\n"
            "    key: " + pki_ + "/" + Name(i) + ".key\n"
            "    operator_trust_domain: " + kOperatorTrustDomain + "\n" +
                ApiServerSection(i) + StaticPodSection(i));
}

// The restart command records, when it runs, which release every node has
// installed: so a test sees that it ran after this node's swap and before
// the next node's.
std::string FleetCluster::ApiServerSection(int i) {
  if (!apiserver_restart_ || i == no_restart_node_) return "";
  const std::string script = NodeDir(i) + "/restart-apiserver";
  std::string versions;
  for (int j = 0; j < kNodes; ++j) {
    versions += " $(grep -o 'fake-version [^ ]*' " + NodeDir(j) +
                "/bin/bao-kms-provider | cut -d' ' -f2)";
  }
  WriteExecutable(script,
                  "#!/bin/sh\n"
                  "echo \"" + Name(i) + versions + "\" >> " + dir_.File("apiserver-restarts") +
                      "\n"
                      "if [ -e " + NodeDir(i) + "/apiserver-fails ]; then\n"
                      "  echo 'kube-apiserver static pod did not come back' >&2; exit 1\n"
                      "fi\n"
                      // readyz_url is the provider's /ready: unready, it
                      // holds the agent in its wait for readyz (the fake
                      // reads its scenario again within 100 ms).
                      "if [ -e " + NodeDir(i) + "/apiserver-unready ]; then\n"
                      "  printf 'key_seed: fleet-key-1\\nready: false\\n' > " + NodeDir(i) +
                      "/scenario.yaml; sleep 0.3\n"
                      "fi\n");
  return "apiserver:\n"
         "  restart: command:" + script + "\n"
         "  readyz_url: http://127.0.0.1:" + std::to_string(health_ports_[i]) + "/ready\n"
         "  timeout_ms: 10000\n"
         "  restart_timeout_ms: 10000\n";
}

std::vector<std::string> FleetCluster::ApiServerRestarts() {
  std::vector<std::string> lines;
  std::istringstream in(ReadFile(dir_.File("apiserver-restarts")));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void FleetCluster::StartManager() { manager_ = StartUserManager(dir_.path()); }

std::string FleetCluster::Systemctl(const std::vector<std::string>& args) {
  return UserSystemctl(dir_.path(), args);
}

void FleetCluster::StartAgent(int i) {
  std::filesystem::remove(NodeDir(i) + "/agent.sock");
  agents_[i] = std::make_unique<ChildProcess>(
      std::vector<std::string>{KMSFLEETD_PATH, "--config", NodeDir(i) + "/kmsfleet.yaml"},
      ChildOptions{.out_path = NodeDir(i) + "/agent.log"});
  if (!WaitUntil([&] { return PathExists(NodeDir(i) + "/agent.sock"); },
                 std::chrono::seconds(10))) {
    throw std::runtime_error(Name(i) + "'s kmsfleetd did not start:\n" +
                             ReadFile(NodeDir(i) + "/agent.log"));
  }
}

void FleetCluster::KillAgent(int i) {
  agents_[i]->Signal(SIGKILL);
  agents_[i]->Wait(std::chrono::seconds(5));
  agents_[i].reset();
}

FleetCluster::Release FleetCluster::MakeRelease(const std::string& version) {
  const std::string rel = dir_.File("rel/" + version);
  std::filesystem::create_directories(rel);
  const std::string name = "bao-kms-provider_" + version + "_linux_amd64";
  Release r{rel + "/" + name, rel + "/checksums.txt", rel + "/checksums.txt.sig",
            ImageOf(version), ""};
  WriteExecutable(r.binary, FakeScript(version, /*toggles=*/true));
  r.image_ref = MakeStaticPodKit(rel, version, r.image);
  AddImage(version, /*present=*/false);
  SignRelease(rel, name, dir_.File("release.key"),
              {std::filesystem::path(r.image_ref).filename().string()});
  return r;
}

void FleetCluster::Toggle(int i, const std::string& toggle, bool on) {
  const std::string path = NodeDir(i) + "/" + toggle;
  if (on) {
    WriteFile(path, "on\n");
  } else {
    std::filesystem::remove(path);
  }
}

void FleetCluster::SetScenario(int i, const std::string& yaml) {
  WriteFile(NodeDir(i) + "/scenario.yaml", yaml);
}

void FleetCluster::SetOpenBao(const std::string& state) {
  WriteFile(dir_.File("openbao.state"), state + "\n");
}

absl::StatusOr<SubprocessResult> FleetCluster::Ctl(int i, std::vector<std::string> args,
                                                   std::chrono::seconds timeout) {
  return CtlAs(i, "alice", std::move(args), timeout);
}

std::vector<std::string> FleetCluster::CtlArgv(int i, const std::string& cert,
                                               std::vector<std::string> args) {
  std::vector<std::string> argv = {KMSFLEETCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& a :
       {std::string("--agent"), "127.0.0.1:" + std::to_string(cluster_ports_[i]),
        std::string("--ca"), pki_ + "/ca.pem", std::string("--cert"), pki_ + "/" + cert + ".pem",
        std::string("--key"), pki_ + "/" + cert + ".key", std::string("--server-name"), Name(i)}) {
    argv.push_back(a);
  }
  return argv;
}

absl::StatusOr<SubprocessResult> FleetCluster::CtlAs(int i, const std::string& cert,
                                                     std::vector<std::string> args,
                                                     std::chrono::seconds timeout) {
  SubprocessOptions o;
  o.timeout = timeout;
  return RunSubprocess(CtlArgv(i, cert, std::move(args)), o);
}

std::unique_ptr<ChildProcess> FleetCluster::StartCtl(int i, std::vector<std::string> args,
                                                     const std::string& name) {
  return std::make_unique<ChildProcess>(
      CtlArgv(i, "alice", std::move(args)),
      ChildOptions{.out_path = dir_.File(name + ".out"), .err_path = dir_.File(name + ".err")});
}

int FleetCluster::WaitForCoordinator(std::chrono::seconds timeout) {
  int found = -1;
  WaitUntil(
      [&] {
        std::vector<std::string> args = {"leader", "--output", "json"};
        for (int i = 0; i < kNodes; ++i) {
          if (!agents_[i]) continue;
          args.push_back("--agent");
          args.push_back("unix:" + NodeDir(i) + "/agent.sock");
        }
        std::vector<std::string> argv = {KMSFLEETCTL_PATH};
        argv.insert(argv.end(), args.begin(), args.end());
        SubprocessOptions o;
        o.timeout = std::chrono::seconds(10);
        absl::StatusOr<SubprocessResult> r = RunSubprocess(argv, o);
        if (!r.ok() || r->exit_code != 0) return false;
        std::string name = Field(r->stdout_text, "coordinator");
        if (name.size() != 4) return false;
        found = Index(name);
        return found >= 0 && found < kNodes && agents_[found] != nullptr;
      },
      timeout);
  return found;
}

bool FleetCluster::ProviderReady(int i) {
  return HttpRequest("127.0.0.1:" + std::to_string(health_ports_[i]), "GET", "/ready").status ==
         200;
}

std::string FleetCluster::AgentMetrics(int i) {
  HttpReply r =
      HttpRequest("127.0.0.1:" + std::to_string(agent_metrics_ports_[i]), "GET", "/metrics");
  return r.status == 200 ? r.body : "";
}

bool FleetCluster::DoctorRunning(int i) { return DoctorsRunning(i) > 0; }

int FleetCluster::DoctorsRunning(int i) {
  const std::string in_node = NodeDir(i) + "/";
  int running = 0;
  std::error_code ec;  // processes come and go while /proc is read
  for (std::filesystem::directory_iterator it("/proc", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::filesystem::directory_entry& entry = *it;
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream cmdline(entry.path() / "cmdline");
    bool doctor = false, node = false;
    for (std::string arg; std::getline(cmdline, arg, '\0');) {
      doctor = doctor || arg == "doctor";
      node = node || arg.rfind(in_node, 0) == 0;
    }
    running += doctor && node;
  }
  return running;
}

std::string FleetCluster::ServingVersion(int i) { return ServedBuildVersion(metrics_ports_[i]); }

// The end of a disruption is the first 200 of /ready, not serve.ready: the
// fake binds its listeners and logs serve.ready whatever /ready answers,
// so a never-ready node would have counted as up and an overlap with it
// gone unseen. A stop before the node's first 200 is not counted.
std::vector<Interval> FleetCluster::DownIntervalsOf(int i) {
  std::vector<Interval> out;
  std::istringstream log(ReadFile(NodeDir(i) + "/provider.log"));
  bool served = false;
  int64_t down_since = -1;
  for (std::string line; std::getline(log, line);) {
    const std::string message = Field(line, "message");
    const int64_t ts = ParseTs(Field(line, "ts"));
    if (message == "fake.ready_changed" && line.find("\"ready\":true") != std::string::npos) {
      if (down_since >= 0) out.push_back({Name(i), down_since, ts});
      down_since = -1;
      served = true;
    } else if (served && down_since < 0 && message == "serve.stopping") {
      down_since = ts;
    }
  }
  if (down_since >= 0) out.push_back({Name(i), down_since, INT64_MAX});
  return out;
}

std::vector<Interval> FleetCluster::DownIntervals() {
  std::vector<Interval> out;
  for (int i = 0; i < kNodes; ++i) {
    std::vector<Interval> node = DownIntervalsOf(i);
    out.insert(out.end(), node.begin(), node.end());
  }
  return out;
}

std::vector<int> FleetCluster::TimesDown() {
  std::vector<int> times;
  for (int i = 0; i < kNodes; ++i) times.push_back(static_cast<int>(DownIntervalsOf(i).size()));
  return times;
}

std::string FleetCluster::StillDown() {
  std::string out;
  for (const Interval& down : DownIntervals()) {
    if (down.to_ms == INT64_MAX) out += Describe(down) + "\n";
  }
  return out;
}

// Matched by node and start: the end of one open in `before` may have
// been logged since.
std::string FleetCluster::DowntimeSince(const std::vector<Interval>& before) {
  std::string out;
  for (const Interval& down : DownIntervals()) {
    const bool known = std::any_of(before.begin(), before.end(), [&](const Interval& b) {
      return b.node == down.node && b.from_ms == down.from_ms;
    });
    if (!known) out += Describe(down) + "\n";
  }
  return out;
}

std::string FleetCluster::DescribeDowntime() {
  std::string out;
  for (const Interval& down : DownIntervals()) out += Describe(down) + "\n";
  return out.empty() ? "no provider went down\n" : out;
}

std::string FleetCluster::OverlappingDowntime() {
  std::vector<Interval> all = DownIntervals();
  for (size_t a = 0; a < all.size(); ++a) {
    for (size_t b = a + 1; b < all.size(); ++b) {
      if (all[a].node == all[b].node) continue;
      if (all[a].from_ms < all[b].to_ms && all[b].from_ms < all[a].to_ms) {
        return Describe(all[a]) + " overlaps " + Describe(all[b]);
      }
    }
  }
  return "";
}

std::string FleetCluster::AgentLog(int i) { return ReadFile(NodeDir(i) + "/agent.log"); }

std::string FleetCluster::Logs() {
  std::string out;
  for (int i = 0; i < kNodes; ++i) {
    out += "--- " + Name(i) + " agent.log (tail)\n";
    std::string log = ReadFile(NodeDir(i) + "/agent.log");
    out += log.size() > 6000 ? log.substr(log.size() - 6000) : log;
  }
  out += "--- manager.log\n" + ReadFile(dir_.File("manager.log"));
  return out;
}

}  // namespace kmsfleet::testing
