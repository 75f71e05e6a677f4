#include "kmsfleet/core/node_observation.h"

#include "kmsfleet/core/health_body.h"
#include "kmsfleet/core/provider_metrics.h"
#include "kmsfleet/core/provider_version.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

std::string MessageOf(const absl::Status& status) {
  return std::string(status.message());
}

void ObserveMetrics(const HttpResult& metrics, v1::NodeState& state) {
  if (!metrics.transport.ok()) {
    AddCondition(state, reason::kMetricsUnreachable, MessageOf(metrics.transport));
    return;
  }
  if (metrics.status != 200) {
    AddCondition(state, reason::kMetricsUnreachable,
                 "/metrics answered HTTP " + std::to_string(metrics.status));
    return;
  }
  absl::StatusOr<ProviderMetrics> facts = ExtractProviderMetrics(metrics.body);
  if (!facts.ok()) {
    AddCondition(state, ReasonOf(facts.status()), MessageOf(facts.status()));
    return;
  }
  if (facts->key_id_hash_status.ok()) {
    state.set_key_id_hash_metric(facts->key_id_hash);
  } else {
    AddCondition(state, ReasonOf(facts->key_id_hash_status),
                 MessageOf(facts->key_id_hash_status));
  }
  if (facts->build_version) {
    state.set_provider_version(*facts->build_version);
    state.set_provider_version_source("build_info");
  }
  state.set_rotation_state(facts->rotation_state);
  if (facts->rotation_state == "pending") {
    AddCondition(state, reason::kRotationInProgress,
                 "openbao_kms_rotation_state{state=\"pending\"} is 1: a key "
                 "rotation has not been promoted yet");
  }
  if (facts->key_version) state.set_key_version(*facts->key_version);
  if (facts->decrypt_key_id_errors_total) {
    state.set_decrypt_key_id_errors_total(*facts->decrypt_key_id_errors_total);
  }
  if (facts->aad_validation_errors_total) {
    state.set_aad_validation_errors_total(*facts->aad_validation_errors_total);
  }
}

void ObserveReady(const HttpResult& ready, v1::NodeState& state) {
  if (!ready.transport.ok()) {
    AddCondition(state, reason::kHealthUnreachable, MessageOf(ready.transport));
    return;
  }
  absl::StatusOr<ReadyBody> body = ParseReadyBody(ready.body);
  if (body.ok()) {
    for (const std::string& r : body->reasons) state.add_ready_reasons(r);
  }
  state.set_ready(ready.status == 200);
  if (state.ready()) return;
  std::string message = "/ready answered HTTP " + std::to_string(ready.status);
  if (!body.ok()) {
    message += " with an unreadable body: " + MessageOf(body.status());
  } else if (!body->reasons.empty()) {
    message += ", reasons:";
    for (const std::string& r : body->reasons) message += " " + r;
  }
  AddCondition(state, reason::kNotReady, message);
}

void ObserveLive(const HttpResult& live, v1::NodeState& state) {
  if (!live.transport.ok()) {
    AddCondition(state, reason::kHealthUnreachable, MessageOf(live.transport));
    return;
  }
  state.set_live(live.status == 200);
  if (!state.live()) {
    AddCondition(state, reason::kNotLive,
                 "/live answered HTTP " + std::to_string(live.status));
  }
}

void ObserveKms(const RawObservation& raw, v1::NodeState& state) {
  if (!raw.kms_status.ok()) {
    AddCondition(state, reason::kKmsSocketUnreachable,
                 MessageOf(raw.kms_status.status()));
    return;
  }
  state.set_kms_healthz(raw.kms_status->healthz());
  if (raw.kms_status->healthz() != "ok") {
    AddCondition(state, reason::kKmsUnhealthy,
                 "KMS Status healthz is \"" + raw.kms_status->healthz() + "\"");
    return;
  }
  state.set_key_id_hash_socket(raw.kms_key_id_hash);
}

}  // namespace

void AddCondition(v1::NodeState& state, std::string_view reason,
                  std::string_view message) {
  v1::Condition* condition = state.add_conditions();
  condition->set_reason(std::string(reason));
  condition->set_message(std::string(message));
}

v1::NodeState AssembleNodeState(const RawObservation& raw) {
  v1::NodeState state;
  state.set_node(raw.node);
  state.set_observed_at_unix_ms(raw.observed_at_unix_ms);
  ObserveLive(raw.live, state);
  ObserveReady(raw.ready, state);
  ObserveMetrics(raw.metrics, state);
  ObserveKms(raw, state);
  if (!state.key_id_hash_metric().empty() &&
      !state.key_id_hash_socket().empty() &&
      state.key_id_hash_metric() != state.key_id_hash_socket()) {
    AddCondition(state, reason::kKeyIdHashMismatch,
                 "metric key_id hash " + state.key_id_hash_metric() +
                     " differs from the KMS Status key_id hash " +
                     state.key_id_hash_socket());
  }
  return state;
}

std::string WhyNoMetrics(const v1::NodeState& state) {
  for (const v1::Condition& c : state.conditions()) {
    if (c.reason() == reason::kMetricsUnreachable || c.reason() == reason::kMalformedExposition ||
        c.reason() == reason::kDuplicateSeries || c.reason() == reason::kInputTooLarge) {
      return "[" + c.reason() + "] " + c.message();
    }
  }
  return "";
}

bool NeedsVersionCommand(const v1::NodeState& state) {
  return state.provider_version().empty();
}

void ApplyVersionCommand(const absl::StatusOr<std::string>& stdout_text,
                         v1::NodeState& state) {
  if (!stdout_text.ok()) {
    AddCondition(state, reason::kVersionCommandFailed,
                 MessageOf(stdout_text.status()));
    return;
  }
  absl::StatusOr<ProviderBuild> build = ParseVersionOutput(*stdout_text);
  if (!build.ok()) {
    AddCondition(state, reason::kVersionCommandFailed, MessageOf(build.status()));
    return;
  }
  state.set_provider_version(build->version);
  state.set_provider_version_source("version_command");
}

namespace {

void SetRegistryUnknown(v1::NodeState& state, std::string_view reason,
                        std::string_view message) {
  state.set_registry_known(false);
  state.clear_registry_schema_version();
  state.clear_registry_removed_records();
  state.mutable_registry()->set_reason(std::string(reason));
  state.mutable_registry()->set_message(std::string(message));
}

}  // namespace

void ApplyRegistryRead(const absl::StatusOr<std::string>& text, std::string_view path,
                       v1::NodeState& state) {
  state.clear_registry();
  if (path.empty()) {
    return SetRegistryUnknown(state, reason::kRegistryUnreadable,
                              "the agent has no key registry path configured");
  }
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      // No state yet: a definite fact, which a later registry would change.
      state.set_registry_known(true);
      state.clear_registry_schema_version();
      state.set_registry_removed_records(0);
      return;
    }
    std::string why = ReasonOf(text.status());
    if (why != reason::kInputTooLarge) why = reason::kRegistryUnreadable;
    return SetRegistryUnknown(state, why,
                              "cannot read key registry " + std::string(path) + ": " +
                                  std::string(text.status().message()));
  }
  absl::StatusOr<RegistryFacts> facts = ParseRegistryFacts(*text, path);
  if (!facts.ok()) {
    return SetRegistryUnknown(state, reason::kMalformedRegistry, MessageOf(facts.status()));
  }
  state.set_registry_known(true);
  state.set_registry_schema_version(facts->schema_version);
  state.set_registry_removed_records(facts->removed_records);
}

std::optional<RegistryFacts> RegistryFactsOf(const v1::NodeState& state) {
  if (!state.registry_known()) return std::nullopt;
  return RegistryFacts{state.registry_schema_version(), state.registry_removed_records()};
}

}  // namespace kmsfleet
