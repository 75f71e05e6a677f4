// kmsfleetd's event metrics (daemon/event_metrics.h).
#include "daemon/event_metrics.h"

#include <gtest/gtest.h>

#include <string>

#include "prometheus/text_serializer.h"

namespace kmsfleet {
namespace {

std::string Scrape(const EventMetrics& events) {
  return prometheus::TextSerializer().Serialize(events.registry()->Collect());
}

TEST(EventMetricsTest, RefusalsAreCountedByReason) {
  EventMetrics events;
  events.CountRefusal("STALE_TERM");
  events.CountRefusal("STALE_TERM");
  events.CountRefusal("COMMAND_NOT_IN_PLAN");
  const std::string text = Scrape(events);
  EXPECT_NE(text.find("kmsfleet_guard_refusals_total{reason=\"STALE_TERM\"} 2"),
            std::string::npos) << text;
  EXPECT_NE(text.find("kmsfleet_guard_refusals_total{reason=\"COMMAND_NOT_IN_PLAN\"} 1"),
            std::string::npos) << text;
}

TEST(EventMetricsTest, AReasonThatIsNotACodeKeepsTheLabelBounded) {
  EXPECT_EQ(RefusalLabel("ROTATION_IN_PROGRESS"), "ROTATION_IN_PROGRESS");
  EXPECT_EQ(RefusalLabel(""), "OTHER");
  EXPECT_EQ(RefusalLabel("stale term"), "OTHER");
  EXPECT_EQ(RefusalLabel("A\"}\nINJECTED 1"), "OTHER");
  EXPECT_EQ(RefusalLabel(std::string(65, 'A')), "OTHER");
  EventMetrics events;
  events.CountRefusal("not a code");
  EXPECT_NE(Scrape(events).find("kmsfleet_guard_refusals_total{reason=\"OTHER\"} 1"),
            std::string::npos);
}

TEST(EventMetricsTest, PhaseDurationsLandInTheirBuckets) {
  EventMetrics events;
  events.ObservePhase("Verifying", 31);
  events.ObservePhase("Stopped", 0.2);
  events.ObservePhase("Stopped", -1);  // a wall clock stepped back: 0
  const std::string text = Scrape(events);
  const std::string family = "kmsfleet_node_operation_duration_seconds";
  EXPECT_NE(text.find(family + "_count{phase=\"Stopped\"} 2"), std::string::npos) << text;
  EXPECT_NE(text.find(family + "_bucket{phase=\"Verifying\",le=\"30\"} 0"), std::string::npos);
  EXPECT_NE(text.find(family + "_bucket{phase=\"Verifying\",le=\"60\"} 1"), std::string::npos);
  EXPECT_NE(text.find(family + "_bucket{phase=\"Stopped\",le=\"0.05\"} 1"), std::string::npos);
  EXPECT_NE(text.find(family + "_sum{phase=\"Stopped\"} 0.2"), std::string::npos);
}

}  // namespace
}  // namespace kmsfleet
