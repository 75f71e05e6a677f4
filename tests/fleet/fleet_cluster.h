// A three-node control plane for the fleet end-to-end tests (issue 9):
// one systemd --user manager hosting each node's fake bao-kms-provider as
// a unit of its own, three kmsfleetd agents electing a coordinator over
// mTLS, a fake OpenBao health endpoint every provider config points at,
// and an operator certificate for kmsfleetctl.
//
// Every provider unit appends the fake's JSON log to <node>/provider.log:
// DownIntervals() reads when each provider was disrupted, from its stop
// until its /ready first answered 200 again, so a test can prove that two
// were never down at once.
#ifndef KMSFLEET_TESTS_FLEET_FLEET_CLUSTER_H_
#define KMSFLEET_TESTS_FLEET_FLEET_CLUSTER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kmsfleet/node/subprocess.h"
#include "process_harness.h"

namespace kmsfleet::testing {

// The static-pod node's image of `version` (a stand-in digest).
std::string ImageOf(const std::string& version);

struct Interval {
  std::string node;
  int64_t from_ms = 0, to_ms = 0;  // to_ms = INT64_MAX while still down
};

class FleetCluster {
 public:
  static constexpr int kNodes = 3;
  // Starts the manager, OpenBao, every provider at `installed_version` and
  // every agent, and waits for a coordinator. With `apiserver_restart`,
  // every agent's config gets an apiserver: section whose restart command
  // appends to ApiServerRestarts() and fails while <node>/apiserver-fails
  // exists, and whose readyz_url is the node's provider /ready (a stand-in
  // endpoint that answers 200 while the node serves).
  // With `static_pod_node` >= 0, that node runs its provider as a static
  // pod (issue 10): fake-kubelet runs the image its manifest names, and
  // fake-cri serves the images of every release (images.json) and the
  // kubelet's containers; its agent is in provider.mode static_pod.
  // With `apiserver_restart`, every node's agent but `no_restart_node`
  // (when >= 0) has an apiserver: section.
  // `http_timeout_ms`: every agent's provider.http_timeout_ms.
  explicit FleetCluster(const std::string& installed_version = "0.1.0",
                        bool apiserver_restart = false, int static_pod_node = -1,
                        int no_restart_node = -1, int http_timeout_ms = 1000);
  ~FleetCluster();

  std::string Name(int i) const { return "cp-" + std::to_string(i + 1); }
  std::string NodeDir(int i) const { return dir_.File(Name(i)); }
  int Index(const std::string& name) const { return name.back() - '1'; }

  // The release every node stages: a script running the fake as `version`
  // that obeys per-node toggles (Toggle); checksums.txt and its Ed25519
  // signature, which every agent trusts.
  // `image` and `image_ref` (the static-pod kit, listed in checksums.txt)
  // are what static-pod nodes stage; the image's version is the release's.
  struct Release {
    std::string binary, checksums, signature, image, image_ref;
  };
  Release MakeRelease(const std::string& version);
  // Creates or removes <node>/<toggle>. For new releases: "never-ready"
  // (/ready answers 503), "doctor-fails" (doctor fails a check),
  // "wrong-key" (it serves another key_id); for the installed release:
  // "old-broken" (serve exits 1 when started again).
  void Toggle(int i, const std::string& toggle, bool on);
  // Rewrites node i's scenario (the fake reloads it while serving).
  void SetScenario(int i, const std::string& yaml);
  // "active", "sealed", "standby" or "uninitialized".
  void SetOpenBao(const std::string& state);

  // kmsfleetctl <args> as the operator, against agent `i` over mTLS.
  absl::StatusOr<SubprocessResult> Ctl(int i, std::vector<std::string> args,
                                       std::chrono::seconds timeout = std::chrono::seconds(120));
  // The same with another certificate of the fleet's PKI (e.g. "cp-2").
  absl::StatusOr<SubprocessResult> CtlAs(int i, const std::string& cert,
                                         std::vector<std::string> args,
                                         std::chrono::seconds timeout = std::chrono::seconds(120));
  // The argv of kmsfleetctl <args> with `cert`, against agent `i`.
  std::vector<std::string> CtlArgv(int i, const std::string& cert, std::vector<std::string> args);
  // kmsfleetctl <args> as the operator against agent i, left running; its
  // stdout and stderr go to <name>.out and <name>.err in the fleet's dir.
  std::unique_ptr<ChildProcess> StartCtl(int i, std::vector<std::string> args,
                                         const std::string& name);
  std::string File(const std::string& name) const { return dir_.File(name); }
  // Index of the agent every running agent names as coordinator, or -1.
  int WaitForCoordinator(std::chrono::seconds timeout = std::chrono::seconds(30));

  // One line per run of a node's kube-apiserver restart command, in order:
  // "<node> <installed version of cp-1> <of cp-2> <of cp-3>".
  std::vector<std::string> ApiServerRestarts();

  // The version the node's running provider reports, "" when down.
  std::string ServingVersion(int i);
  // Agent i's own /metrics (kmsfleetd's metrics.listen), "" if unreachable.
  std::string AgentMetrics(int i);
  bool ProviderReady(int i);
  // True while a provider `doctor` runs for node i (a process whose
  // arguments include "doctor" and a path in the node's directory).
  bool DoctorRunning(int i);
  // How many such processes run.
  int DoctorsRunning(int i);
  // When node i's provider was disrupted, after /ready first answered 200:
  // from each `serve.stopping` to the next `fake.ready_changed` with
  // "ready":true (the fake's test-only line, tests/fakes/README.md). A
  // provider started again but not ready (never-ready, a 503 for any
  // reason) is still down; serve.ready only says its listeners are bound.
  std::vector<Interval> DownIntervalsOf(int i);
  // Every node's, node by node.
  std::vector<Interval> DownIntervals();
  // How many times each node went down (index = node), open ones included.
  std::vector<int> TimesDown();
  // The intervals still open (a provider not ready since its stop),
  // described one a line; "" if none.
  std::string StillDown();
  // The intervals that `before` (an earlier DownIntervals()) does not hold,
  // i.e. disruptions that started since, described one a line; "" if none.
  // One open in `before` and closed since is not new.
  std::string DowntimeSince(const std::vector<Interval>& before);
  // Every interval, one a line, for failure messages.
  std::string DescribeDowntime();
  // Two intervals of different nodes that overlap, described; "" if none.
  std::string OverlappingDowntime();

  void KillAgent(int i);  // SIGKILL and reap
  void StartAgent(int i);
  ChildProcess* agent(int i) { return agents_[i].get(); }
  std::string Logs();
  // Agent i's whole log.
  std::string AgentLog(int i);

 private:
  void Start();     // the manager, the units, the agents
  void Shutdown();  // agents, then the manager (which stops the units)
  void WriteNode(int i);
  std::string ApiServerSection(int i);
  void StartManager();
  void StartStaticPod(int i);
  std::string StaticPodSection(int i);
  void AddImage(const std::string& version, bool present);
  std::string Systemctl(const std::vector<std::string>& args);

  TempDir dir_;
  std::string pki_;
  std::vector<uint16_t> cluster_ports_, metrics_ports_, health_ports_, agent_metrics_ports_;
  uint16_t openbao_port_ = 0;
  bool apiserver_restart_ = false;
  int static_pod_node_ = -1;
  int http_timeout_ms_ = 1000;
  int no_restart_node_ = -1;
  std::string images_json_;  // the static-pod node's registry entries
  std::unique_ptr<ChildProcess> cri_, kubelet_;
  std::unique_ptr<ChildProcess> manager_;
  std::unique_ptr<ChildProcess> openbao_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_FLEET_FLEET_CLUSTER_H_
