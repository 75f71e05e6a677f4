#include "cli/node_commands.h"

#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <random>

#include "cli/fleet_status.h"
#include "cli/operation_progress.h"
#include "cli/plan_commands.h"
#include "cli/terminal_text.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/swap_machine.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {
namespace {

using Stub = v1::Agent::Stub;

// The operation goes on after the command stopped waiting for it.
constexpr int kExitStillRunning = 4;

void SetDeadline(grpc::ClientContext& ctx, const NodeFlags& f) {
  ctx.set_deadline(f.deadline);
}

// Prints "[REASON] message", as every refusal is printed: the agent's
// reason, or FromAgentCall's for a call without one (AGENT_UNREACHABLE:
// no answer; AGENT_CALL_FAILED: an answer such as UNIMPLEMENTED); the
// agent's text is escaped. Exit 3 ("ask again") keeps docs/cli.md's list.
int RpcFailed(const std::string& what, const grpc::Status& s, const NodeFlags& f) {
  const absl::Status status = FromAgentCall(s, f.agent);
  const std::string reason = ReasonOf(status);
  std::cerr << "kmsfleetctl: "
            << ForTerminal(what + ": " + CallRefusal(reason.empty() ? "ERROR" : reason,
                                                     std::string(status.message())))
            << "\n";
  return reason == reason::kAgentUnreachable ||
                 status.code() == absl::StatusCode::kUnavailable ||
                 status.code() == absl::StatusCode::kUnimplemented
             ? 3
             : 1;
}

// An agent on this machine reads a path in its own working directory (/),
// so a relative one typed here is made absolute against this one's; a
// remote agent refuses it (SOURCE_NOT_ALLOWED).
std::string ForTheAgent(const NodeFlags& f, const std::string& path) {
  if (!AgentTarget(f.agent).starts_with("unix:") || path.empty() || path.front() == '/' ||
      path.find("://") != std::string::npos) {
    return path;
  }
  // Not normalised: "link/.." is the link target's parent to the kernel.
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  return ec ? path : absolute.string();
}

int RunStage(Stub& stub, const NodeFlags& f) {
  v1::StageRequest req;
  req.set_version(f.version);
  req.set_source(ForTheAgent(f, f.source));
  req.set_checksums(ForTheAgent(f, f.checksums));
  req.set_signature(ForTheAgent(f, f.signature));
  req.set_artifact_name(f.artifact_name);
  req.set_image(f.image);
  req.set_image_ref(ForTheAgent(f, f.image_ref));
  v1::StageResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, f);
  grpc::Status s = stub.Stage(&ctx, req, &resp);
  if (!s.ok()) return RpcFailed("stage " + f.version, s, f);
  std::cout << ProtoJson(resp);
  return 0;
}

int RunPreflight(Stub& stub, const NodeFlags& f) {
  v1::PreflightRequest req;
  req.set_version(f.version);
  v1::PreflightResponse resp;
  grpc::ClientContext ctx;
  SetDeadline(ctx, f);
  grpc::Status s = stub.Preflight(&ctx, req, &resp);
  if (!s.ok()) return RpcFailed("preflight " + f.version, s, f);
  std::cout << ProtoJson(resp);
  // Judged here too: an agent from before `passed` counted the checkpoint
  // answers passed for a swap it then refuses.
  RotationReport checkpoint;
  checkpoint.state_checkpoint_status = resp.state_checkpoint_status();
  const std::string checkpoint_why = CheckpointNotCurrentWhy(checkpoint);
  if (resp.passed() && checkpoint_why.empty()) return 0;
  // A refusal is said on stderr too, like every other command's: a script
  // that keeps stdout for the JSON still shows the operator why.
  for (const v1::Condition* c : {&resp.blocking(), &resp.rotation_plan()}) {
    if (c->reason().empty()) continue;
    std::cerr << "kmsfleetctl: preflight " << f.version << ": ["
              << ForTerminal(c->reason(), /*keep_newlines=*/false) << "] "
              << ForTerminal(c->message()) << "\n";
  }
  if (!checkpoint_why.empty()) {
    std::cerr << "kmsfleetctl: preflight " << f.version << ": ["
              << reason::kStateCheckpointNotCurrent << "] rotation-plan reports "
              << ForTerminal(checkpoint_why) << ", so a swap to " << f.version
              << " is refused: " << kCheckpointRemedy << " (by hand: `node swap --acknowledge "
              << reason::kAckStateCheckpointNotCurrent << "`)\n";
  }
  return 1;
}

// Follows the operation until its journal is closed; prints a line per
// phase change and the refusal, if any, to stderr, and the final operation
// as JSON on stdout.
int Follow(Stub& stub, const v1::Operation& started, const NodeFlags& f) {
  v1::Operation last = started;
  OperationProgress progress;
  if (!f.no_wait && !started.done()) {
    v1::GetOperationRequest req;
    req.set_operation_id(started.operation_id());
    grpc::ClientContext ctx;
    SetDeadline(ctx, f);
    auto reader = stub.WatchOperation(&ctx, req);
    v1::Operation op;
    while (reader->Read(&op)) {
      if (std::optional<std::string> line = progress.Next(op)) {
        std::cerr << ForTerminal(*line, /*keep_newlines=*/false) << "\n";  // the agent's text
      }
      last = op;
    }
    grpc::Status s = reader->Finish();
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && !last.done()) {
      // The wait ended, not the operation: a script must not take it for a
      // failure and start a rollback while the swap goes on.
      const std::string id = ForTerminal(last.operation_id(), /*keep_newlines=*/false);
      // No phase: the watch never got the operation, still being admitted.
      const std::string where =
          last.phase().empty() ? "is still being admitted (it starts or is refused in a moment)"
                               : "is still running (phase " +
                                     ForTerminal(last.phase(), /*keep_newlines=*/false) + ")";
      std::cerr << "kmsfleetctl: " << id << " " << where << "; the wait ended after --timeout-ms "
                << f.timeout_ms << ". Follow it with: kmsfleetctl node operation --id " << id
                << "\n";
      std::cout << ProtoJson(last);
      return kExitStillRunning;
    }
    if (!s.ok() && !last.done() &&
        ReasonOf(FromAgentCall(s, f.agent)) == reason::kAgentUnreachable) {
      // The watch was cut, not (as far as anyone knows) the operation: the
      // connection dropped, or the agent is shutting down, which leaves
      // it for its next start. Neither "failed" nor "ask again" is true.
      // An agent's refusal of the watch is printed as one, below.
      RpcFailed("watch " + started.operation_id(), s, f);
      const std::string id = ForTerminal(last.operation_id(), /*keep_newlines=*/false);
      std::cerr << "kmsfleetctl: " << id << " may still be running (phase "
                << ForTerminal(last.phase(), /*keep_newlines=*/false)
                << "): follow it with: kmsfleetctl node operation --id " << id << "\n";
      std::cout << ProtoJson(last);
      return kExitStillRunning;
    }
    if (!s.ok()) return RpcFailed("watch " + started.operation_id(), s, f);
  }
  if (std::string refusal = OperationRefusal(last); !refusal.empty()) {
    std::cerr << "kmsfleetctl: " << ForTerminal(last.operation_id() + ": " + refusal) << "\n";
  }
  if (std::string ignored = IgnoredAcknowledgement(last, f.acknowledge); !ignored.empty()) {
    std::cerr << "kmsfleetctl: " << ignored << "\n";
  }
  std::cout << ProtoJson(last);
  // Not waited for and still running: accepted. Ended: as if waited for.
  if (f.no_wait && !last.done()) return 0;
  return last.phase() == "Stable" && last.done() ? 0 : 1;
}

// The id the agent would give an operation sent without one. Chosen here
// instead, so that a start call that gets no answer can still name the
// operation it may have started (the agent starts one operation per id).
std::string ChooseOperationId() {
  std::random_device rd;
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  return NewOperationId(now_ms, rd());
}

// A start call that got no answer may still have reached the agent. Past
// --timeout-ms, or cancelled by the agent's shutdown, it most likely did:
// exit 4, as a wait that ended while the operation ran, with the
// operation (its id alone) on stdout, not 3, whose "ask again" a script
// would follow with a second operation under a new id. UNAVAILABLE is
// mostly a connection that never opened: exit 3, naming the id under
// which asking again is safe all the same (the agent starts one
// operation per id).
int StartFailed(const std::string& what, const std::string& id, const grpc::Status& s,
                const NodeFlags& f) {
  const int code = RpcFailed(what, s, f);
  if (ReasonOf(FromAgentCall(s, f.agent)) != reason::kAgentUnreachable) return code;
  const std::string shown = ForTerminal(id, /*keep_newlines=*/false);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
    std::cerr << "kmsfleetctl: ask again with --operation-id " << shown
              << ": had this call reached the agent, that starts nothing new\n";
    return code;
  }
  std::cerr << "kmsfleetctl: operation " << shown << " may have started: see it with "
            << "kmsfleetctl node operation --id " << shown << " (asking again with "
            << "--operation-id " << shown << " starts nothing new)\n";
  v1::Operation unknown;
  unknown.set_operation_id(id);
  std::cout << ProtoJson(unknown);
  return kExitStillRunning;
}

// Starts an operation with `start` (Swap or Rollback) and follows it.
template <typename Request>
int StartAndFollow(Stub& stub, const NodeFlags& f, const std::string& what,
                   grpc::Status (Stub::*start)(grpc::ClientContext*, const Request&,
                                               v1::Operation*),
                   Request req) {
  req.set_expected_key_id_hash(f.expected_key_id_hash);
  req.set_stabilization_ms(f.stabilization_ms);
  req.set_operation_id(f.operation_id.empty() ? ChooseOperationId() : f.operation_id);
  if (!f.fence.empty()) {
    absl::StatusOr<v1::Fence> fence = ParseFence(f.fence);
    if (!fence.ok()) {
      std::cerr << "kmsfleetctl: [" << ReasonOf(fence.status()) << "] "
                << ForTerminal(std::string(fence.status().message())) << "\n";
      return 2;
    }
    *req.mutable_fence() = *fence;
  }
  v1::Operation op;
  grpc::ClientContext ctx;
  SetDeadline(ctx, f);
  grpc::Status s = (stub.*start)(&ctx, req, &op);
  if (!s.ok()) return StartFailed(what, req.operation_id(), s, f);
  return Follow(stub, op, f);
}

int RunSwap(Stub& stub, const NodeFlags& f) {
  v1::SwapRequest req;
  req.set_version(f.version);
  req.set_expected_staged_digest(f.expected_staged_digest);
  for (const std::string& code : f.acknowledge) req.add_acknowledgements(code);
  return StartAndFollow(stub, f, "swap to " + f.version, &Stub::Swap, std::move(req));
}

int RunRollback(Stub& stub, const NodeFlags& f) {
  v1::RollbackRequest req;
  req.set_of_operation_id(f.of_operation_id);
  return StartAndFollow(stub, f, "rollback of " + f.of_operation_id, &Stub::Rollback,
                        std::move(req));
}

int RunGet(Stub& stub, const NodeFlags& f) {
  v1::GetOperationRequest req;
  req.set_operation_id(f.operation_id);
  v1::Operation op;
  grpc::ClientContext ctx;
  SetDeadline(ctx, f);
  grpc::Status s = stub.GetOperation(&ctx, req, &op);
  if (!s.ok() && !f.no_wait &&
      ReasonOf(FromAgentCall(s, f.agent)) == reason::kOperationBeingAdmitted) {
    // The watch waits for the admission's end: the operation, or NotFound.
    op.set_operation_id(f.operation_id);
    return Follow(stub, op, f);
  }
  if (!s.ok()) return RpcFailed("operation " + f.operation_id, s, f);
  return Follow(stub, op, f);
}

}  // namespace

CLI::App* AddNodeCommands(CLI::App& app, NodeFlags& f) {
  CLI::App* node = app.add_subcommand("node", "drive one node's executor");
  node->require_subcommand(1);
  node->add_option("--agent", f.agent, "agent address: unix:/path or host:port")
      ->capture_default_str();
  AddTlsFlags(*node, f.tls);
  node->add_option("--timeout-ms", f.timeout_ms, "deadline for the whole command")
      ->check(CLI::Range(1, 3600000))
      ->capture_default_str();
  CLI::App* stage = node->add_subcommand("stage", "verify and store a release");
  stage->add_option("--version", f.version, "release version (SemVer)")->required();
  stage->add_option("--source", f.source, "path or http(s):// URL of the release binary")->required();
  stage->add_option("--checksums", f.checksums, "path of checksums.txt")->required();
  stage->add_option("--signature", f.signature, "path of checksums.txt's signature");
  stage->add_option("--artifact-name", f.artifact_name,
                    "file name in checksums.txt (default: the source's)");
  stage->add_option("--image", f.image,
                    "static-pod node: the image to run, repo@sha256:<digest>");
  stage->add_option("--image-ref", f.image_ref,
                    "static-pod node: the release's static-pod kit (.tar.gz, listed in "
                    "checksums.txt), whose image-ref.txt must name --image");
  CLI::App* pre = node->add_subcommand("preflight", "doctor a staged release");
  pre->add_option("--version", f.version, "staged version")->required();
  for (CLI::App* op : {node->add_subcommand("swap", "install a staged version"),
                       node->add_subcommand("rollback", "undo a Stable swap")}) {
    op->add_option("--expected-key-id-hash", f.expected_key_id_hash,
                   "hash the provider must serve (default: the current one)");
    op->add_option("--stabilization-ms", f.stabilization_ms,
                   "continuous /ready window (default: executor config)");
    op->add_option("--operation-id", f.operation_id,
                   "idempotency key (default: a new op-UNIXMS-N, printed if the start goes "
                   "unanswered)");
    op->add_option("--fence", f.fence,
                   "TERM/INDEX/NODE: the coordinator's fence (`plan commit` "
                   "prints it); required when the agent is in a cluster");
    op->add_flag("--no-wait", f.no_wait, "return once the operation started");
  }
  node->get_subcommand("swap")
      ->add_option("--version", f.version, "staged version to install")
      ->required();
  node->get_subcommand("swap")->add_option(
      "--expected-digest", f.expected_staged_digest,
      "refuse unless the staged release has this digest (`node stage` prints it as "
      "staged_digest)");
  // Checked here too: an agent from before SwapRequest.acknowledgements
  // would take any word in silence.
  node->get_subcommand("swap")
      ->add_option("--acknowledge", f.acknowledge,
                   "STATE_CHECKPOINT_NOT_CURRENT: swap although rotation-plan reports the "
                   "registry checkpoint not current (after `bao-kms-provider verify-key`)")
      ->check(CLI::IsMember({std::string(reason::kAckStateCheckpointNotCurrent)}));
  node->get_subcommand("rollback")
      ->add_option("--of", f.of_operation_id, "the Stable swap to undo")
      ->required();
  CLI::App* get = node->add_subcommand("operation", "show or follow an operation");
  get->add_option("--id", f.operation_id, "operation id")->required();
  get->add_flag("--no-wait", f.no_wait, "do not follow it");
  // The node's flags come before the subcommand, so its example names none
  // of a subcommand's (tests/deploy/check_completion.sh reads every flag in
  // --help as the command's); indented four spaces, as a line of two after
  // "Subcommands:" reads as one.
  node->footer(
      "Example: the flags above come before the subcommand, its own after it (each "
      "subcommand's --help has an example):\n"
      "    kmsfleetctl node --agent 10.0.0.2:7443 --ca ca.pem --cert operator.pem \\\n"
      "        --key operator.key --server-name cp-2 --timeout-ms 900000 preflight ...");
  stage->footer(
      "Example:\n"
      "  kmsfleetctl node stage --version 0.2.0 \\\n"
      "    --source /srv/releases/bao-kms-provider_0.2.0_linux_amd64 \\\n"
      "    --checksums /srv/releases/checksums.txt --signature /srv/releases/checksums.txt.sig\n"
      "The agent reads the paths on its node (not /tmp or /home under the packaged unit) "
      "and prints the staged artifact as JSON.");
  pre->footer("Example:\n  kmsfleetctl node preflight --version 0.2.0");
  node->get_subcommand("swap")->footer(
      "Example:\n"
      "  kmsfleetctl node swap --version 0.2.0 --fence 3/7/cp-2 \\\n"
      "    --operation-id upgrade-cp2-0.2.0\n"
      "The fence is what `kmsfleetctl plan commit` printed for cp-2; an agent outside a "
      "cluster (standalone: true) takes none.");
  node->get_subcommand("rollback")->footer(
      "Example:\n"
      "  kmsfleetctl node rollback --of upgrade-cp2-0.2.0 --fence 3/7/cp-2 \\\n"
      "    --operation-id rollback-cp2-0.2.0");
  get->footer("Example:\n  kmsfleetctl node operation --id upgrade-cp2-0.2.0 --no-wait");
  for (const char* name : {"stage", "preflight", "swap", "rollback", "operation"}) {
    node->get_subcommand(name)
        ->add_option("--output,-o", f.output,
                     "json, the only output: the result as JSON on stdout (progress and "
                     "refusals go to stderr)")
        ->check(CLI::IsMember({"json"}))
        ->capture_default_str();
  }
  return node;
}

int RunNodeCommand(const CLI::App& node, const NodeFlags& flags) {
  NodeFlags f = flags;
  f.deadline = std::chrono::system_clock::now() + std::chrono::milliseconds(f.timeout_ms);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = FleetChannel(f.agent, f.tls);
  if (!channel.ok()) {
    std::cerr << "kmsfleetctl: [" << ReasonOf(channel.status()) << "] "
              << ForTerminal(std::string(channel.status().message())) << "\n";
    return 2;
  }
  std::unique_ptr<Stub> stub = v1::Agent::NewStub(*channel);
  if (node.got_subcommand("stage")) return RunStage(*stub, f);
  if (node.got_subcommand("preflight")) return RunPreflight(*stub, f);
  if (node.got_subcommand("swap")) return RunSwap(*stub, f);
  if (node.got_subcommand("rollback")) return RunRollback(*stub, f);
  if (node.got_subcommand("operation")) return RunGet(*stub, f);
  return 2;
}

}  // namespace kmsfleet
