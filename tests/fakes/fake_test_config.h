// Shared setup for the fake's subprocess tests: a provider config in a temp
// dir whose listeners use port 0 and whose socket lives beside it.
#ifndef KMSFLEET_TESTS_FAKES_FAKE_TEST_CONFIG_H_
#define KMSFLEET_TESTS_FAKES_FAKE_TEST_CONFIG_H_

#include <string>

#include <boost/json.hpp>

#include "test_process.h"

namespace kmsfleet::fake::testing {

// The string in `value`, or a marker that makes a comparison fail readably.
inline std::string Str(const boost::json::value& value) {
  if (const auto* text = value.if_string()) return std::string(*text);
  return "<not a string: " + boost::json::serialize(value) + ">";
}

inline std::string WriteProviderConfig(const TempDir& dir) {
  std::string path = dir.File("config.yaml");
  WriteFile(path,
            "configVersion: v1alpha1\n"
            "server:\n"
            "  socketPath: " + dir.File("kms.sock") + "\n"
            "  socketMode: \"0660\"\n"
            "  metricsAddress: 127.0.0.1:0\n"
            "  healthAddress: 127.0.0.1:0\n"
            "openbao: {address: https://bao.example.internal:8200, instanceId: bao-a}\n"
            "auth: {method: jwt}\n"
            "transit:\n"
            "  mountPath: transit\n"
            "  keyName: k8s-a-etcd\n"
            "  keyIdScope: {providerName: openbao-kms-a, clusterId: a,\n"
            "               transitMountId: transit-a, keyLineageId: LINEAGE}\n"
            "state: {path: " + dir.File("key-registry.json") + "}\n");
  return path;
}

}  // namespace kmsfleet::fake::testing

#endif  // KMSFLEET_TESTS_FAKES_FAKE_TEST_CONFIG_H_
