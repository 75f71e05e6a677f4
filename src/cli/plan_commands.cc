#include "cli/plan_commands.h"

#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <iostream>

#include "cli/fleet_status.h"
#include "cli/operation_progress.h"
#include "cli/terminal_text.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

// Marks a status as the agent's own refusal (AgentAnswered), as against
// one kmsfleetctl made itself from a flag or a file.
constexpr char kAgentAnswerUrl[] = "type.kmsfleet.dev/kmsfleetctl.AgentAnswer";

// PEM files are small; anything larger is not one.
constexpr size_t kMaxPemBytes = 64 << 10;

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxPemBytes, Symlinks::kFollow);
  if (text.ok()) return text;
  std::string why = ReasonOf(text.status()) == reason::kInputTooLarge
                        ? "larger than " + std::to_string(kMaxPemBytes) +
                              " bytes, so not a PEM file"
                        : "cannot be read: " + std::string(text.status().message());
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   flag + " " + path + ": " + why, {{"flag", flag}, {"path", path}});
}

}  // namespace

absl::Status FromAgentCall(const grpc::Status& s, const std::string& agent) {
  if (s.ok()) return absl::OkStatus();
  v1::ErrorInfo info;
  // Details without a reason (a proxy's google.rpc.Status parses as an
  // ErrorInfo too) are not an agent's refusal: found in review, they
  // printed [ERROR], exit 1, where silence is AGENT_UNREACHABLE.
  if (!s.error_details().empty() && info.ParseFromString(s.error_details()) &&
      !info.reason().empty()) {
    absl::Status out(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    out.SetPayload(kErrorInfoTypeUrl, absl::Cord(s.error_details()));
    out.SetPayload(kAgentAnswerUrl, absl::Cord(agent));
    return out;
  }
  const auto code = static_cast<absl::StatusCode>(s.error_code());
  const std::string what = "agent " + agent + ": " + absl::StatusCodeToString(code) +
                           (s.error_message().empty() ? "" : ": " + s.error_message());
  // Only silence is unreachable (exit 3: ask again); found in review, an
  // answer such as UNIMPLEMENTED or INTERNAL was reported as one too.
  // CANCELLED is silence too: kmsfleetctl never cancels a call, so an
  // agent's shutdown past its grace period (or the transport) did. (An
  // upload the agent ended for its silence gets its reason back first:
  // WithUploadStalledReason.)
  if (code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
      code == absl::StatusCode::kCancelled) {
    // The silent call's own code stays: a command past its deadline may
    // have been taken, one that never connected was not.
    return MakeError(absl::StatusCode::kUnavailable, reason::kAgentUnreachable, what,
                     {{"agent", agent}, {"grpc_code", absl::StatusCodeToString(code)}});
  }
  return MakeError(code, reason::kAgentCallFailed, what, {{"agent", agent}});
}

bool AgentAnswered(const absl::Status& s) { return s.GetPayload(kAgentAnswerUrl).has_value(); }

int ExitCodeOf(const absl::Status& s, bool changes_the_plan) {
  const std::string reason = ReasonOf(s);
  // An agent refusing for its own configuration (a cluster without TLS)
  // refuses like any other.
  if (reason == reason::kInvalidConfig && !AgentAnswered(s)) return 2;
  if (changes_the_plan) {
    const std::string grpc_code = MetadataOf(s, "grpc_code");
    const bool unanswered = reason == reason::kAgentUnreachable &&
                            (grpc_code == "DEADLINE_EXCEEDED" || grpc_code == "CANCELLED");
    if (unanswered || reason == reason::kPlanChangePending) return kExitMayHaveChanged;
  }
  const bool ask_again = reason == reason::kAgentUnreachable ||
                         reason == reason::kCommandNotTaken ||
                         reason == reason::kUploadBusy || reason == reason::kUploadStalled ||
                         reason == reason::kLeaderTransferInProgress ||
                         (reason == reason::kNotLeader && MetadataOf(s, "leader").empty());
  return ask_again ? 3 : 1;
}

namespace {

std::string ToJson(const google::protobuf::Message& m, bool whitespace) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = whitespace;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

}  // namespace

std::string ProtoJson(const google::protobuf::Message& m) { return ToJson(m, true); }

std::string ProtoJsonLine(const google::protobuf::Message& m) { return ToJson(m, false); }

void AddTlsFlags(CLI::App& command, FleetTls& tls) {
  command.add_option("--ca", tls.ca, "fleet CA (PEM); required for a TCP agent");
  command.add_option("--cert", tls.cert, "operator certificate (PEM); required for a TCP agent");
  command.add_option("--key", tls.key, "operator key (PEM); required for a TCP agent");
  command.add_option("--server-name", tls.server_name,
                     "node name the agent's certificate must carry");
  command.add_flag("--insecure", tls.insecure,
                   "plain TCP, for an agent's loopback listen.tcp with listen.insecure: true");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> FleetChannel(const std::string& agent,
                                                            const FleetTls& tls) {
  std::string target = AgentTarget(agent);
  if (target.rfind("unix:", 0) == 0 || tls.insecure) {
    return grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  }
  for (const auto& [flag, value] : {std::pair<std::string, const std::string*>{"--ca", &tls.ca},
                                    {"--cert", &tls.cert},
                                    {"--key", &tls.key}}) {
    if (value->empty()) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                       "agent " + agent + " is a TCP address, which kmsfleetctl reaches "
                       "only over mutual TLS: " + flag + " is missing (--ca, --cert and "
                       "--key are all required; --insecure only for a loopback "
                       "listen.tcp with listen.insecure: true)",
                       {{"flag", flag}, {"agent", agent}});
    }
  }
  absl::StatusOr<std::string> ca = ReadPem("--ca", tls.ca);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert = ReadPem("--cert", tls.cert);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem("--key", tls.key);
  if (!key.ok()) return key.status();
  grpc::SslCredentialsOptions options{*ca, *key, *cert};
  grpc::ChannelArguments args;
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(options), args);
}

absl::StatusOr<v1::Fence> ParseFence(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "--fence \"" + text + "\": " + why +
                         " (expected TERM/INDEX/NODE, as `kmsfleetctl plan commit` prints)",
                     {{"flag", "--fence"}, {"value", text}});
  };
  size_t first = text.find('/');
  size_t second = first == std::string::npos ? first : text.find('/', first + 1);
  if (second == std::string::npos) return bad("missing '/'");
  uint64_t numbers[2];
  std::string parts[2] = {text.substr(0, first), text.substr(first + 1, second - first - 1)};
  for (int i = 0; i < 2; ++i) {
    const std::string& p = parts[i];
    if (p.empty() || p.size() > 19 || p.find_first_not_of("0123456789") != std::string::npos) {
      return bad("\"" + p + "\" is not a decimal number");
    }
    numbers[i] = std::stoull(p);
  }
  if (numbers[0] == 0) return bad("term 0 is no coordinator's");
  v1::Fence fence;
  fence.set_term(numbers[0]);
  fence.set_index(numbers[1]);
  fence.set_in_flight(text.substr(second + 1));
  if (fence.in_flight().empty()) return bad("the node name is empty");
  return fence;
}

std::string FormatFence(const v1::Fence& fence) {
  return std::to_string(fence.term()) + "/" + std::to_string(fence.index()) + "/" +
         fence.in_flight();
}

absl::StatusOr<v1::Fence> CommitPlan(v1::Fleet::StubInterface& stub,
                                     const std::string& agent,
                                     const std::string& in_flight,
                                     const std::string& payload,
                                     std::chrono::milliseconds timeout) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  v1::ProposePlanRequest request;
  request.set_in_flight(in_flight);
  request.set_payload(payload);
  v1::ProposePlanReply reply;
  grpc::Status s = stub.ProposePlan(&context, request, &reply);
  if (!s.ok()) return FromAgentCall(s, agent);
  return reply.fence();
}

CLI::App* AddPlanCommands(CLI::App& app, PlanCommitFlags& flags) {
  CLI::App* plan = app.add_subcommand(
      "plan", "show the fleet plan: nodes, guards, audit (plan commit: a raw record)");
  plan->require_subcommand(0, 1);
  // Indented four spaces: a line of two after "Subcommands:" reads as one
  // (tests/deploy/check_completion.sh).
  plan->footer(
      "Example:\n"
      "    kmsfleetctl plan --agent 10.0.0.1:7443 --server-name cp-1 --ca ca.pem \\\n"
      "        --cert operator.pem --key operator.key --output json\n"
      "`kmsfleetctl plan commit --help` shows how to commit a raw plan record.");
  CLI::App* commit = plan->add_subcommand(
      "commit", "commit a plan record naming one node in flight; print its fence");
  commit->footer(
      "Example (prints the fence, e.g. 3/7/cp-2, that cp-2's `node swap` and `node "
      "rollback` then carry):\n"
      "  kmsfleetctl plan commit --in-flight cp-2 --agent 10.0.0.1:7443 \\\n"
      "    --ca ca.pem --cert operator.pem --key operator.key --server-name cp-1\n"
      "--agent, --output and the TLS flags may also come before `commit`; given on both "
      "sides they must agree.");
  commit->add_option("--agent", flags.agent,
                     "agent address: unix:/path or host:port of its cluster listener")
      ->capture_default_str();
  commit->add_option("--output,-o", flags.output, "table (the fence alone) or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  commit->add_option("--in-flight", flags.in_flight,
                     "the node that may disrupt its provider next (\"\" for none)")
      ->required();
  commit->add_option("--payload", flags.payload, "plan text to replicate");
  commit->add_option("--timeout-ms", flags.timeout_ms, "deadline for the commit")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  AddTlsFlags(*commit, flags.tls);
  return commit;
}

std::string RenderFenceJson(const v1::Fence& fence, const std::string& agent) {
  boost::json::object o;
  o["fence"] = FormatFence(fence);
  o["term"] = fence.term();
  o["index"] = fence.index();
  o["in_flight"] = fence.in_flight();
  o["agent"] = agent;
  return boost::json::serialize(o) + "\n";
}

int RunPlanCommit(const PlanCommitFlags& flags) {
  std::string agent = flags.agent;
  FleetTls tls = flags.tls;
  absl::StatusOr<v1::Fence> fence;
  // A follower names the coordinator; with TLS flags, ask it once there.
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = FleetChannel(agent, tls);
    if (!channel.ok()) {
      std::cerr << "kmsfleetctl: plan commit: [" << ReasonOf(channel.status()) << "] "
                << ForTerminal(std::string(channel.status().message())) << "\n";
      return 2;
    }
    auto stub = v1::Fleet::NewStub(*channel);
    fence = CommitPlan(*stub, agent, flags.in_flight, flags.payload,
                       std::chrono::milliseconds(flags.timeout_ms));
    std::string leader_address = MetadataOf(fence.status(), "leader_address");
    if (fence.ok() || ReasonOf(fence.status()) != reason::kNotLeader ||
        tls.ca.empty() || leader_address.empty()) {
      break;
    }
    agent = leader_address;
    tls.server_name = MetadataOf(fence.status(), "leader");
  }
  if (!fence.ok()) {
    const std::string reason = ReasonOf(fence.status());
    // The agent's text (message, metadata) is escaped: it is not ours.
    std::cerr << "kmsfleetctl: plan commit at " << ForTerminal(agent) << ": "
              << ForTerminal(CallRefusal(reason.empty() ? "ERROR" : reason,
                                         std::string(fence.status().message())))
              << "\n";
    const std::string leader = MetadataOf(fence.status(), "leader");
    const std::string leader_address = MetadataOf(fence.status(), "leader_address");
    if (reason == reason::kNotLeader && !leader.empty()) {
      std::cerr << "  the coordinator is " << ForTerminal(leader) << " ("
                << ForTerminal(leader_address) << "): run this there, or pass --agent "
                << ForTerminal(leader_address) << " with --ca, --cert and --key\n";
    }
    const int code = ExitCodeOf(fence.status(), /*changes_the_plan=*/true);
    if (code == kExitMayHaveChanged) {
      std::cerr << "  it may have been committed: see kmsfleetctl leader before running it "
                   "again\n";
    }
    return code;
  }
  const std::string in_flight = ForTerminal(fence->in_flight(), /*keep_newlines=*/false);
  std::cerr << "committed plan record " << fence->term() << "/" << fence->index() << " with "
            << (in_flight.empty() ? "no node" : in_flight) << " in flight\n";
  if (flags.output == "json") {
    std::cout << RenderFenceJson(*fence, agent);
  } else {
    std::cout << ForTerminal(FormatFence(*fence), /*keep_newlines=*/false) << "\n";
  }
  return 0;
}

}  // namespace kmsfleet
