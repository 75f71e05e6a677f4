#include "http_handlers.h"

#include <chrono>
#include <thread>

#include <boost/json.hpp>

namespace kmsfleet::fake {
namespace {

std::string_view PathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

HttpReply NotFound() { return {404, "text/plain; charset=utf-8", "404 page not found\n", ""}; }

HttpReply MethodNotAllowed() {
  return {405, "text/plain; charset=utf-8", "method not allowed\n", "GET, HEAD"};
}

bool IsReadMethod(std::string_view method) { return method == "GET" || method == "HEAD"; }

HttpReply Json(int status, const boost::json::object& body) {
  return {status, "application/json", boost::json::serialize(body) + "\n", ""};
}

// Field order follows the real handler's struct (reference §3); omitempty
// fields are left out when empty.
HttpReply Ready(LiveState& state) {
  std::shared_ptr<const Scenario> scenario = state.CurrentScenario();
  std::vector<std::string> reasons = ReadyReasons(*scenario);
  const bool healthy = scenario->kms_healthy && !scenario->ActiveKeyId().empty();
  boost::json::object body;
  boost::json::array reason_list;
  for (const std::string& reason : reasons) reason_list.emplace_back(reason);
  body["reasons"] = std::move(reason_list);
  body["status"] = reasons.empty() ? "ok" : "unavailable";
  body["healthz"] = healthy ? "ok" : "unhealthy";
  body["cache_age_ms"] = state.StatusCacheAge().count();
  body["stale"] = false;
  body["rotation_state"] = scenario->rotation_state;
  const int status = reasons.empty() ? 200 : 503;
  // Logged before the answer leaves: no client sees a 200 earlier than the
  // line's ts says.
  state.NoteReadyAnswer(status);
  return Json(status, body);
}

}  // namespace

std::vector<std::string> ReadyReasons(const Scenario& scenario) {
  std::vector<std::string> reasons;
  if (scenario.ActiveKeyId().empty()) reasons.push_back("state_unavailable");
  if (!scenario.ready) {
    if (scenario.ready_reasons.empty()) {
      reasons.push_back("deep_probe_failed");
    } else {
      reasons.insert(reasons.end(), scenario.ready_reasons.begin(),
                     scenario.ready_reasons.end());
    }
  }
  if (!scenario.kms_healthy && reasons.empty()) reasons.push_back("probe_failed");
  if (scenario.circuit_breaker_open) reasons.push_back("circuit_breaker_open");
  return reasons;
}

HttpReply HandleHealthRequest(std::string_view method, std::string_view target,
                              LiveState& state) {
  std::string_view path = PathOf(target);
  if (path != "/live" && path != "/ready") return NotFound();
  if (!IsReadMethod(method)) return MethodNotAllowed();
  if (path == "/live") return Json(200, {{"status", "ok"}});
  return Ready(state);
}

HttpReply HandleMetricsRequest(std::string_view method, std::string_view target,
                               LiveState& state) {
  if (PathOf(target) != "/metrics") return NotFound();
  if (!IsReadMethod(method)) return MethodNotAllowed();
  // Blocks the fake's one HTTP thread: requests to /ready and /live queue
  // behind it too, as on a loaded node.
  if (const int delay_ms = state.CurrentScenario()->metrics_delay_ms; delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  }
  return {200, "text/plain; version=0.0.4; charset=utf-8", state.RenderMetricsText(), ""};
}

}  // namespace kmsfleet::fake
