#include "static_pod_node.h"

#include <signal.h>

#include <filesystem>
#include <stdexcept>

#include "fleet.h"
#include "kmsfleet/node/fs_util.h"
#include "user_manager.h"

namespace kmsfleet::testing {

std::string ImageDigest(const std::string& version) {
  return "sha256:" + Sha256Hex("image of " + version);
}

std::string ImageId(const std::string& version) {
  return "sha256:" + Sha256Hex("image config of " + version);
}

std::string ImageOf(const std::string& version) {
  return std::string(kImageRepo) + "@" + ImageDigest(version);
}

std::string OperatorManifest(const std::string& image) {
  return "# Managed by the platform team; kmsfleet changes only the image.\n"
         "apiVersion: v1\n"
         "kind: Pod\n"
         "metadata:\n"
         "  namespace: kube-system   # before name, on purpose\n"
         "  name: bao-kms-provider\n"
         "  labels: {app.kubernetes.io/name: bao-kms-provider}\n"
         "spec:\n"
         "  hostNetwork: true\n"
         "  priorityClassName: system-node-critical\n"
         "  containers:\n"
         "    - name: bao-kms-provider\n"
         "      imagePullPolicy: IfNotPresent\n"
         "      image: \"" + image + "\"   # pinned by digest\n"
         "      args:\n"
         "        - serve\n"
         "        - --config=/etc/openbao-kms/config.yaml\n";
}

StaticPodNode::StaticPodNode(const std::string& installed_version)
    : metrics_port_(FreeLoopbackPort()), health_port_(FreeLoopbackPort()) {
  while (health_port_ == metrics_port_) health_port_ = FreeLoopbackPort();
  for (const char* sub : {"bin", "manifests", "agent-state", "cri", "rel", "run", "pstate"}) {
    std::filesystem::create_directories(dir_.File(sub));
  }
  Sh("openssl genpkey -algorithm ed25519 -out " + dir_.File("release.key") +
     " && openssl pkey -in " + dir_.File("release.key") + " -pubout -out " +
     dir_.File("release.pub"));
  WriteExecutable(dir_.File("bin/kubelet-run"),
                  "#!/bin/sh\nv=\"\"; prev=\"\"\n"
                  "for a in \"$@\"; do [ \"$prev\" = --fake-version ] && v=$a; prev=$a; done\n"
                  "exec " + std::string(FAKE_PROVIDER_PATH) + " $(cat " + dir_.File("extra-") +
                      "\"$v\" 2>/dev/null) \"$@\"\n");
  digest_table_ = ImageDigest(installed_version) + " " + installed_version + "\n";
  WriteFile(dir_.File("digests.txt"), digest_table_);
  images_[ImageOf(installed_version)] = "{\"ref\": \"" + ImageOf(installed_version) +
                                        "\", \"digest\": \"" + ImageDigest(installed_version) +
                                        "\", \"image_id\": \"" + ImageId(installed_version) +
                                        "\", \"present\": true}";
  WriteImages();
  WriteConfigs();
  WriteFile(manifest(), OperatorManifest(ImageOf(installed_version)));
  cri_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{FAKE_CRI_PATH, "--socket", dir_.File("cri.sock"), "--state-dir",
                               cri_dir()},
      ChildOptions{.out_path = dir_.File("cri.log")});
  kubelet_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{
          FAKE_KUBELET_PATH, "--manifest-dir", dir_.File("manifests"), "--cri-state-dir",
          cri_dir(), "--digest-table", dir_.File("digests.txt"), "--node", "cp-1",
          "--provider-binary", dir_.File("bin/kubelet-run"), "--provider-config",
          dir_.File("provider.yaml"), "--provider-log", dir_.File("provider.log"),
          "--event-log", dir_.File("events.jsonl"), "--provider-scenario",
          dir_.File("scenario.yaml"), "--poll-ms", "20", "--restart-backoff-ms", "200"},
      ChildOptions{.out_path = dir_.File("kubelet.log")});
  if (!WaitUntil([&] { return ProviderReady() && PathExists(dir_.File("cri.sock")); },
                 std::chrono::seconds(20))) {
    throw std::runtime_error("the static pod never became ready:\n" + Logs());
  }
  StartAgent();
}

StaticPodNode::~StaticPodNode() {
  StopAgent();
  for (auto* child : {&kubelet_, &cri_}) {
    if (!*child) continue;
    (*child)->Signal(SIGTERM);
    if (!(*child)->Wait(std::chrono::seconds(10))) (*child)->Signal(SIGKILL);
    child->reset();
  }
}

void StaticPodNode::WriteImages() {
  std::string json = "{\"images\": [";
  const char* sep = "";
  for (const auto& [ref, entry] : images_) {
    json += sep + entry;
    sep = ", ";
  }
  // fake-cri reads at any moment: write whole files only.
  if (!WriteFileAtomic(cri_dir() + "/images.json", json + "]}\n", 0644).ok()) {
    throw std::runtime_error("cannot write images.json");
  }
}

void StaticPodNode::WriteConfigs() {
  const std::string sock = dir_.File("run/kms.sock");
  WriteProviderConfigs(dir_.path(), metrics_port_, health_port_);
  WriteFile(dir_.File("scenario.yaml"), "key_seed: static-pod-key-1\n");
  WriteFile(dir_.File("kmsfleet.yaml"),
            "node: cp-1\n"
            "standalone: true\n"
            "state_dir: " + state_dir() + "\n"
            "listen:\n  unix: " + dir_.File("agent.sock") + "\n"
            "provider:\n"
            "  mode: static_pod\n"
            "  metrics_url: http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics\n"
            "  ready_url: http://127.0.0.1:" + std::to_string(health_port_) + "/ready\n"
            "  live_url: http://127.0.0.1:" + std::to_string(health_port_) + "/live\n"
            "  kms_socket: " + sock + "\n"
            "  config: " + dir_.File("provider.yaml") + "\n"
            "  encryption_config: " + dir_.File("encryption-config.yaml") + "\n"
            "  http_timeout_ms: 1000\n  kms_timeout_ms: 1000\n"
            "executor:\n"
            "  public_keys: [" + dir_.File("release.pub") + "]\n"
            "  registry_path: " + dir_.File("pstate/key-registry.json") + "\n"
            "  stabilization_ms: 1500\n"
            "  ready_timeout_ms: 8000\n"
            "  unit_timeout_ms: 15000\n"
            "  poll_interval_ms: 100\n"
            "  doctor_timeout_ms: 20000\n"
            "static_pod:\n"
            "  manifest: " + manifest() + "\n"
            "  cri_socket: " + dir_.File("cri.sock") + "\n");
}

void StaticPodNode::UseImageDoctor() {
  const std::string script = dir_.File("bin/image-doctor");
  const std::string fake = FAKE_PROVIDER_PATH;
  WriteExecutable(script,
                  "#!/bin/sh\n"
                  "echo \"$@\" >> " + dir_.File("image-doctor.calls") + "\n"
                  "if [ -e " + dir_.File("image-doctor-edits") + " ]; then\n"
                  "  rm " + dir_.File("image-doctor-edits") + "\n"
                  "  echo '# edited by hand' >> " + manifest() + "\n"
                  "fi\n"
                  "if [ -e " + dir_.File("image-doctor-fails") + " ]; then\n"
                  "  exec " + fake + " --fake-set 'doctor={fail: [transit.metadata]}' doctor "
                  "--config \"$2\" --encryption-config \"$3\" --output json\n"
                  "fi\n"
                  "exec " + fake + " doctor --config \"$2\" --encryption-config \"$3\" --output json\n");
  WriteFile(dir_.File("kmsfleet.yaml"),
            ReadFile(dir_.File("kmsfleet.yaml")) + "  doctor_command: [" + script +
                ", \"{image}\", \"{config}\", \"{encryption_config}\"]\n");
  StopAgent();
  StartAgent();
}

StaticPodNode::Release StaticPodNode::MakeRelease(const std::string& version,
                                                  const std::string& served_digest,
                                                  const std::string& pull_failure,
                                                  bool kubelet_runs_it,
                                                  int64_t pull_delay_ms) {
  const std::string rel = dir_.File("rel/" + version);
  std::filesystem::create_directories(rel + "/kit");
  const std::string name = "bao-kms-provider_" + version + "_linux_amd64";
  Release r{rel + "/" + name, rel + "/checksums.txt", rel + "/checksums.txt.sig",
            ImageOf(version), ""};
  StampedProviderCopy(r.binary, version);
  r.image_ref = MakeStaticPodKit(rel, version, r.image);
  SignRelease(rel, name, dir_.File("release.key"),
              {std::filesystem::path(r.image_ref).filename().string()});
  const std::string served = served_digest.empty() ? ImageDigest(version) : served_digest;
  images_[r.image] = "{\"ref\": \"" + r.image + "\", \"digest\": \"" + served +
                     "\", \"image_id\": \"" + ImageId(version) + "\", \"fail\": \"" +
                     pull_failure + "\", \"pull_delay_ms\": " + std::to_string(pull_delay_ms) +
                     "}";
  WriteImages();
  if (kubelet_runs_it) digest_table_ += ImageDigest(version) + " " + version + "\n";
  WriteFile(dir_.File("digests.txt"), digest_table_);
  return r;
}

void StaticPodNode::SetExtraArgs(const std::string& version, const std::string& args) {
  WriteFile(dir_.File("extra-" + version), args + "\n");
}

void StaticPodNode::StartAgent(const std::vector<std::string>& extra_env,
                               const std::string& agent_path) {
  agent_ = StartAgentIn(dir_.path(), extra_env, agent_path);
}

void StaticPodNode::StopAgent() {
  StopAgentProcess(agent_);
}

absl::StatusOr<SubprocessResult> StaticPodNode::Node(const std::vector<std::string>& args,
                                                     int timeout_ms) {
  return NodeCtl(dir_.File("agent.sock"), args, timeout_ms);
}

absl::StatusOr<SubprocessResult> StaticPodNode::Stage(const std::string& version,
                                                      const Release& r) {
  return Node({"stage", "--version", version, "--source", r.binary, "--checksums", r.checksums,
               "--signature", r.signature, "--image", r.image, "--image-ref", r.image_ref});
}

bool StaticPodNode::ProviderReady() {
  return HttpRequest("127.0.0.1:" + std::to_string(health_port_), "GET", "/ready").status ==
         200;
}

std::string StaticPodNode::ServingVersion() { return ServedBuildVersion(metrics_port_); }

std::string StaticPodNode::CriCalls() { return ReadFile(cri_dir() + "/calls.log"); }

std::vector<std::string> StaticPodNode::KubeletEvents(const std::string& event) {
  std::vector<std::string> out;
  const std::string text = ReadFile(dir_.File("events.jsonl"));
  const std::string needle = "\"event\":\"" + event + "\"";
  for (size_t pos = 0, nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    std::string line = text.substr(pos, nl - pos);
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

std::string StaticPodNode::Logs() {
  return "--- agent.log\n" + ReadFile(dir_.File("agent.log")) + "--- kubelet events\n" +
         ReadFile(dir_.File("events.jsonl")) + "--- kubelet.log\n" +
         ReadFile(dir_.File("kubelet.log")) + "--- cri calls\n" + CriCalls() +
         "--- provider.log (tail)\n" + ReadFile(dir_.File("provider.log")).substr(0, 4000);
}

}  // namespace kmsfleet::testing
