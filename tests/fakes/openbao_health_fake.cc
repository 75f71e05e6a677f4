#include "openbao_health_fake.h"

#include <boost/json.hpp>

namespace kmsfleet::fake {
namespace {

// The fields OpenBao's /v1/sys/health returns, in its order.
HttpReply Health(int status, bool initialized, bool sealed, bool standby) {
  boost::json::object body;
  body["initialized"] = initialized;
  body["sealed"] = sealed;
  body["standby"] = standby;
  body["performance_standby"] = false;
  body["replication_performance_mode"] = "disabled";
  body["replication_dr_mode"] = "disabled";
  body["server_time_utc"] = 1795000000;
  body["version"] = "2.4.1";
  if (initialized) {
    body["cluster_name"] = "fake-openbao";
    body["cluster_id"] = "00000000-0000-4000-8000-00000000fa4e";
  }
  return {status, "application/json", boost::json::serialize(body) + "\n", ""};
}

std::string_view Trim(std::string_view s) {
  const char* space = " \t\r\n";
  size_t first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

}  // namespace

HttpReply HandleOpenBaoHealth(std::string_view method, std::string_view target,
                              std::string_view state) {
  if (target.substr(0, target.find('?')) != "/v1/sys/health") {
    return {404, "application/json", "{\"errors\":[]}\n", ""};
  }
  if (method != "GET" && method != "HEAD") {
    return {405, "application/json", "{\"errors\":[]}\n", "GET, HEAD"};
  }
  state = Trim(state);
  if (state == "active") return Health(200, true, false, false);
  if (state == "standby") return Health(429, true, false, true);
  if (state == "sealed") return Health(503, true, true, true);
  if (state == "uninitialized") return Health(501, false, true, true);
  if (state == "garbage") return {200, "text/html", "<html>not OpenBao</html>\n", ""};
  if (state == "oversized") {
    return {200, "application/json",
            "{\"initialized\":true,\"padding\":\"" + std::string(100 << 10, 'x') + "\"}", ""};
  }
  boost::json::object error;
  error["errors"] = boost::json::array{"fake-openbao-health: unknown state \"" +
                                       std::string(state) + "\""};
  return {500, "application/json", boost::json::serialize(error) + "\n", ""};
}

}  // namespace kmsfleet::fake
