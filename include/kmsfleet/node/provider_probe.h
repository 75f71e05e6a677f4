// Observes the local bao-kms-provider (architecture.md §1): /live, /ready
// and /metrics over HTTP, KMS v2 Status over the unix socket, the facts of
// its key registry file, and, for providers without openbao_kms_build_info,
// `<binary> version`.
#ifndef KMSFLEET_NODE_PROVIDER_PROBE_H_
#define KMSFLEET_NODE_PROVIDER_PROBE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/http_get.h"
#include "kmsfleet/v1/agent.pb.h"

namespace kmsfleet {

struct ProviderEndpoints {
  // The provider's defaults (reference §1).
  HttpUrl metrics{"127.0.0.1", 8081, "/metrics"};
  HttpUrl ready{"127.0.0.1", 8082, "/ready"};
  HttpUrl live{"127.0.0.1", 8082, "/live"};
  std::string kms_socket = "/run/openbao-kms/kms.sock";
  // The installed provider binary, for `version`; empty to never run it.
  std::string binary = "/usr/bin/bao-kms-provider";
  // Who runs `version` (executor.run_as, as every other provider command
  // does); empty: kmsfleetd's own user.
  std::string run_as;
  // The provider's key-registry.json, whose facts every observation
  // reports (NodeState.registry_*); empty reports them unknown.
  std::string registry_path;
  HttpGetOptions http;
  std::chrono::milliseconds kms_timeout{5000};
  std::chrono::milliseconds command_timeout{10000};
};

// The longest an observation of `endpoints` takes: the HTTP reads and the
// KMS call run side by side, then `version` when the scrape had no
// build_info. A caller that waits less (the coordinator's GetNodeState)
// reports a provider that hangs as an agent that does not answer.
std::chrono::milliseconds ObserveBound(const ProviderEndpoints& endpoints);

// Thread-safe: Observe() may run concurrently from several RPCs.
class ProviderProbe {
 public:
  virtual ~ProviderProbe() = default;

  // Observes the provider now. Never fails: everything that could not be
  // observed is a condition in the returned state.
  virtual v1::NodeState Observe() = 0;
  // Observes as Observe does, for a verification, which reads the version
  // only of a provider that answered /ready 200 (EvaluateVerify): the
  // binary's `version` runs only then. While the provider starts, that is
  // one process fewer per poll, taking no CPU from the start itself.
  virtual v1::NodeState ObserveForVerify() { return Observe(); }
  // Whether the provider's health listener accepts a connection now
  // (ListenerAccepts); nullopt when this probe cannot tell.
  virtual std::optional<bool> HealthListenerAccepts() { return std::nullopt; }
  // The version the running provider reports (Observe's provider_version),
  // "" when unknown. The live probe reads only /metrics when the provider
  // shows its build_info there, rather than every endpoint.
  virtual std::string RunningVersion() { return Observe().provider_version(); }
};

// Returns a probe that talks to the real endpoints. `clock` must outlive it.
std::unique_ptr<ProviderProbe> NewProviderProbe(std::string node,
                                                ProviderEndpoints endpoints,
                                                const Clock& clock);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_PROVIDER_PROBE_H_
