#include "cli/fleet_commands.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <tuple>
#include <iostream>
#include <optional>

#include "cli/plan_render.h"
#include "cli/terminal_text.h"
#include "cli/upload_release.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/core/changelog.h"
#include "kmsfleet/core/compat_policy.h"
#include "kmsfleet/core/plan_dry_run.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/error.pb.h"

namespace kmsfleet {
namespace {

constexpr std::chrono::seconds kCallTimeout{30};
// An operator command (upgrade, pause, ...): beyond the coordinator's wait
// for its answer (50 s), which it cuts to a second before this deadline.
constexpr std::chrono::seconds kCommandTimeout{60};
// One release file's upload (at most 512 MiB) to the coordinator.
constexpr std::chrono::minutes kUploadTimeout{10};

// Cancels a call when it is not touched for `silence`. A watch's agent
// resends the view every second, so a stream quiet for many seconds is a
// dead connection: a host that lost power or a partition says nothing to
// a client that only reads over TCP.
class SilenceWatchdog {
 public:
  SilenceWatchdog(grpc::ClientContext& context, std::chrono::milliseconds silence)
      : context_(context), silence_(silence), thread_([this] { Run(); }) {}
  ~SilenceWatchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    changed_.notify_all();
    thread_.join();
  }
  void Touch() {
    std::lock_guard<std::mutex> lock(mu_);
    touched_ = true;
    changed_.notify_all();
  }
  bool fired() const { return fired_; }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      touched_ = false;
      if (changed_.wait_for(lock, silence_, [this] { return done_ || touched_; })) continue;
      fired_ = true;
      context_.TryCancel();
      return;
    }
  }

  grpc::ClientContext& context_;
  const std::chrono::milliseconds silence_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool done_ = false, touched_ = false;  // guarded by mu_
  std::atomic<bool> fired_{false};
  std::thread thread_;  // last: starts once the members above exist
};

using Call = std::function<grpc::Status(v1::Fleet::Stub&, grpc::ClientContext&)>;

// Runs `call` against the agent; a follower's NOT_LEADER sends it once to
// the coordinator it names, when TLS flags make that reachable.
absl::Status CallCoordinator(const FleetFlags& flags, const Call& call, bool streaming = false) {
  std::string agent = flags.agent;
  FleetTls tls = flags.tls;
  absl::Status result;
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = FleetChannel(agent, tls);
    if (!channel.ok()) return channel.status();
    auto stub = v1::Fleet::NewStub(*channel);
    grpc::ClientContext context;
    if (!streaming) context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    result = FromAgentCall(call(*stub, context), agent);
    std::string leader_address = MetadataOf(result, "leader_address");
    if (result.ok() || ReasonOf(result) != reason::kNotLeader || tls.ca.empty() ||
        leader_address.empty()) {
      break;
    }
    agent = leader_address;
    tls.server_name = MetadataOf(result, "leader");
  }
  return result;
}

int Fail(const std::string& what, const absl::Status& s) {
  const std::string reason = ReasonOf(s);
  std::cerr << "kmsfleetctl " << what << ": ["
            << ForTerminal(reason.empty() ? "ERROR" : reason, /*keep_newlines=*/false) << "] "
            << ForTerminal(std::string(s.message())) << "\n";
  const std::string leader = ForTerminal(MetadataOf(s, "leader"));
  const std::string leader_address = ForTerminal(MetadataOf(s, "leader_address"));
  if (reason == reason::kNotLeader && !leader.empty()) {
    std::cerr << "  the coordinator is " << leader << " (" << leader_address
              << "): run this there, or pass --agent " << leader_address
              << " with --ca, --cert and --key\n";
  }
  return ExitCodeOf(s, /*changes_the_plan=*/false);
}

// A command that changes the plan and got no answer may have been taken
// all the same: past its deadline, cut by the agent's shutdown, or
// answered PLAN_CHANGE_PENDING (proposed, not yet known committed).
// Neither "refused" (1) nor "ask again" (3) is true then: a second
// `upgrade` would be refused PLAN_ACTIVE by the first, a second `resume`
// could retry a node once more. Exit 4, and say how to find out.
int FailChange(const std::string& what, const absl::Status& s) {
  Fail(what, s);
  const int code = ExitCodeOf(s, /*changes_the_plan=*/true);
  if (code == kExitMayHaveChanged) {
    std::cerr << "  it may have taken effect: see kmsfleetctl plan before running it again\n";
  }
  return code;
}

absl::StatusOr<std::string> ReadFlagFile(const std::string& flag, const std::string& path,
                                         size_t max_bytes) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, max_bytes, Symlinks::kFollow);
  if (text.ok()) return text;
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   flag + " " + path + ": " + std::string(text.status().message()),
                   {{"flag", flag}, {"path", path}});
}

absl::StatusOr<v1::UpgradeRequest> BuildUpgrade(const FleetFlags& f) {
  v1::UpgradeRequest r;
  r.set_target_version(f.to);
  for (const std::string& n : f.order) r.add_order(n);
  v1::PlanSettings* s = r.mutable_settings();
  s->set_artifact_source(f.artifact);
  s->set_checksums_source(f.checksums);
  s->set_signature_source(f.signature);
  s->set_image(f.image);
  s->set_image_ref_source(f.image_ref);
  s->set_auto_rollback(f.auto_rollback);
  s->set_parity_observations(f.parity_observations);
  absl::StatusOr<int64_t> soak = ParseDurationFlag("--soak", f.soak);
  if (!soak.ok()) return soak.status();
  s->set_soak_ms(*soak);
  if (!f.stabilization.empty()) {
    absl::StatusOr<int64_t> window = ParseDurationFlag("--stabilization", f.stabilization);
    if (!window.ok()) return window.status();
    s->set_stabilization_ms(*window);
  }
  for (const std::string& a : f.acknowledge) r.add_acknowledgements(a);
  r.set_dry_run(f.dry_run);
  if (!f.policy.empty()) {
    absl::StatusOr<std::string> text = ReadFlagFile("--policy", f.policy, kMaxPolicyBytes);
    if (!text.ok()) return text.status();
    r.set_policy_yaml(*text);
    r.set_policy_name(f.policy);
  }
  if (!f.changelog.empty()) {
    absl::StatusOr<std::string> text =
        ReadFlagFile("--changelog", f.changelog, kMaxChangelogBytes);
    if (!text.ok()) return text.status();
    r.set_changelog(*text);
    r.set_changelog_name(f.changelog);
  }
  return r;
}

// The width of the terminal on stdout; 0 when it does not say.
size_t TerminalColumns() {
  winsize size{};
  return ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 ? size.ws_col : 0;
}

// Follows the plan until it settles. On a terminal the lines are redrawn in
// place; otherwise a line is printed only when what it says changes. With
// `plan_id`, views of other plans are skipped: an agent that has not yet
// learned of a plan just committed still shows the one before. Views of
// a revision below `min_revision` (the one a command's answer showed) are
// skipped too: a follower that relays its own, older view of the plan
// would otherwise end a `rollback --watch` on the Completed it replaced.
int Watch(const FleetFlags& flags, const std::string& plan_id = "",
          v1::PlanPhase wanted = v1::PLAN_PHASE_UNSPECIFIED, uint64_t min_revision = 0) {
  const bool tty = ::isatty(STDOUT_FILENO) == 1 && flags.output != "json";
  size_t drawn = 0;
  WatchLog log;
  int exit_code = 1;
  bool settled = false;
  absl::Status s = CallCoordinator(
      flags,
      [&](v1::Fleet::Stub& stub, grpc::ClientContext& context) {
        SilenceWatchdog watchdog(context, flags.watch_silence);
        auto reader = stub.WatchPlan(&context, v1::GetPlanRequest());
        v1::PlanView view;
        while (reader->Read(&view)) {
          watchdog.Touch();
          if (!plan_id.empty() && view.plan().plan_id() != plan_id) continue;
          if (view.plan().revision() < min_revision) continue;
          if (flags.output == "json") {
            std::cout << ProtoJsonLine(view) << std::endl;  // one view per line
          } else if (tty) {
            if (drawn > 0) std::cout << "\033[" << drawn << "F\033[J";
            std::vector<std::string> lines = FitToWidth(RenderProgress(view), TerminalColumns());
            for (const std::string& l : lines) std::cout << l << "\n";
            std::cout.flush();
            drawn = lines.size();
          } else {
            for (const std::string& l : log.Next(view)) std::cout << l << std::endl;
          }
          bool ok = false;
          if (view.has_plan() && WatchEnds(view.plan(), wanted, &ok)) {
            exit_code = ok ? 0 : 1;
            settled = true;
            context.TryCancel();
            break;
          }
        }
        grpc::Status end = reader->Finish();
        if (settled) return grpc::Status::OK;  // the CANCELLED is our own
        if (watchdog.fired()) {
          return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "no view for " + std::to_string(flags.watch_silence.count()) +
                                  " ms, though the agent sends one every second: the "
                                  "connection is dead");
        }
        // An agent's shutdown ends the stream UNAVAILABLE; an end without
        // an error before the plan settled is no success either.
        if (end.ok() || end.error_code() == grpc::StatusCode::CANCELLED) {
          return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream ended");
        }
        return end;
      },
      /*streaming=*/true);
  if (s.ok()) return exit_code;
  const int code = Fail("watch", s);
  std::cerr << "  the plan goes on without this watch: watch again, through another agent if "
               "this one is down\n";
  return code;
}

// The watch of a command the coordinator took: a watch that lost its agent
// is not "ask again" (3) then, since the command stands and a second
// `resume` could retry a node once more. Exit 4, as a change whose answer
// was lost: look at the plan before running it again.
int WatchAfterChange(const FleetFlags& flags, const v1::PlanView& answer,
                     v1::PlanPhase wanted = v1::PLAN_PHASE_UNSPECIFIED) {
  const int code = Watch(flags, answer.plan().plan_id(), wanted, answer.plan().revision());
  if (code != 3) return code;
  std::cerr << "  the command itself was taken: see kmsfleetctl plan before running it again\n";
  return kExitMayHaveChanged;
}

// Uploads `source` to the coordinator when it is a file on this machine,
// and returns what the agents stage from (docs/cli.md "upgrade").
absl::StatusOr<std::string> MaybeUpload(const FleetFlags& flags, const std::string& flag,
                                        const std::string& source, UploadKind kind) {
  if (PassedAsIs(source, flags.remote_paths)) return source;
  absl::StatusOr<LocalUpload> upload = PrepareUpload(flag, source, kind);
  if (!upload.ok()) return upload.status();
  v1::ArtifactRef ref;
  absl::Status local = absl::OkStatus();
  absl::Status s = CallCoordinator(
      flags,
      [&](v1::Fleet::Stub& stub, grpc::ClientContext& context) {
        context.set_deadline(std::chrono::system_clock::now() + kUploadTimeout);
        local = absl::OkStatus();
        return StreamUpload(stub, context, *upload, &ref, &local);
      },
      /*streaming=*/true);
  if (!local.ok()) return local;
  // Up to four files go up: say which one the coordinator refused.
  if (!s.ok()) return WithMessagePrefix(s, "upload of " + flag + " " + source + ": ");
  // The digest printed is the one computed here, which the operator checks
  // against checksums.txt (upgrade.md); the coordinator's echo must match.
  // So must the source the plan will stage from (found in review: only the
  // echoed digest was compared, not the one the source names).
  absl::StatusOr<CoordinatorSource> staged = ParseCoordinatorSource(ref.source());
  const bool as_sent = ref.sha256() == upload->sha256 && staged.ok() &&
                       staged->sha256 == upload->sha256 && staged->name == upload->name;
  if (!as_sent) {
    return MakeError(absl::StatusCode::kDataLoss, reason::kUploadDigestMismatch,
                     flag + " " + source + ": the coordinator stored sha256 " +
                         ref.sha256() + " as " + ref.source().substr(0, 512) +
                         ", this file's is " + upload->sha256 + " (" + upload->name + ")",
                     {{"flag", flag}, {"path", source}});
  }
  std::cerr << "uploaded " << source << " (" << upload->size << " bytes, sha256 "
            << upload->sha256 << ") to the coordinator " << ForTerminal(ref.node()) << "\n";
  return ref.source();
}

// Replaces each operator-local release file of `request` by its upload.
absl::Status UploadLocalFiles(const FleetFlags& flags, v1::UpgradeRequest& request) {
  v1::PlanSettings* s = request.mutable_settings();
  for (auto [flag, field, kind] :
       {std::tuple{"--artifact", s->mutable_artifact_source(), UploadKind::kBinary},
        std::tuple{"--checksums", s->mutable_checksums_source(), UploadKind::kChecksums},
        std::tuple{"--signature", s->mutable_signature_source(), UploadKind::kSignature},
        std::tuple{"--image-ref", s->mutable_image_ref_source(), UploadKind::kImageRef}}) {
    absl::StatusOr<std::string> source = MaybeUpload(flags, flag, *field, kind);
    if (!source.ok()) return source.status();
    *field = *source;
  }
  return absl::OkStatus();
}

// Whether `request` names a release file on this machine, which the
// upgrade uploads before it starts.
bool NamesLocalFiles(const FleetFlags& flags, const v1::UpgradeRequest& request) {
  const v1::PlanSettings& s = request.settings();
  for (const std::string* source : {&s.artifact_source(), &s.checksums_source(),
                                    &s.signature_source(), &s.image_ref_source()}) {
    if (!PassedAsIs(*source, flags.remote_paths)) return true;
  }
  return false;
}

// Asks the coordinator for a dry run of `request`, so that release files
// the fleet does not need are neither hashed nor uploaded. Its answer ends
// the command: ALREADY_AT_TARGET when every node already runs the target,
// AGENT_UNREACHABLE when no agent answered, a refusal no coordinator
// would take the start past (NOT_LEADER not followed, COMMAND_NOT_TAKEN,
// LEADER_TRANSFER_IN_PROGRESS), or the first refusal by a
// guard the start checks too (RefusesTheStart), which the start would
// answer after the upload. nullopt when the dry run found work to do, was
// held only by gates a committed plan waits on, or was refused itself:
// the real start answers then.
std::optional<absl::Status> AnswerBeforeUpload(const FleetFlags& flags,
                                               v1::UpgradeRequest request) {
  request.set_dry_run(true);
  request.set_start_guards_only(true);  // the nodes' checks are not read here
  v1::PlanView view;
  absl::Status s = CallCoordinator(flags, [&](v1::Fleet::Stub& stub, grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + kCommandTimeout);
    return stub.StartUpgrade(&c, request, &view);
  });
  // No coordinator would take the start either (found in review: a
  // follower's NOT_LEADER came after every file was hashed and read).
  const std::string why = ReasonOf(s);
  if (why == reason::kAgentUnreachable || why == reason::kNotLeader ||
      why == reason::kCommandNotTaken || why == reason::kLeaderTransferInProgress) {
    return s;
  }
  if (!s.ok()) return std::nullopt;
  const bool nothing_to_do = DryRunNothingToDo(view);
  for (const v1::GuardResult& g : view.dry_run()) {
    const bool answers = nothing_to_do ? g.reason() == reason::kAlreadyAtTarget
                                       : !g.reason().empty() &&
                                             g.reason() != reason::kNotEvaluated &&
                                             RefusesTheStart(g.guard());
    if (!answers) continue;
    return MakeError(absl::StatusCode::kFailedPrecondition, g.reason(), g.message());
  }
  return std::nullopt;
}

// Prints why an upgrade has nothing to do (JSON with -o json) and exits 0.
int NothingToDo(const FleetFlags& flags, const absl::Status& s) {
  if (flags.output == "json") {
    boost::json::object o;
    o["nothing_to_do"] = true;
    o["reason"] = ReasonOf(s);
    o["message"] = std::string(s.message());
    std::cout << boost::json::serialize(o) << "\n";
  } else {
    std::cout << "nothing to do: [" << ReasonOf(s) << "] "
              << ForTerminal(std::string(s.message())) << "\n";
  }
  return 0;
}

int RunUpgrade(const FleetFlags& flags) {
  absl::StatusOr<v1::UpgradeRequest> request = BuildUpgrade(flags);
  if (!request.ok()) return Fail("upgrade", request.status());
  // A dry run stages nothing, so it uploads nothing either; nor does an
  // upgrade that has nothing to do or that the start would refuse. Found
  // in review: a fleet already on the target, or a version not higher, was
  // told so only after the release's upload.
  if (!flags.dry_run && NamesLocalFiles(flags, *request)) {
    if (std::optional<absl::Status> answer = AnswerBeforeUpload(flags, *request)) {
      if (ReasonOf(*answer) == reason::kAlreadyAtTarget) return NothingToDo(flags, *answer);
      const int code = Fail("upgrade", *answer);
      if (ReasonOf(*answer) != reason::kAgentUnreachable) {
        std::cerr << "  the dry run asked first found this: no release file was sent\n";
      }
      return code;
    }
    if (absl::Status s = UploadLocalFiles(flags, *request); !s.ok()) return Fail("upgrade", s);
  }
  v1::PlanView view;
  absl::Status s = CallCoordinator(flags, [&](v1::Fleet::Stub& stub, grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + kCommandTimeout);
    return stub.StartUpgrade(&c, *request, &view);
  });
  // The fleet already runs the target: a no-op that says so, not a
  // failure (a script may ask for the version it wants again).
  if (ReasonOf(s) == reason::kAlreadyAtTarget) return NothingToDo(flags, s);
  if (!s.ok()) return flags.dry_run ? Fail("upgrade", s) : FailChange("upgrade", s);
  if (flags.dry_run) {
    std::cout << (flags.output == "json" ? ProtoJson(view) + "\n" : RenderDryRun(view));
    return DryRunRefused(view) ? 1 : 0;
  }
  if (flags.output == "json" && !flags.watch) {
    std::cout << ProtoJson(view) << "\n";
    return 0;
  }
  // With --watch, the answer is the stream's first line.
  if (flags.output == "json") std::cout << ProtoJsonLine(view) << std::endl;
  std::cerr << "plan " << ForTerminal(view.plan().plan_id(), /*keep_newlines=*/false)
            << " committed: upgrade to "
            << ForTerminal(view.plan().target_version(), /*keep_newlines=*/false)
            << " (follow it with kmsfleetctl watch)\n";
  return flags.watch ? WatchAfterChange(flags, view) : 0;
}

// The phase an accepted command leads to, which ends its watch as asked: a
// plan acknowledged out of break-glass is Halted, which alone would be a
// failure. UNSPECIFIED: the watch ends when the plan settles.
v1::PlanPhase PhaseTheCommandLeadsTo(v1::PlanCommandKind kind) {
  switch (kind) {
    case v1::PLAN_COMMAND_PAUSE: return v1::PLAN_PHASE_PAUSED;
    case v1::PLAN_COMMAND_ABORT: return v1::PLAN_PHASE_ABORTED;
    case v1::PLAN_COMMAND_ACK_BREAK_GLASS: return v1::PLAN_PHASE_HALTED;
    default: return v1::PLAN_PHASE_UNSPECIFIED;
  }
}

int RunCommand(const std::string& name, v1::PlanCommandKind kind, const FleetFlags& flags) {
  v1::PlanCommandRequest request;
  request.set_kind(kind);
  request.set_nonce(flags.nonce);
  request.set_dry_run(flags.dry_run);
  v1::PlanView view;
  absl::Status s = CallCoordinator(flags, [&](v1::Fleet::Stub& stub, grpc::ClientContext& c) {
    c.set_deadline(std::chrono::system_clock::now() + kCommandTimeout);
    return stub.CommandPlan(&c, request, &view);
  });
  if (!s.ok()) return flags.dry_run ? Fail(name, s) : FailChange(name, s);
  if (flags.output == "json") {
    // Followed by the watch's views, one per line: this answer is the first.
    std::cout << (flags.watch && !flags.dry_run ? ProtoJsonLine(view) : ProtoJson(view)) << "\n";
  } else if (flags.dry_run) {
    std::cout << RenderDryRun(view);
  } else {
    std::cout << RenderPlan(view);
  }
  if (flags.dry_run) return DryRunRefused(view) ? 1 : 0;
  return flags.watch ? WatchAfterChange(flags, view, PhaseTheCommandLeadsTo(kind)) : 0;
}

int RunShow(const FleetFlags& flags) {
  v1::PlanView view;
  absl::Status s = CallCoordinator(flags, [&](v1::Fleet::Stub& stub, grpc::ClientContext& c) {
    return stub.GetPlan(&c, v1::GetPlanRequest(), &view);
  });
  if (!s.ok()) return Fail("plan", s);
  std::cout << (flags.output == "json" ? ProtoJson(view) + "\n" : RenderPlan(view));
  return 0;
}

int RunHistory(const FleetFlags& flags) {
  v1::PlanHistory history;
  absl::Status s = CallCoordinator(flags, [&](v1::Fleet::Stub& stub, grpc::ClientContext& c) {
    return stub.ListPlans(&c, v1::ListPlansRequest(), &history);
  });
  if (!s.ok()) return Fail("history", s);
  std::cout << (flags.output == "json" ? ProtoJson(history) + "\n" : RenderHistory(history));
  return 0;
}

void AddCommon(CLI::App& c, FleetFlags& f) {
  c.add_option("--agent", f.agent,
               "any agent: unix:/path, or host:port of its cluster listener with --ca, "
               "--cert and --key (an operator certificate)")
      ->capture_default_str();
  c.add_option("--output,-o", f.output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  AddTlsFlags(c, f.tls);
}

CLI::App* AddUpgrade(CLI::App& app, FleetFlags& f) {
  CLI::App* c = app.add_subcommand("upgrade", "upgrade the fleet's provider, one node at a time");
  c->footer(
      "Example:\n  kmsfleetctl upgrade --to 0.2.0 \\\n"
      "    --artifact ./bao-kms-provider_0.2.0_linux_amd64 \\\n"
      "    --checksums ./checksums.txt --signature ./checksums.txt.sig --watch\n"
      "A source that is a file on this machine is uploaded to the coordinator first, and "
      "every agent fetches it from there over mTLS; http(s) URLs are downloaded by each "
      "node; --remote-paths passes paths that exist on every node as they are. Every agent "
      "verifies the checksum and signature itself, with its own keys.");
  AddCommon(*c, f);
  c->add_option("--to", f.to, "target version (strict SemVer)")->required();
  c->add_option("--artifact", f.artifact,
                "the release binary: a file here (uploaded), or a URL")
      ->required();
  c->add_option("--checksums", f.checksums, "the release's checksums.txt")->required();
  c->add_option("--signature", f.signature, "checksums.txt's signature");
  c->add_option("--image", f.image,
                "static-pod nodes: the image to run, repo@sha256:<digest> (a tag alone is "
                "refused)");
  c->add_option("--image-ref", f.image_ref,
                "static-pod nodes: the release's static-pod kit (.tar.gz, listed in "
                "checksums.txt), whose image-ref.txt must name --image");
  c->add_option("--policy", f.policy, "compatibility policy YAML extending the built-in one");
  c->add_option("--changelog", f.changelog, "the release's CHANGELOG.md");
  c->add_option("--soak", f.soak, "wait between nodes, e.g. 5m")->capture_default_str();
  c->add_option("--stabilization", f.stabilization,
                "each node's /ready window (default: the agent's executor.stabilization_ms)");
  c->add_option("--parity-observations", f.parity_observations,
                "consecutive rounds of one key_id hash on every node before the next node "
                "(default 3, at most 100)")
      ->check(CLI::Range(1, static_cast<int>(kMaxParityObservations)));
  c->add_option("--acknowledge", f.acknowledge, "an acknowledgement code (repeatable)");
  c->add_option("--order", f.order, "node order (every voter once)")->delimiter(',');
  c->add_flag("--auto-rollback", f.auto_rollback,
              "walk upgraded nodes back when one fails and is restored");
  c->add_flag("--remote-paths", f.remote_paths,
              "--artifact, --checksums, --signature and --image-ref are paths on every node: "
              "upload nothing");
  c->add_flag("--dry-run", f.dry_run, "print the node order and every guard; change nothing");
  c->add_flag("--watch", f.watch, "follow the plan until it settles");
  return c;
}

}  // namespace

absl::StatusOr<int64_t> ParseDurationFlag(const std::string& flag, const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  const int64_t scale = unit == "ms" ? 1
                        : unit == "s" || unit.empty() ? 1000
                        : unit == "m"                 ? 60'000
                        : unit == "h"                 ? 3'600'000
                                                      : 0;
  if (digits == 0 || digits > 9 || scale == 0) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     flag + " \"" + text + "\": expected a duration such as 90s, 5m, 1h or 500ms",
                     {{"flag", flag}, {"value", text}});
  }
  return std::stoll(text.substr(0, digits)) * scale;
}

absl::Status ResolvePlanCommitFlags(const CLI::App& plan, const FleetFlags& plan_flags,
                                    PlanCommitFlags& commit_flags) {
  const CLI::App* commit = plan.get_subcommand("commit");
  for (auto [name, before, after] :
       {std::tuple{"--agent", &plan_flags.agent, &commit_flags.agent},
        std::tuple{"--output", &plan_flags.output, &commit_flags.output},
        std::tuple{"--ca", &plan_flags.tls.ca, &commit_flags.tls.ca},
        std::tuple{"--cert", &plan_flags.tls.cert, &commit_flags.tls.cert},
        std::tuple{"--key", &plan_flags.tls.key, &commit_flags.tls.key},
        std::tuple{"--server-name", &plan_flags.tls.server_name,
                   &commit_flags.tls.server_name}}) {
    if (plan.count(name) == 0) continue;
    if (commit->count(name) > 0 && *before != *after) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                       std::string(name) + " is given before `commit` (" + *before +
                           ") and after it (" + *after + "): give it once",
                       {{"flag", name}});
    }
    *after = *before;
  }
  if (plan.count("--insecure") > 0) commit_flags.tls.insecure = true;
  return absl::OkStatus();
}

std::vector<CLI::App*> AddFleetCommands(CLI::App& app, FleetFlags& f) {
  std::vector<CLI::App*> commands{AddUpgrade(app, f)};
  CLI::App* rollback = app.add_subcommand(
      "rollback", "walk the upgraded nodes back to the version before the plan");
  rollback->footer("Example:\n  kmsfleetctl rollback --dry-run");
  rollback->add_flag("--dry-run", f.dry_run,
                    "print the walk-back order and every guard; change nothing");
  rollback->add_flag("--watch", f.watch, "follow the plan until it settles");
  commands.push_back(rollback);
  for (auto [name, help] : {std::pair<const char*, const char*>{"pause", "no new node starts"},
                            {"resume", "continue a paused or halted plan"},
                            {"abort", "stop before the next node (a swap in progress finishes)"},
                            {"plan", "show the plan: nodes, guards, audit"},
                            {"watch", "follow the plan's progress until it settles"},
                            {"history", "past plans and how they ended"}}) {
    if (std::string(name) == "plan") {
      commands.push_back(app.get_subcommand("plan"));  // `plan commit` lives there too
      continue;
    }
    CLI::App* c = app.add_subcommand(name, help);
    c->footer(std::string("Example:\n  kmsfleetctl ") + name);
    commands.push_back(c);
  }
  CLI::App* ack = app.add_subcommand(
      "ack-break-glass", "acknowledge the current break-glass event after the manual steps");
  ack->footer("Example:\n  kmsfleetctl ack-break-glass 3f9a0c1d2b4e5f60");
  ack->add_option("nonce", f.nonce, "the nonce `kmsfleetctl plan` shows")->required();
  commands.push_back(ack);
  for (CLI::App* c : commands) {
    const std::string name = c->get_name();
    if (name == "upgrade") continue;
    AddCommon(*c, f);
    if (name == "pause" || name == "resume" || name == "abort" || name == "ack-break-glass") {
      c->add_flag("--watch", f.watch, "then follow the plan until it settles");
    }
  }
  return commands;
}

int RunFleetCommand(const CLI::App& command, const FleetFlags& flags) {
  const std::string name = command.get_name();
  if (name == "upgrade") return RunUpgrade(flags);
  if (name == "rollback") return RunCommand(name, v1::PLAN_COMMAND_ROLLBACK, flags);
  if (name == "pause") return RunCommand(name, v1::PLAN_COMMAND_PAUSE, flags);
  if (name == "resume") return RunCommand(name, v1::PLAN_COMMAND_RESUME, flags);
  if (name == "abort") return RunCommand(name, v1::PLAN_COMMAND_ABORT, flags);
  if (name == "ack-break-glass") return RunCommand(name, v1::PLAN_COMMAND_ACK_BREAK_GLASS, flags);
  if (name == "plan") return RunShow(flags);
  if (name == "watch") return Watch(flags);
  if (name == "history") return RunHistory(flags);
  return 2;
}

}  // namespace kmsfleet
