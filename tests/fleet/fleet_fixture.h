// The fixture of the fleet end-to-end tests: a fresh FleetCluster per test
// with release 0.2.0 published, and kmsfleetctl helpers.
#ifndef KMSFLEET_TESTS_FLEET_FLEET_FIXTURE_H_
#define KMSFLEET_TESTS_FLEET_FLEET_FIXTURE_H_

#include <signal.h>

#include <chrono>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "fleet_cluster.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kmsfleet::testing {

class FleetUpgradeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A port found free can be taken by a test running beside this one
    // before an agent binds it: start again on fresh ports, up to 3 times.
    for (int attempt = 1; !fleet_; ++attempt) {
      try {
        fleet_ = MakeFleet();
      } catch (const std::exception& e) {
        if (attempt == 3 || std::string(e.what()).find("Address already in use") ==
                                std::string::npos) {
          throw;
        }
      }
    }
    release_ = fleet_->MakeRelease("0.2.0");
  }

  // The cluster each test starts with; a fixture may configure it further.
  virtual std::unique_ptr<FleetCluster> MakeFleet() {
    return std::make_unique<FleetCluster>("0.1.0");
  }

  std::vector<std::string> Upgrade(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"upgrade", "--to", "0.2.0", "--artifact", release_.binary,
                                     "--checksums", release_.checksums, "--signature",
                                     release_.signature};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  // Runs kmsfleetctl against agent `i`; the result's output for messages.
  SubprocessResult Run(int i, const std::vector<std::string>& args) {
    absl::StatusOr<SubprocessResult> r = fleet_->Ctl(i, args);
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      return {};
    }
    return *r;
  }

  // The committed plan's JSON, from agent `i`.
  std::string PlanJson(int i = 0) { return Run(i, {"plan", "--output", "json"}).stdout_text; }

  // Waits until the plan's phase, as agent `i` shows it, is `phase` (as
  // JSON spells it).
  bool WaitForPhase(const std::string& phase, std::chrono::seconds timeout, int i = 0) {
    return WaitUntil([&] { return PlanJson(i).find("\"" + phase + "\"") != std::string::npos; },
                     timeout);
  }

  struct Stopped {
    std::optional<int> exit_code;  // nullopt: still running after 40 s
    std::chrono::milliseconds took{0};
  };
  // SIGTERMs agent `i` and times its exit.
  Stopped StopAgent(int i) {
    const auto signalled = std::chrono::steady_clock::now();
    fleet_->agent(i)->Signal(SIGTERM);
    Stopped s;
    s.exit_code = fleet_->agent(i)->Wait(std::chrono::seconds(40));
    s.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - signalled);
    return s;
  }

  std::vector<std::string> Versions() {
    std::vector<std::string> v;
    for (int i = 0; i < FleetCluster::kNodes; ++i) v.push_back(fleet_->ServingVersion(i));
    return v;
  }

  // A string field of the plan JSON (e.g. "nonce"), "" when absent.
  std::string PlanField(const std::string& key, int i = 0) {
    std::smatch m;
    std::string json = PlanJson(i);
    if (!std::regex_search(json, m, std::regex("\"" + key + "\": \"([^\"]*)\""))) return "";
    return m[1];
  }

  // A string field of the plan's halt ("reason", "node", "message"), ""
  // when absent. Parsed, not matched: nodes carry a "reason" of their own.
  std::string HaltField(const std::string& key, int i = 0) {
    return PlanSectionField("halt", key, i);
  }
  // The same of the plan's break_glass.
  std::string BreakGlassField(const std::string& key, int i = 0) {
    return PlanSectionField("break_glass", key, i);
  }
  std::string PlanSectionField(const char* section, const std::string& key, int i) {
    boost::system::error_code ec;
    const boost::json::value view = boost::json::parse(PlanJson(i), ec);
    const boost::json::value* at = ec ? nullptr : &view;
    for (const char* step : {"plan", section}) {
      at = at && at->is_object() ? at->as_object().if_contains(step) : nullptr;
    }
    at = at && at->is_object() ? at->as_object().if_contains(key) : nullptr;
    return at && at->is_string() ? std::string(at->as_string()) : "";
  }

  // A string field of the plan's entry for `node`, "" when absent.
  std::string NodeField(const std::string& node, const std::string& key, int i = 0) {
    boost::system::error_code ec;
    const boost::json::value view = boost::json::parse(PlanJson(i), ec);
    const boost::json::value* plan =
        !ec && view.is_object() ? view.as_object().if_contains("plan") : nullptr;
    const boost::json::value* nodes =
        plan && plan->is_object() ? plan->as_object().if_contains("nodes") : nullptr;
    if (!nodes || !nodes->is_array()) return "";
    for (const boost::json::value& n : nodes->as_array()) {
      const boost::json::value* name = n.is_object() ? n.as_object().if_contains("node") : nullptr;
      if (!name || !name->is_string() || name->as_string() != node) continue;
      const boost::json::value* at = n.as_object().if_contains(key);
      return at && at->is_string() ? std::string(at->as_string()) : "";
    }
    return "";
  }

  std::unique_ptr<FleetCluster> fleet_;
  FleetCluster::Release release_;
};

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_FLEET_FLEET_FIXTURE_H_
