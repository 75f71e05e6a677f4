// A group of kmsfleetd agents electing a coordinator over mTLS on
// loopback, for the multi-process election tests (issue 3). Certificates
// come from the openssl CLI: a fleet CA, one certificate per node whose SAN
// is the node name, and extra ones tests use to impersonate or intrude.
#ifndef KMSFLEET_TESTS_INTEGRATION_ELECTION_CLUSTER_H_
#define KMSFLEET_TESTS_INTEGRATION_ELECTION_CLUSTER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kmsfleet/v1/agent.grpc.pb.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"
#include "kmsfleet/v1/peer.grpc.pb.h"
#include "process_harness.h"

namespace kmsfleet::testing {

// Makes `<dir>/ca.pem` (and .key) and, per name, `<dir>/<name>.pem` and
// `.key` signed by it with SAN DNS:<name>. `ca_name` other than "ca" makes
// a second, unrelated CA. Returns false (and logs) if openssl fails.
bool MakeCertificates(const std::string& dir, const std::vector<std::string>& names,
                      const std::string& ca_name = "ca");

// The operator trust domain the cluster's agents accept (caller_auth.h).
inline constexpr char kOperatorTrustDomain[] = "kmsfleet.test";

// Makes `<dir>/<name>.pem` and `.key` signed by `<dir>/<ca_name>.pem` with
// the SAN URI spiffe://<trust_domain>/kmsfleet/operator/<name>.
bool MakeOperatorCertificate(const std::string& dir, const std::string& name,
                             const std::string& trust_domain = kOperatorTrustDomain,
                             const std::string& ca_name = "ca");

// The election timings every agent of an ElectionCluster is configured
// with (kmsfleetd's defaults, written out so that tests and the bench can
// state their bounds relative to them).
inline constexpr int kTickMs = 50;
inline constexpr int kElectionTicks = 10;  // randomized in [10, 19] ticks
inline constexpr int kHeartbeatTicks = 2;
inline constexpr int kElectionTimeoutMs = kTickMs * kElectionTicks;
inline constexpr int kHeartbeatMs = kTickMs * kHeartbeatTicks;

class ElectionCluster {
 public:
  // Writes configs and certificates for nodes cp-1 .. cp-<voters>, and
  // for `learners` more members after them that the voters know as
  // learners but that never run (their certificates are for tests to
  // speak as).
  ElectionCluster(const TempDir& dir, int voters, int learners = 0);

  std::string Name(int i) const { return "cp-" + std::to_string(i + 1); }
  int size() const { return static_cast<int>(ports_.size()); }
  const std::string& pki() const { return pki_; }

  void Start(int i);
  void StartAll();
  void Kill(int i);          // SIGKILL and reap
  void Signal(int i, int signal_number);
  // Waits for agent `i` to exit; its exit status, or nullopt on timeout.
  std::optional<int> WaitExit(int i, std::chrono::milliseconds timeout);
  std::string Log(int i) const;
  // Agent `i`'s config file, which Start(i) runs kmsfleetd with.
  std::string ConfigPath(int i) const { return dir_ + "/" + Name(i) + "/kmsfleet.yaml"; }
  pid_t Pid(int i) const { return agents_[i] ? agents_[i]->pid() : -1; }

  // The agent's own view over its unix socket, or nullopt if it does not
  // answer within a second.
  std::optional<v1::LeaderView> View(int i);
  // Waits until every running agent in `among` names the same leader, one
  // of them, at a term above `above`. Returns its index or -1 on timeout.
  int WaitForLeader(const std::vector<int>& among, uint64_t above = 0);
  std::unique_ptr<v1::Fleet::Stub> LocalFleet(int i);
  // Agent.Swap to version `version` over agent `i`'s unix socket, under
  // `fence` (none if nullopt), as a coordinator sends it.
  grpc::Status Swap(int i, const std::optional<v1::Fence>& fence,
                    const std::string& version = "9.9.9");
  std::string Address(int i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }
  std::string Socket(int i) const { return dir_ + "/" + Name(i) + "/agent.sock"; }
  // A Peer client to agent `i`'s cluster port presenting `cert_name`'s
  // certificate from `pki_dir` (default: the fleet's).
  std::unique_ptr<v1::Peer::Stub> PeerClient(int i, const std::string& cert_name,
                                             const std::string& pki_dir = "");
  std::shared_ptr<grpc::Channel> PeerChannel(int i, const std::string& cert_name,
                                             const std::string& pki_dir = "");
  // A TLS channel to agent `i`'s cluster port that trusts the fleet CA and
  // presents no client certificate.
  std::shared_ptr<grpc::Channel> AnonymousChannel(int i);

 private:
  std::string dir_;
  std::string pki_;
  std::vector<uint16_t> ports_;
  std::vector<std::unique_ptr<ChildProcess>> agents_;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_INTEGRATION_ELECTION_CLUSTER_H_
