// The `cluster:` section of kmsfleetd's config as the election shell needs
// it (docs/config.md). It lives in the cluster layer so that src/cluster
// does not include the daemon's config header; the daemon fills it in.
#ifndef KMSFLEET_CLUSTER_CLUSTER_CONFIG_H_
#define KMSFLEET_CLUSTER_CLUSTER_CONFIG_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <string>
#include <vector>

namespace kmsfleet {

// The `cluster:` section: coordinator election between the agents
// (architecture.md §6, docs/config.md). Peers' addresses come from `peers`.
struct ClusterTls {
  std::string ca;    // PEM file of the fleet CA
  std::string cert;  // PEM file of this agent's certificate (SAN = node)
  std::string key;   // PEM file of its private key
  // Operators present certificates from the same CA whose SAN is the URI
  // spiffe://<operator_trust_domain>/kmsfleet/operator/<name>
  // (caller_auth.h); "" = no operator is accepted on the cluster listener.
  std::string operator_trust_domain;
};

struct ClusterConfig {
  bool enabled = false;  // the section is present
  std::string listen;    // host:port for kmsfleet.v1.Peer and Fleet
  // Default: this node and every peer. Learners must be listed peers.
  std::vector<std::string> voters = {};
  std::vector<std::string> learners = {};
  int tick_ms = 50;
  // How often the coordinator observes every node while it leads (each
  // parity observation round is one tick).
  int plan_tick_ms = 200;
  int election_ticks = 10;  // timeout randomized in [10, 19] ticks
  int heartbeat_ticks = 2;
  ClusterTls tls = {};
  bool insecure = false;  // plain TCP; local demos only
  // Operator uploads this agent receives at once, and how long one may
  // send nothing before it is ended (core/artifact_upload.h UploadLimits).
  int upload_streams = 4;
  int upload_idle_timeout_ms = 60'000;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_CLUSTER_CONFIG_H_
