#include "cli/health_command.h"

#include <google/protobuf/unknown_field_set.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <iostream>

#include "cli/terminal_text.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"

namespace kmsfleet {
namespace {

constexpr char kHealthCheckMethod[] = "/grpc.health.v1.Health/Check";
constexpr size_t kMaxHealthResponseBytes = 1024;
constexpr int kServing = 1;

const char* HealthStatusName(int status) {
  switch (status) {
    case 0: return "UNKNOWN";
    case 1: return "SERVING";
    case 2: return "NOT_SERVING";
    case 3: return "SERVICE_UNKNOWN";
    default: return "unrecognised";
  }
}

// One Check call with an empty request (service "": the whole server).
// Errors: the agent's refusal or AGENT_UNREACHABLE (FromAgentCall), or
// INPUT_TOO_LARGE for an answer over 1 KiB.
absl::StatusOr<std::string> CallCheck(const std::shared_ptr<grpc::Channel>& channel,
                                      const HealthFlags& flags) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(flags.timeout_ms));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, kHealthCheckMethod, grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status status = done.get_future().get();
  if (!status.ok()) return FromAgentCall(status, flags.agent);
  if (response.Length() > kMaxHealthResponseBytes) {
    return MakeError(absl::StatusCode::kResourceExhausted, reason::kInputTooLarge,
                     flags.agent + " answered the health check with " +
                         std::to_string(response.Length()) + " bytes (at most " +
                         std::to_string(kMaxHealthResponseBytes) + ")",
                     {{"agent", flags.agent}});
  }
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return std::string();
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

}  // namespace

absl::StatusOr<int> ParseHealthStatus(std::string_view response) {
  google::protobuf::UnknownFieldSet fields;
  if (response.size() > kMaxHealthResponseBytes ||
      !fields.ParseFromArray(response.data(), static_cast<int>(response.size()))) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedMessage,
                     "the health check's answer is not a HealthCheckResponse (" +
                         std::to_string(response.size()) + " bytes)");
  }
  int status = 0;  // proto3: an absent enum is its zero, UNKNOWN
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.number() != 1) continue;  // a newer server's field: not ours
    if (f.type() != google::protobuf::UnknownField::TYPE_VARINT) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedMessage,
                       "the health check's status field is not a varint");
    }
    // Only the protocol's four values are a status: cut to an enum's 32
    // bits, 2^32 + 1 read SERVING (found in review).
    if (f.varint() > 3) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kMalformedMessage,
                       "the health check's status " + std::to_string(f.varint()) +
                           " is none of UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN");
    }
    status = static_cast<int>(f.varint());
  }
  return status;
}

CLI::App* AddHealthCommand(CLI::App& app, HealthFlags& flags) {
  CLI::App* health = app.add_subcommand(
      "health", "exit 0 if the agent's gRPC health check answers SERVING (a probe)");
  health->add_option("--agent", flags.agent, "agent address: unix:/path or host:port")
      ->capture_default_str();
  health->add_option("--timeout-ms", flags.timeout_ms, "deadline for the answer")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  health->add_option("--output,-o", flags.output,
                     "table (\"ADDR: SERVING\") or json (the answer, whatever it is)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  AddTlsFlags(*health, flags.tls);
  health->footer(
      "Example:\n"
      "  kmsfleetctl health --agent unix:/run/kmsfleet/agent.sock --timeout-ms 2000\n"
      "Exits 0 only for SERVING; the static pod's probes run it.");
  return health;
}

std::string RenderHealthJson(const std::string& agent, int status) {
  boost::json::object o;
  o["agent"] = agent;
  o["status"] = HealthStatusName(status);
  o["code"] = status;
  o["serving"] = status == kServing;
  return boost::json::serialize(o) + "\n";
}

int RunHealth(const HealthFlags& flags) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = FleetChannel(flags.agent, flags.tls);
  if (!channel.ok()) {
    std::cerr << "kmsfleetctl: [" << ReasonOf(channel.status()) << "] "
              << ForTerminal(std::string(channel.status().message())) << "\n";
    return 2;
  }
  absl::StatusOr<int> status = [&]() -> absl::StatusOr<int> {
    absl::StatusOr<std::string> bytes = CallCheck(*channel, flags);
    if (!bytes.ok()) return bytes.status();
    return ParseHealthStatus(*bytes);
  }();
  if (!status.ok()) {
    std::cerr << "kmsfleetctl: [" << ReasonOf(status.status()) << "] "
              << ForTerminal(std::string(status.status().message())) << "\n";
    return 1;
  }
  if (flags.output == "json") std::cout << RenderHealthJson(flags.agent, *status);
  if (*status != kServing) {
    // The answer is the health protocol's own status name, stable upstream.
    std::cerr << "kmsfleetctl: " << ForTerminal(flags.agent) << " answers "
              << HealthStatusName(*status) << " (" << *status << ")\n";
    return 1;
  }
  if (flags.output != "json") std::cout << ForTerminal(flags.agent) << ": SERVING\n";
  return 0;
}

}  // namespace kmsfleet
