// `probe` (reference §2.5): a real KMS v2 client round trip over the unix
// socket, so it works against this fake's `serve` and, in principle, against
// the real provider. Loads no config and no scenario-driven results.
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <random>

#include <grpcpp/grpcpp.h>

#include "commands.h"
#include "duration.h"
#include "k8s/kms/v2/api.grpc.pb.h"
#include "key_material.h"

namespace kmsfleet::fake {
namespace {

constexpr char kDefaultSocket[] = "/run/openbao-kms/kms.sock";

struct ProbeRun {
  std::string socket;
  std::optional<std::string> expected_key_id;
  std::chrono::system_clock::time_point deadline;
  Report report{"probe", {}};

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(deadline);
    return context;
  }
  bool Failed() const { return report.HasFailures(); }
};

std::string RpcError(const std::string& rpc, const grpc::Status& status) {
  return rpc + " failed: code " + std::to_string(status.error_code()) + ": " +
         status.error_message();
}

void CheckLocal(ProbeRun& run) {
  uid_t uid = ::geteuid();
  if (uid == 0) {
    run.report.Add("client.identity", "Client identity", CheckStatus::kWarn,
                   "root does not prove non-root socket access");
  } else {
    run.report.Add("client.identity", "Client identity", CheckStatus::kPass,
                   "uid=" + std::to_string(uid) + " gid=" + std::to_string(::getegid()));
  }
  struct stat info {};
  std::string problem;
  if (run.socket.empty() || run.socket.front() != '/') {
    problem = "socket path must be absolute";
  } else if (::lstat(run.socket.c_str(), &info) != 0) {
    problem = "stat " + run.socket + ": no such file or directory";
  } else if (S_ISLNK(info.st_mode)) {
    problem = "final path component is a symlink";
  } else if (!S_ISSOCK(info.st_mode)) {
    problem = run.socket + " is not a unix socket";
  }
  if (!problem.empty()) {
    run.report.Add("socket.path", "Socket path", CheckStatus::kFail, problem);
    return;
  }
  run.report.Add("socket.path", "Socket path", CheckStatus::kPass, run.socket);
  if (info.st_uid == uid) {
    run.report.Add("socket.access_scope", "Socket access scope", CheckStatus::kWarn,
                   "caller owns the socket; run as the API server identity to "
                   "prove its access");
  } else {
    run.report.Add("socket.access_scope", "Socket access scope", CheckStatus::kPass,
                   "caller reaches the socket through its group");
  }
}

std::string CheckStatusRpc(ProbeRun& run, v2::KeyManagementService::Stub& stub) {
  v2::StatusResponse status;
  grpc::Status rpc = stub.Status(run.Context().get(), v2::StatusRequest(), &status);
  std::string problem;
  if (!rpc.ok()) {
    problem = RpcError("Status", rpc);
  } else if (status.version() != "v2") {
    problem = "unexpected KMS API version \"" + status.version() + "\"";
  } else if (status.healthz() != "ok" || status.key_id().empty()) {
    problem = "provider reports healthz=" + status.healthz();
  }
  if (!problem.empty()) {
    run.report.Add("kms.status", "KMS Status", CheckStatus::kFail, problem);
    return "";
  }
  run.report.Add("kms.status", "KMS Status", CheckStatus::kPass, "version=v2 healthz=ok");
  return status.key_id();
}

void CheckRoundTrip(ProbeRun& run, v2::KeyManagementService::Stub& stub,
                    const std::string& status_key_id) {
  std::string plaintext(32, '\0');
  std::random_device random;
  for (char& c : plaintext) c = static_cast<char>(random());
  v2::EncryptRequest encrypt;
  encrypt.set_plaintext(plaintext);
  encrypt.set_uid("probe");
  v2::EncryptResponse encrypted;
  grpc::Status rpc = stub.Encrypt(run.Context().get(), encrypt, &encrypted);
  if (!rpc.ok() || encrypted.key_id() != status_key_id) {
    run.report.Add("kms.encrypt", "KMS Encrypt", CheckStatus::kFail,
                   rpc.ok() ? "key changed during probe; wait for rotation "
                              "convergence and retry"
                            : RpcError("Encrypt", rpc));
    return;
  }
  run.report.Add("kms.encrypt", "KMS Encrypt", CheckStatus::kPass,
                 "encrypted 32 random bytes");
  v2::DecryptRequest decrypt;
  decrypt.set_ciphertext(encrypted.ciphertext());
  decrypt.set_uid("probe");
  decrypt.set_key_id(encrypted.key_id());
  *decrypt.mutable_annotations() = encrypted.annotations();
  v2::DecryptResponse decrypted;
  rpc = stub.Decrypt(run.Context().get(), decrypt, &decrypted);
  if (!rpc.ok() || decrypted.plaintext() != plaintext) {
    run.report.Add("kms.decrypt", "KMS Decrypt", CheckStatus::kFail,
                   rpc.ok() ? "decrypted bytes differ from the probe plaintext"
                            : RpcError("Decrypt", rpc));
    return;
  }
  run.report.Add("kms.decrypt", "KMS Decrypt", CheckStatus::kPass, "round trip matched");
}

void CheckKms(ProbeRun& run) {
  auto channel = grpc::CreateChannel("unix:" + run.socket,
                                     grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(run.deadline)) {
    run.report.Add("socket.connect", "Socket connect", CheckStatus::kFail,
                   "connect unix:" + run.socket + ": no listener before the deadline");
    return;
  }
  run.report.Add("socket.connect", "Socket connect", CheckStatus::kPass, "connected");
  auto stub = v2::KeyManagementService::NewStub(channel);
  std::string key_id = CheckStatusRpc(run, *stub);
  if (run.Failed()) return;
  CheckRoundTrip(run, *stub, key_id);
  if (run.Failed()) return;
  if (run.expected_key_id && *run.expected_key_id != key_id) {
    run.report.Add("kms.key_id", "Active key ID", CheckStatus::kFail,
                   "active key differs; check node identity and rotation convergence");
    return;
  }
  // The full raw key_id, as upstream prints it (reference §2.5).
  run.report.Add("kms.key_id", "Active key ID", CheckStatus::kPass, key_id);
}

// Checks after a failure are reported as skipped rather than left out, so a
// reader never mistakes an absent check for a pass.
void AddSkips(Report& report) {
  static const std::pair<std::string_view, std::string_view> kAll[] = {
      {"client.identity", "Client identity"}, {"socket.path", "Socket path"},
      {"socket.access_scope", "Socket access scope"},
      {"socket.connect", "Socket connect"}, {"kms.status", "KMS Status"},
      {"kms.encrypt", "KMS Encrypt"}, {"kms.decrypt", "KMS Decrypt"},
      {"kms.key_id", "Active key ID"}};
  for (const auto& [id, title] : kAll) {
    bool present = false;
    for (const Check& check : report.checks) present |= check.id == id;
    if (!present) report.Add(id, title, CheckStatus::kSkip, "prerequisite failed");
  }
}

}  // namespace

int RunProbe(CommandContext& ctx) {
  int exit_code = kExitOk;
  std::optional<OutputFormat> format = ctx.Output(&exit_code);
  if (!format) return exit_code;
  ProbeRun run;
  run.socket = ctx.args.Flag("socket", kDefaultSocket);
  if (ctx.args.Has("expected-key-id")) {
    run.expected_key_id = ctx.args.Flag("expected-key-id");
    if (!IsWellFormedKeyId(*run.expected_key_id)) {
      return ctx.Fail(kExitUsage, "invalid --expected-key-id: key_id malformed");
    }
  }
  const std::string timeout_text = ctx.args.Flag("timeout", "10s");
  auto timeout = ParseGoDuration(timeout_text);
  if (!timeout) {
    return ctx.Fail(kExitUsage, "invalid argument \"" + timeout_text +
                                    "\" for \"--timeout\" flag: time: invalid duration \"" +
                                    timeout_text + "\"");
  }
  run.deadline = std::chrono::system_clock::now() +
                 std::chrono::duration_cast<std::chrono::system_clock::duration>(*timeout);
  CheckLocal(run);
  if (!run.Failed()) CheckKms(run);
  AddSkips(run.report);
  std::cout << RenderReport(run.report, *format);
  if (run.Failed()) return ctx.Fail(kExitCheckFailed, "running provider probe failed");
  return kExitOk;
}

}  // namespace kmsfleet::fake
