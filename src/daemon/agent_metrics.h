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
// a member of an election, its view of the election (nullopt otherwise).
std::vector<prometheus::MetricFamily> AgentMetricFamilies(
    const v1::NodeState& state, const std::optional<v1::LeaderView>& election);

class AgentMetrics final : public prometheus::Collectable {
 public:
  AgentMetrics(std::function<v1::NodeState()> observe,
               std::function<std::optional<v1::LeaderView>()> election)
      : observe_(std::move(observe)), election_(std::move(election)) {}

  // prometheus::Collectable
  // Observes on a thread of its own: the exposer's threads have small
  // stacks, and an observation (HTTP, gRPC, file reads) is not shallow.
  std::vector<prometheus::MetricFamily> Collect() const override {
    return std::async(std::launch::async,
                      [this] { return AgentMetricFamilies(observe_(), election_()); })
        .get();
  }

 private:
  std::function<v1::NodeState()> observe_;
  std::function<std::optional<v1::LeaderView>()> election_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_AGENT_METRICS_H_
