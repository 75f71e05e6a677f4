#include "tls_trust.h"

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {

absl::Status UseTrustStore(boost::asio::ssl::context& ctx, const std::string& ca_file) {
  ctx.set_verify_mode(boost::asio::ssl::verify_peer);
  boost::system::error_code ec;
  if (ca_file.empty()) {
    ctx.set_default_verify_paths(ec);
  } else {
    ctx.load_verify_file(ca_file, ec);
  }
  if (!ec) return absl::OkStatus();
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   "cannot load the TLS trust store " + ca_file + ": " + ec.message(),
                   {{"file", ca_file}});
}

}  // namespace kmsfleet
