#include "kmsfleet/node/openbao_health.h"

#include <string>
#include <string_view>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/http_get.h"

namespace kmsfleet {
namespace {

constexpr std::string_view kHealthPath = "/v1/sys/health";

// `address` may end in '/' or carry a path prefix (OpenBao behind a
// proxy); the health path goes after it.
std::string HealthUrl(std::string_view address) {
  while (!address.empty() && address.back() == '/') address.remove_suffix(1);
  return std::string(address) + std::string(kHealthPath);
}

absl::Status Unreachable(const std::string& address, const absl::Status& cause) {
  std::string why = ReasonOf(cause);
  return MakeError(absl::StatusCode::kUnavailable, reason::kOpenBaoUnreachable,
                   std::string(cause.message()),
                   {{"address", address}, {"cause", why.empty() ? "UNKNOWN" : why}});
}

}  // namespace

OpenBaoProbe ProbeOpenBaoHealth(const ProviderConfigFacts& provider,
                                std::chrono::milliseconds timeout) {
  OpenBaoProbe probe;
  probe.address = provider.openbao_address;
  if (probe.address.empty()) {
    probe.transport = Unreachable(
        "", MakeError(absl::StatusCode::kFailedPrecondition, reason::kInvalidConfig,
                      "the provider's config sets no openbao.address"));
    return probe;
  }
  absl::StatusOr<HttpUrl> url = ParseHttpOrHttpsUrl(HealthUrl(probe.address));
  if (!url.ok()) {
    probe.transport = Unreachable(probe.address, url.status());
    return probe;
  }
  HttpGetOptions options;
  options.connect_timeout = timeout;
  options.total_timeout = timeout;
  options.max_body_bytes = kMaxOpenBaoHealthBytes;
  options.ca_file = provider.openbao_ca_cert_file;
  options.tls_server_name = provider.openbao_tls_server_name;
  absl::StatusOr<HttpResponse> response = HttpGet(*url, options);
  if (!response.ok()) {
    // An oversized body is an answer, just not one we accept: keep its
    // reason so the guard can call it malformed rather than unreachable.
    probe.transport = ReasonOf(response.status()) == reason::kInputTooLarge
                          ? response.status()
                          : Unreachable(probe.address, response.status());
    return probe;
  }
  probe.status = response->status;
  probe.body = std::move(response->body);
  return probe;
}

}  // namespace kmsfleet
