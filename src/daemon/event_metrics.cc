#include "daemon/event_metrics.h"

#include <string>

namespace kmsfleet {
namespace {

// From a fast phase (a stop, an install: well under a second) to a long
// stabilisation window (minutes) and a verification that times out.
const prometheus::Histogram::BucketBoundaries kPhaseBuckets = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};

constexpr size_t kMaxReasonBytes = 64;

}  // namespace

std::string_view RefusalLabel(std::string_view reason) {
  if (reason.empty() || reason.size() > kMaxReasonBytes) return "OTHER";
  for (char c : reason) {
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return "OTHER";
  }
  return reason;
}

EventMetrics::EventMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      durations_(prometheus::BuildHistogram()
                     .Name("kmsfleet_node_operation_duration_seconds")
                     .Help("Time a node operation (swap or rollback) spent in a phase, "
                           "observed as it leaves the phase")
                     .Register(*registry_)),
      refusals_(prometheus::BuildCounter()
                    .Name("kmsfleet_guard_refusals_total")
                    .Help("Commands and plan steps refused by a guard, by reason code")
                    .Register(*registry_)) {}

void EventMetrics::ObservePhase(std::string_view phase, double seconds) {
  durations_.Add({{"phase", std::string(phase)}}, kPhaseBuckets)
      .Observe(seconds < 0 ? 0 : seconds);
}

void EventMetrics::CountRefusal(std::string_view reason) {
  refusals_.Add({{"reason", std::string(RefusalLabel(reason))}}).Increment();
}

}  // namespace kmsfleet
