// One control-plane node whose provider is a static pod (issue 10):
// fake-kubelet watching <dir>/manifests and running the fake provider for
// the image its manifest names, fake-cri serving the runtime's view of the
// images and containers, and kmsfleetd in provider.mode static_pod
// (standalone). No systemd: the kubelet is the provider's service manager.
//
// Images: version V is the image kRepo@ImageDigest(V). The digest table
// maps it back to V for the kubelet, and images.json lets fake-cri "pull"
// it once a release of V is made. The kubelet runs <dir>/bin/kubelet-run,
// which adds the arguments in <dir>/extra-<V> (e.g. "--fake-set
// ready=false") to version V's provider, so a test can break one version.
#ifndef KMSFLEET_TESTS_INTEGRATION_STATIC_POD_NODE_H_
#define KMSFLEET_TESTS_INTEGRATION_STATIC_POD_NODE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/subprocess.h"
#include "process_harness.h"

namespace kmsfleet::testing {

inline constexpr char kImageRepo[] = "ghcr.io/dc-tec/bao-kms-provider";

// "sha256:<hex>", a stand-in manifest digest for version `version`.
std::string ImageDigest(const std::string& version);
std::string ImageOf(const std::string& version);  // kImageRepo@ImageDigest
// "sha256:<hex>", the runtime's image id (a config digest) for `version`,
// apart from its manifest digest as in a real runtime.
std::string ImageId(const std::string& version);

// The operator's manifest, with comments and an order of its own that a
// swap must keep.
std::string OperatorManifest(const std::string& image);

class StaticPodNode {
 public:
  // Writes the manifest for `installed_version`, starts fake-cri and
  // fake-kubelet, waits for the provider, then starts kmsfleetd.
  explicit StaticPodNode(const std::string& installed_version);
  ~StaticPodNode();

  const std::string& dir() const { return dir_.path(); }
  std::string manifest() const { return dir_.File("manifests/bao-kms-provider.yaml"); }
  std::string state_dir() const { return dir_.File("agent-state"); }
  std::string cri_dir() const { return dir_.File("cri"); }

  // The release of `version`: the kit binary (a stamped fake copy) as the
  // release asset, checksums.txt listing it and the static-pod kit, its
  // signature, and the kit (a tar.gz whose image-ref.txt names
  // ImageOf(version)) as image_ref. fake-cri's registry gets the
  // image; `served_digest` (default: the requested one) plays a registry
  // serving other bytes, `pull_failure` a failing pull. Without
  // `kubelet_runs_it` the digest table leaves the image out, so the kubelet
  // starts no container for it (as for an image it cannot run).
  struct Release {
    std::string binary, checksums, signature, image, image_ref;
  };
  Release MakeRelease(const std::string& version, const std::string& served_digest = "",
                      const std::string& pull_failure = "", bool kubelet_runs_it = true,
                      int64_t pull_delay_ms = 0);
  // Arguments version `version`'s provider gets when the kubelet starts it.
  void SetExtraArgs(const std::string& version, const std::string& args);

  // Restarts the agent with static_pod.doctor_command: bin/image-doctor
  // {image} {config} {encryption_config}, which appends its arguments to
  // <dir>/image-doctor.calls and runs the fake's doctor, failing a check
  // while <dir>/image-doctor-fails exists; once <dir>/image-doctor-edits
  // exists, it appends a comment to the manifest (an operator's edit while
  // a swap starts) and removes that file.
  void UseImageDoctor();

  void StartAgent(const std::vector<std::string>& extra_env = {},
                  const std::string& agent_path = KMSFLEETD_PATH);
  void StopAgent();
  ChildProcess* agent() { return agent_.get(); }
  // kmsfleetctl node <args> --agent <this agent>.
  absl::StatusOr<SubprocessResult> Node(const std::vector<std::string>& args,
                                        int timeout_ms = 90000);
  // kmsfleetctl node stage of `r` as `version`.
  absl::StatusOr<SubprocessResult> Stage(const std::string& version, const Release& r);

  bool ProviderReady();
  std::string ServingVersion();  // build_info's version, "" if none answers
  // fake-cri's calls.log, one call per line.
  std::string CriCalls();
  // fake-kubelet's events of kind `event`, as JSON lines.
  std::vector<std::string> KubeletEvents(const std::string& event);
  std::string Logs();

 private:
  void WriteImages();
  void WriteConfigs();

  TempDir dir_;
  uint16_t metrics_port_, health_port_;
  std::map<std::string, std::string> images_;  // ref -> images.json entry
  std::string digest_table_;
  std::unique_ptr<ChildProcess> cri_;
  std::unique_ptr<ChildProcess> kubelet_;
  std::unique_ptr<ChildProcess> agent_;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_STATIC_POD_NODE_H_
