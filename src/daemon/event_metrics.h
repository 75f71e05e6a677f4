// kmsfleetd's event metrics (docs/metrics.md): what happened on this agent
// since it started, as opposed to AgentMetrics' state at the scrape.
//   kmsfleet_node_operation_duration_seconds{phase}  time a node operation
//     (swap or rollback) spent in each phase, observed as it leaves it;
//   kmsfleet_guard_refusals_total{reason}  commands and plan steps a guard
//     refused, by reason code.
// Labels stay bounded: phases are the swap machine's names; a reason that
// is not a well-formed reason code is counted as "OTHER".
//
// Thread-safe: prometheus-cpp's families and metrics are.
#ifndef KMSFLEET_DAEMON_EVENT_METRICS_H_
#define KMSFLEET_DAEMON_EVENT_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string_view>

namespace kmsfleet {

class EventMetrics {
 public:
  EventMetrics();
  EventMetrics(const EventMetrics&) = delete;
  EventMetrics& operator=(const EventMetrics&) = delete;

  // `seconds` spent in `phase` by one operation.
  void ObservePhase(std::string_view phase, double seconds);
  // A guard said no, with this reason code.
  void CountRefusal(std::string_view reason);

  // What the exposer collects.
  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Family<prometheus::Counter>& refusals_;
};

// `reason` if it is a well-formed reason code (upper case, digits and
// '_', at most 64 bytes), else "OTHER": a label value must stay bounded.
std::string_view RefusalLabel(std::string_view reason);

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_EVENT_METRICS_H_
