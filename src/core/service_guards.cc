// The OpenBao health and rotation guards (fleet_guards.h): the services the
// provider depends on must be steady before any node is disrupted
// (reference §8.1 "Defer the upgrade while a Transit rotation is pending,
// OpenBao is failing over or restoring").
#include <optional>

#include "absl/strings/str_cat.h"
#include "guard_util.h"
#include "json_util.h"
#include "kmsfleet/core/fleet_guards.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

using internal::NodeList;
using internal::Refuse;
using internal::ValueOrNone;

struct SysHealth {
  std::optional<bool> initialized, sealed, standby;
};

// Reads the three flags from the body; an empty body reads as none.
absl::StatusOr<SysHealth> ParseSysHealth(const OpenBaoProbe& probe) {
  SysHealth health;
  if (probe.body.empty()) return health;
  const std::string what = "OpenBao health body from " + probe.address;
  KMSFLEET_ASSIGN_OR_RETURN(
      boost::json::object object,
      internal::ParseJsonObject(probe.body, what, kMaxOpenBaoHealthBytes,
                                reason::kMalformedOpenBaoHealth));
  internal::JsonFields fields(object, what, reason::kMalformedOpenBaoHealth);
  KMSFLEET_RETURN_IF_ERROR(fields.OptionalBool("initialized", &health.initialized));
  KMSFLEET_RETURN_IF_ERROR(fields.OptionalBool("sealed", &health.sealed));
  KMSFLEET_RETURN_IF_ERROR(fields.OptionalBool("standby", &health.standby));
  return health;
}

// Fills flags the body did not give from the status code OpenBao documents
// for /v1/sys/health's defaults.
void ApplyStatusCode(int status, SysHealth& h) {
  const bool standby_code = status == 429 || status == 472 || status == 473;
  if (!h.initialized) h.initialized = status != 501;
  if (!h.sealed) h.sealed = status == 503;
  if (!h.standby) h.standby = standby_code;
}

absl::Status RefuseOpenBao(std::string_view reason, const OpenBaoProbe& probe,
                           std::string_view observed, std::string_view remedy) {
  return Refuse(reason,
                absl::StrCat("OpenBao at ", ValueOrNone(probe.address), " ",
                             std::string(observed), " (HTTP ", probe.status,
                             ")."),
                remedy, {});
}

}  // namespace

absl::Status CheckOpenBaoHealth(const OpenBaoProbe& probe) {
  if (ReasonOf(probe.transport) == reason::kInputTooLarge) {
    // It answered, with more than a health body can be.
    return Refuse(reason::kMalformedOpenBaoHealth,
                  absl::StrCat("OpenBao at ", ValueOrNone(probe.address),
                               " answered with an oversized health body: ",
                               probe.transport.message(), "."),
                  "Check that openbao.address points at OpenBao.", {});
  }
  if (!probe.transport.ok()) {
    return Refuse(reason::kOpenBaoUnreachable,
                  absl::StrCat("OpenBao at ", ValueOrNone(probe.address),
                               " did not answer: ", probe.transport.message(),
                               "."),
                  "Restore OpenBao reachability before upgrading; defer "
                  "during a failover or restore.",
                  {});
  }
  KMSFLEET_ASSIGN_OR_RETURN(SysHealth h, ParseSysHealth(probe));
  ApplyStatusCode(probe.status, h);
  if (!*h.initialized) {
    return RefuseOpenBao(reason::kOpenBaoUninitialized, probe,
                         "is not initialized",
                         "Initialise or restore OpenBao first.");
  }
  if (*h.sealed) {
    return RefuseOpenBao(reason::kOpenBaoSealed, probe, "is sealed",
                         "Unseal OpenBao, then retry.");
  }
  if (*h.standby) {
    return RefuseOpenBao(reason::kOpenBaoStandby, probe,
                         "answers as a standby only",
                         "Wait for the HA failover to finish and an active "
                         "node to answer, then retry.");
  }
  if (probe.status != 200) {
    return RefuseOpenBao(reason::kOpenBaoUnreachable, probe,
                         "answered with an unexpected status",
                         "Check OpenBao's health endpoint and address.");
  }
  return absl::OkStatus();
}

namespace {

// Why one node's rotation-plan cannot be trusted, or "" when it can.
std::string UntrustedWhy(const NodeRotation& r) {
  if (r.exit_code != 0) return absl::StrCat("exit code ", r.exit_code);
  if (!r.report.ok()) return std::string(r.report.status().message());
  if (r.report->transit_metadata_status != "pass") {
    return absl::StrCat("transitMetadataStatus ",
                        ValueOrNone(r.report->transit_metadata_status));
  }
  return "";
}

}  // namespace

absl::Status CheckRotation(const std::vector<NodeRotation>& nodes,
                           bool checkpoint_acknowledged) {
  std::vector<std::string> untrusted, untrusted_text, pending, pending_text,
      checkpoint, checkpoint_text, metric, metric_text;
  for (const NodeRotation& r : nodes) {
    if (std::string why = UntrustedWhy(r); !why.empty()) {
      untrusted.push_back(r.node);
      untrusted_text.push_back(absl::StrCat(r.node, " (", why, ")"));
    } else if (std::string pending_why = RotationUnderWayWhy(*r.report);
               !pending_why.empty()) {
      pending.push_back(r.node);
      pending_text.push_back(absl::StrCat(r.node, " (", pending_why, ")"));
    } else if (std::string checkpoint_why =
                   checkpoint_acknowledged ? "" : CheckpointNotCurrentWhy(*r.report);
               !checkpoint_why.empty()) {
      checkpoint.push_back(r.node);
      checkpoint_text.push_back(absl::StrCat(r.node, " (", checkpoint_why, ")"));
    } else if (r.metric_state != "active") {
      metric.push_back(r.node);
      metric_text.push_back(absl::StrCat(
          r.node, " (metric ", ValueOrNone(r.metric_state), ")"));
    }
  }
  if (!untrusted.empty()) {
    return Refuse(reason::kRotationPlanUntrusted,
                  absl::StrCat("rotation-plan cannot be trusted on ",
                               NodeList(untrusted_text), "."),
                  "Fix OpenBao authentication or metadata reads on those "
                  "nodes until rotation-plan exits 0 with "
                  "transitMetadataStatus pass.",
                  untrusted);
  }
  if (!pending.empty()) {
    return Refuse(reason::kRotationInProgress,
                  absl::StrCat("A Transit rotation is pending on ",
                               NodeList(pending_text), "."),
                  "Let the rotation promote on every node (same active "
                  "key_id everywhere), then retry.",
                  pending);
  }
  if (!checkpoint.empty()) {
    return Refuse(reason::kStateCheckpointNotCurrent,
                  absl::StrCat("rotation-plan shows a registry checkpoint that is not "
                               "current on ",
                               NodeList(checkpoint_text), "."),
                  absl::StrCat("On those nodes ", kCheckpointRemedy, "."), checkpoint);
  }
  if (!metric.empty()) {
    return Refuse(reason::kRotationMetricDisagrees,
                  absl::StrCat("rotation-plan says active but "
                               "openbao_kms_rotation_state disagrees on ",
                               NodeList(metric_text), "."),
                  "Wait for the provider's next status refresh, then retry.",
                  metric);
  }
  return absl::OkStatus();
}

NodeRotation RotationOfPreflight(const std::string& node, const std::string& metric_state,
                                 const v1::PreflightResponse& response) {
  NodeRotation r;
  r.node = node;
  r.metric_state = metric_state;
  if (response.transit_metadata_status().empty() && !response.rotation_plan().reason().empty()) {
    r.exit_code = 1;
    r.report = MakeError(absl::StatusCode::kFailedPrecondition, response.rotation_plan().reason(),
                         response.rotation_plan().message());
    return r;
  }
  RotationReport report;
  report.name = "rotation-plan";
  report.transit_metadata_status = response.transit_metadata_status();
  report.rotation_state = response.rotation_state();
  report.pending_key_id_hash = response.pending_key_id_hash();
  report.state_checkpoint_status = response.state_checkpoint_status();
  if (response.has_active_transit_version()) {
    report.active_transit_version = response.active_transit_version();
  }
  if (response.has_latest_transit_version()) {
    report.latest_transit_version = response.latest_transit_version();
  }
  if (response.has_pending_transit_version()) {
    report.pending_transit_version = response.pending_transit_version();
  }
  r.report = report;
  return r;
}

absl::Status CheckRotationMetric(const std::vector<NodeView>& views) {
  std::vector<std::string> nodes, text;
  for (const NodeView& v : views) {
    const std::string state = v.state ? v.state->rotation_state() : "";
    if (state == "active") continue;
    nodes.push_back(v.node);
    text.push_back(absl::StrCat(v.node, " (", ValueOrNone(state), ")"));
  }
  if (nodes.empty()) return absl::OkStatus();
  return Refuse(reason::kRotationInProgress,
                absl::StrCat("openbao_kms_rotation_state is not active on ",
                             NodeList(text), "."),
                "Wait for the rotation to promote on every node; the plan "
                "continues once every node reports active.",
                nodes);
}

}  // namespace kmsfleet
