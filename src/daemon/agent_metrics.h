// kmsfleetd's /metrics (docs/metrics.md): what this agent observes of its
// provider and of the election, computed at each scrape so a value is
// never older than the scrape. Metric names follow Prometheus conventions;
// label values are bounded (node names, SemVer strings, 43-char hashes).
//
// Thread-safe: the exposer's threads call Collect().
#ifndef KMSFLEET_DAEMON_AGENT_METRICS_H_
#define KMSFLEET_DAEMON_AGENT_METRICS_H_

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <functional>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include "kmsfleet/v1/agent.pb.h"
#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

// The metric families for one observation of the local provider and, for
// a member of an election, its view of the election (nullopt otherwise)
// and, on the coordinator, the fleet's key_id parity (nullopt elsewhere).
std::vector<prometheus::MetricFamily> AgentMetricFamilies(
    const v1::NodeState& state, const std::optional<v1::LeaderView>& election,
    std::optional<bool> fleet_parity = std::nullopt);

class AgentMetrics final : public prometheus::Collectable {
 public:
  AgentMetrics(std::function<v1::NodeState()> observe,
               std::function<std::optional<v1::LeaderView>()> election,
               std::function<std::optional<bool>()> fleet_parity)
      : observe_(std::move(observe)),
        election_(std::move(election)),
        fleet_parity_(std::move(fleet_parity)) {}

  // prometheus::Collectable
  // Observes on a thread of its own: the exposer's threads have small
  // stacks, and an observation (HTTP, gRPC, file reads) is not shallow.
  std::vector<prometheus::MetricFamily> Collect() const override {
    return std::async(std::launch::async,
                      [this] {
                        return AgentMetricFamilies(observe_(), election_(), fleet_parity_());
                      })
        .get();
  }

 private:
  std::function<v1::NodeState()> observe_;
  std::function<std::optional<v1::LeaderView>()> election_;
  std::function<std::optional<bool>()> fleet_parity_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_AGENT_METRICS_H_
