// `rotation-plan` and `verify-rotation` (reference §2.6): a key/value report
// built from the scenario, then the scenario's rotation_plan overrides, so a
// test can produce any shape an old or new binary might print.
#include <iostream>

#include <boost/json.hpp>

#include "commands.h"
#include "json_pretty.h"
#include "key_material.h"
#include "kmsfleet/node/key_id_hash.h"
#include "version_info.h"

namespace kmsfleet::fake {
namespace {

constexpr char kLimitations[] =
    "local registry and Transit metadata cannot prove every Kubernetes object "
    "or retained backup has been rewritten";

void AddStateFields(const Scenario& s, boost::json::object& out) {
  const std::string active = s.ActiveKeyId();
  const bool pending = s.rotation_state == "pending";
  if (active.empty()) {
    out["stateLoaded"] = false;
    out["stateCheckpointLoaded"] = false;
    out["stateCheckpointStatus"] = "absent";
    out["stateBootstrapEligible"] = true;
    out["stateBootstrapReason"] = "initial state for an unrotated key (latest_version=1)";
    return;
  }
  // Each promotion and each pending observation bumps the generation.
  const int generation = s.key_version + (pending ? 1 : 0);
  out["stateLoaded"] = true;
  out["stateGeneration"] = generation;
  out["stateHash"] = StateHash(active, generation);
  out["stateCheckpointLoaded"] = true;
  out["stateCheckpointStatus"] = "current";
  out["stateCheckpointGeneration"] = generation;
  out["stateCheckpointHash"] = StateHash(active, generation);
}

boost::json::object BuildReport(const Scenario& s, const std::string& version, bool verify) {
  boost::json::object out;
  const std::string active = s.ActiveKeyId();
  const bool pending = s.rotation_state == "pending";
  out["name"] = verify ? "verify-rotation" : "rotation-plan";
  // The live Transit metadata check came after 0.1.0-preview.3 (reference
  // §2.6, Unreleased): the released previews print no status and report
  // the local registry only.
  if (!PredatesTransitMetadataCheck(version)) out["transitMetadataStatus"] = "pass";
  AddStateFields(s, out);
  out["rotationState"] = s.rotation_state;
  if (!active.empty()) {
    out["activeKeyIdHash"] = kmsfleet::KeyIdHash(active);
    out["activeTransitVersion"] = s.key_version;
  }
  out["latestTransitVersion"] = s.key_version + (pending ? 1 : 0);
  if (pending) {
    out["pendingKeyIdHash"] = kmsfleet::KeyIdHash(s.PendingKeyId());
    out["pendingTransitVersion"] = s.key_version + 1;
    out["pendingStableObservationCount"] = 1;  // below the default 3: not stable
  }
  if (verify) {
    out["confidence"] = "limited";
    out["limitations"] = kLimitations;
  }
  return out;
}

void ApplyOverrides(const Scenario& s, boost::json::object& report) {
  for (const auto& [key, value] : s.rotation_plan) {
    if (value.is_null()) {
      report.erase(key);
    } else {
      report[key] = value;
    }
  }
  // A failed metadata read always carries a (redacted) error.
  const auto* status = report.if_contains("transitMetadataStatus");
  if (status && status->is_string() && status->as_string() == "fail" &&
      !report.contains("transitMetadataError")) {
    report["transitMetadataError"] = "read transit key metadata: openbao_unavailable";
  }
}

std::string RenderText(const boost::json::object& report) {
  std::string out = std::string(report.at("name").as_string()) + "\n";
  for (const auto& [key, value] : report) {
    if (key == "name") continue;
    out += std::string(key) + ": ";
    out += value.is_string() ? std::string(value.as_string())
                             : boost::json::serialize(value);
    out += "\n";
  }
  return out;
}

}  // namespace

int RunRotationPlan(CommandContext& ctx, bool verify) {
  int exit_code = kExitOk;
  std::optional<OutputFormat> format = ctx.Output(&exit_code);
  if (!format) return exit_code;
  if (!ctx.LoadConfig(&exit_code)) return exit_code;
  std::shared_ptr<const Scenario> scenario = ctx.scenario.Current();
  boost::json::object report = BuildReport(*scenario, ctx.version.version, verify);
  ApplyOverrides(*scenario, report);
  if (!report.contains("name")) report["name"] = verify ? "verify-rotation" : "rotation-plan";
  std::cout << (*format == OutputFormat::kJson ? PrettyJson(report) + "\n"
                                                : RenderText(report));
  const auto* status = report.if_contains("transitMetadataStatus");
  if (status && status->is_string() && status->as_string() == "fail") {
    return ctx.Fail(kExitCheckFailed, "transit metadata check failed; the local "
                                      "state shown says nothing about OpenBao");
  }
  return kExitOk;
}

}  // namespace kmsfleet::fake
