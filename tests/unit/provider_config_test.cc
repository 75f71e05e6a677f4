// The facts kmsfleet reads from the provider's own config.yaml.
#include "kmsfleet/core/provider_config.h"

#include <gtest/gtest.h>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

// The shape of upstream's deploy/config/provider-systemd.yaml (reference
// §5.1), with fields this reader does not use left in on purpose.
constexpr char kSample[] = R"(configVersion: v1alpha1
server: {socketPath: /run/openbao-kms/kms.sock, socketMode: "0660",
         metricsAddress: "127.0.0.1:8081", healthAddress: "127.0.0.1:8082"}
openbao: {address: https://bao.example.internal:8200, namespace: "",
          caCertFile: /etc/openbao-kms/tls/ca.crt,
          tlsServerName: bao.example.internal, timeout: 2s}
auth:
  method: jwt
  jwt: {source: file, jwtFile: /var/lib/openbao-kms/identity.jwt}
state: {path: /var/lib/openbao-kms/state/key-registry.json}
rotation: {mode: observed, activationDelay: 2m}
)";

TEST(ProviderConfigTest, ReadsTheFactsOfTheUpstreamSample) {
  absl::StatusOr<ProviderConfigFacts> f = ParseProviderConfig(kSample, "config.yaml");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->state_path, "/var/lib/openbao-kms/state/key-registry.json");
  EXPECT_EQ(f->openbao_address, "https://bao.example.internal:8200");
  EXPECT_EQ(f->openbao_ca_cert_file, "/etc/openbao-kms/tls/ca.crt");
  EXPECT_EQ(f->openbao_tls_server_name, "bao.example.internal");
  EXPECT_EQ(f->socket_path, "/run/openbao-kms/kms.sock");
  EXPECT_EQ(f->metrics_address, "127.0.0.1:8081");
  EXPECT_EQ(f->health_address, "127.0.0.1:8082");
}

TEST(ProviderConfigTest, AbsentFieldsAreEmptyNotErrors) {
  absl::StatusOr<ProviderConfigFacts> f =
      ParseProviderConfig("configVersion: v1alpha1\n", "config.yaml");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->state_path, "");
  EXPECT_EQ(f->openbao_address, "");
}

TEST(ProviderConfigTest, ARelativeStatePathIsRefusedNamingFileLineAndKey) {
  absl::StatusOr<ProviderConfigFacts> f =
      ParseProviderConfig("server: {}\nstate:\n  path: state/key-registry.json\n", "/etc/p.yaml");
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(ReasonOf(f.status()), reason::kInvalidConfig);
  EXPECT_EQ(MetadataOf(f.status(), "file"), "/etc/p.yaml");
  EXPECT_EQ(MetadataOf(f.status(), "line"), "3");
  EXPECT_EQ(MetadataOf(f.status(), "key"), "state.path");
  EXPECT_NE(f.status().message().find("state/key-registry.json"), std::string::npos);
}

TEST(ProviderConfigTest, AUsedFieldOfTheWrongTypeIsRefused) {
  absl::StatusOr<ProviderConfigFacts> f =
      ParseProviderConfig("state:\n  path: [a, b]\n", "p.yaml");
  EXPECT_EQ(MetadataOf(f.status(), "key"), "state.path");
  f = ParseProviderConfig("openbao: https://bao\n", "p.yaml");
  EXPECT_EQ(MetadataOf(f.status(), "key"), "openbao");
}

TEST(ProviderConfigTest, AnOpenBaoAddressThatIsNotAUrlIsRefused) {
  absl::StatusOr<ProviderConfigFacts> f =
      ParseProviderConfig("openbao: {address: bao.example:8200}\n", "p.yaml");
  EXPECT_EQ(MetadataOf(f.status(), "key"), "openbao.address");
}

TEST(ProviderConfigTest, InvalidYamlAndNonMappingRootsAreRefused) {
  EXPECT_EQ(ReasonOf(ParseProviderConfig("state: {path: [\n", "p.yaml").status()),
            reason::kInvalidConfig);
  EXPECT_EQ(ReasonOf(ParseProviderConfig("- a\n- b\n", "p.yaml").status()),
            reason::kInvalidConfig);
}

TEST(ProviderConfigTest, AnOversizedFileIsRefusedBeforeParsing) {
  std::string big(kMaxProviderConfigBytes + 1, '#');
  EXPECT_EQ(ReasonOf(ParseProviderConfig(big, "p.yaml").status()), reason::kInputTooLarge);
}

}  // namespace
}  // namespace kmsfleet
