// Builders of fleet observations for the guard and plan machine tests.
#ifndef KMSFLEET_TESTS_UNIT_FLEET_TEST_UTIL_H_
#define KMSFLEET_TESTS_UNIT_FLEET_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "kmsfleet/core/fleet_guards.h"

namespace kmsfleet::testing {

inline constexpr char kHashA[] = "UkPT2pXxYomOU_jD-ogCOXoOMmGd-JxBHK1XETCA4ps";
inline constexpr char kHashB[] = "I0yMMn4cdayH6jzma04Da_QgfUM-VqA9_5_0DoIBP58";
inline constexpr char kSchema[] = "keyregistry.openbao-kms/v1alpha1";

// A live, ready node on `version` reporting `hash` in metrics and on its
// socket, rotation active, registry with no removed records.
inline NodeView HealthyView(const std::string& node, const std::string& version,
                            const std::string& hash = kHashA,
                            int64_t observed_at_ms = 1000) {
  NodeView view;
  view.node = node;
  v1::NodeState s;
  s.set_node(node);
  s.set_provider_version(version);
  s.set_live(true);
  s.set_ready(true);
  s.set_key_id_hash_metric(hash);
  s.set_key_id_hash_socket(hash);
  s.set_rotation_state("active");
  s.set_key_version(3);
  s.set_observed_at_unix_ms(observed_at_ms);
  s.set_apiserver_restart_configured(true);
  view.state = s;
  view.registry = RegistryFacts{kSchema, 0};
  return view;
}

inline std::vector<NodeView> HealthyFleet(const std::vector<std::string>& nodes,
                                          const std::string& version,
                                          int64_t observed_at_ms = 1000) {
  std::vector<NodeView> views;
  for (const std::string& n : nodes) {
    views.push_back(HealthyView(n, version, kHashA, observed_at_ms));
  }
  return views;
}

}  // namespace kmsfleet::testing

#endif  // KMSFLEET_TESTS_UNIT_FLEET_TEST_UTIL_H_
