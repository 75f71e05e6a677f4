// fake-kubelet: the part of the kubelet a static-pod provider meets (issue
// 10, README.md "fake-kubelet"). It watches a manifest directory as the
// kubelet does (inotify plus a periodic scan; every file that appears is
// read, half-written or not), runs the fake provider for the provider's
// manifest with the version its image digest maps to, replaces it when the
// image changes, and reports containers to fake-cri through
// `<cri-state-dir>/containers.json`. Everything it sees and does goes to an
// event log (JSON lines) that tests assert on.
// Single-threaded.
#ifndef KMSFLEET_TESTS_FAKES_FAKE_KUBELET_H_
#define KMSFLEET_TESTS_FAKES_FAKE_KUBELET_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>

namespace kmsfleet::fake {

struct KubeletOptions {
  std::string manifest_dir;
  std::string manifest_name = "bao-kms-provider.yaml";  // the provider's pod
  std::string container = "bao-kms-provider";
  std::string cri_state_dir;
  std::string digest_table;  // "sha256:<hex> <version>" lines
  std::string node = "node-1";
  std::string provider_binary;
  std::string provider_config;       // serve --config
  std::string provider_scenario;     // FAKE_BAO_KMS_SCENARIO, optional
  std::string provider_listen_info;  // serve --listen-info, optional
  std::string provider_log;          // the provider's stdout and stderr
  std::string event_log;
  int poll_ms = 20;
  int stop_timeout_ms = 5000;
  int restart_backoff_ms = 300;
};

// One container as fake-cri reports it.
struct FakeContainer {
  std::string id;         // 64 hex digits, new for every start
  std::string image_ref;  // the manifest's image, repo@sha256:<hex>
  std::string image_id;   // sha256:<hex>
  std::string version;    // from the digest table
  std::string state;      // CONTAINER_RUNNING, CONTAINER_EXITED
  int64_t created_at_ns = 0, started_at_ns = 0;
  int attempt = 0;
  pid_t pid = -1;
};

class FakeKubelet {
 public:
  explicit FakeKubelet(KubeletOptions options);
  ~FakeKubelet();
  FakeKubelet(const FakeKubelet&) = delete;
  FakeKubelet& operator=(const FakeKubelet&) = delete;

  // Watches and reconciles until `stop` becomes non-zero; then stops the
  // provider and reports it exited. Returns the exit code (0, or 1 when the
  // manifest directory cannot be watched).
  int Run(const volatile int& stop);

 private:
  // What the provider's manifest asks for; image empty: no pod.
  struct PodSpec {
    std::string image, pod_name, pod_namespace;
  };

  void DrainWatch();
  void Scan();
  void SeeFile(const std::string& name, const std::string& content);
  std::optional<PodSpec> ParseProviderManifest(const std::string& content);
  void Reconcile();
  void StartContainer(int attempt);
  void StopContainer(const char* why);
  void ReapContainer();
  std::optional<std::string> VersionOf(const std::string& image);
  void WriteCriState();
  void Event(const char* name, boost::json::object fields);

  KubeletOptions o_;
  int watch_fd_ = -1;
  std::map<std::string, std::string> seen_;  // file name -> SHA-256 last read
  PodSpec want_;                             // from the last good read
  std::string unknown_image_;                // the last unmappable image logged
  std::vector<FakeContainer> containers_;    // newest last
  bool crashed_ = false;        // the newest container exited on its own
  int64_t restart_at_ns_ = 0;  // when it restarts
  int next_id_ = 0;
  bool cri_dirty_ = true;
};

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_FAKE_KUBELET_H_
