#include "daemon/agent_server.h"

#include <grpc/grpc.h>
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <vector>

#include "absl/strings/str_join.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/core/provider_report.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/repeat_limiter.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/apiserver_restart.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/agent.grpc.pb.h"

namespace kmsfleet {
namespace {

// The cap bounds what a caller can make us buffer. Agent requests are
// tiny, but the local Fleet service shares this socket, and an upload
// chunk carries kMaxUploadChunkBytes of data and its fields: as the
// cluster listener, twice the chunk. (It was the chunk itself, so every
// full chunk of an upload over the unix socket was refused.)
constexpr int kMaxRequestBytes = static_cast<int>(2 * kMaxUploadChunkBytes);

absl::Status SocketPathError(const std::string& path, std::string_view why) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInvalidConfig,
                   "cannot listen on unix socket " + path + ": " +
                       std::string(why),
                   {{"path", path}});
}

// True if a process accepts connections on the unix socket at `path`.
bool SomeoneListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool connected =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return connected;
}

// Makes `path` bindable: creates its directory and removes a socket file
// that no process listens on any more (an agent killed without cleanup).
absl::Status PrepareUnixSocketPath(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return SocketPathError(path, "path is longer than the 107 bytes allowed");
  }
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  bool existed = std::filesystem::exists(dir, ec);
  std::filesystem::create_directories(dir, ec);
  if (ec) return SocketPathError(path, ec.message());
  // A directory we create admits only root and its group on the way to the
  // socket; an existing one is the administrator's to set.
  if (!existed && chmod(dir.c_str(), 0750) != 0) {
    return SocketPathError(path, std::string("cannot set the mode of its directory: ") +
                                     std::strerror(errno));
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode)) {
    return SocketPathError(path, "a file that is not a socket is in the way");
  }
  if (SomeoneListens(path)) {
    return SocketPathError(path, "another process is listening on it");
  }
  if (unlink(path.c_str()) != 0) return SocketPathError(path, std::strerror(errno));
  return absl::OkStatus();
}

// The group id of `group`, or an error naming it.
absl::StatusOr<gid_t> GroupId(const std::string& path, const std::string& group) {
  std::vector<char> buffer(16384);
  struct group entry {};
  struct group* found = nullptr;
  int rc = getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc != 0 || found == nullptr) {
    return SocketPathError(path, "listen.unix_group " + group + " does not exist" +
                                     (rc != 0 ? std::string(": ") + std::strerror(rc) : ""));
  }
  return found->gr_gid;
}

// The socket's group must reach it: a private directory of the agent's own
// that already lets its group pass (0750 as created above, or systemd's
// RuntimeDirectory=, root:root 0750) gets that group. A directory others
// may enter (/run, /tmp), one closed to its group (a 0700 state directory)
// or another user's is left as it is.
absl::Status LetTheGroupThrough(const std::string& path, gid_t gid) {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 0007) != 0 || (st.st_mode & 0050) != 0050 || st.st_gid == gid) {
    return absl::OkStatus();
  }
  if (chown(dir.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    return SocketPathError(path, "cannot give its directory " + dir + " the group: " +
                                     std::strerror(errno));
  }
  return absl::OkStatus();
}

// Gives the bound socket its group and (again) its mode, then checks both:
// the agent must not serve a socket others can reach.
absl::Status FinishSocket(const std::string& path, unsigned mode,
                          std::optional<gid_t> gid) {
  if (gid && chown(path.c_str(), static_cast<uid_t>(-1), *gid) != 0) {
    return SocketPathError(path, std::string("cannot set its group: ") + std::strerror(errno));
  }
  if (gid) KMSFLEET_RETURN_IF_ERROR(LetTheGroupThrough(path, *gid));
  if (chmod(path.c_str(), mode) != 0) {
    return SocketPathError(path, std::string("cannot set its mode: ") + std::strerror(errno));
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || (st.st_mode & 0777) != mode ||
      (gid && st.st_gid != *gid)) {
    return SocketPathError(path, "its mode or group did not take effect");
  }
  return absl::OkStatus();
}

}  // namespace

// The Agent service. Synchronous handlers, since an observation blocks on
// HTTP, gRPC and subprocess I/O with their own timeouts; gRPC's sync server
// gives each call its own thread from its pool.
// Every handler first asks CheckCall whether its caller may call it.
class AgentService final : public v1::Agent::Service {
 public:
  AgentService(ProviderProbe& probe, Executor* executor, AgentServiceOptions options)
      : probe_(probe), executor_(executor), options_(std::move(options)) {}

  // kmsfleet.v1.Agent
  grpc::Status GetNodeState(grpc::ServerContext* context, const v1::GetNodeStateRequest*,
                            v1::NodeState* response) override {
    if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/GetNodeState"); !s.ok()) {
      return s;
    }
    *response = probe_.Observe();
    response->set_agent_mode(options_.mode);
    response->set_provider_mode(options_.provider_mode);
    response->set_apiserver_restart_configured(options_.apiserver != nullptr &&
                                               options_.apiserver->configured());
    *response->mutable_call_bounds() = options_.call_bounds;
    response->set_default_stabilization_ms(options_.default_stabilization_ms);
    return grpc::Status::OK;
  }

  grpc::Status Stage(grpc::ServerContext*, const v1::StageRequest* request,
                     v1::StageResponse* response) override;
  grpc::Status Preflight(grpc::ServerContext*, const v1::PreflightRequest* request,
                         v1::PreflightResponse* response) override;
  grpc::Status Swap(grpc::ServerContext*, const v1::SwapRequest* request,
                    v1::Operation* response) override;
  grpc::Status Rollback(grpc::ServerContext*, const v1::RollbackRequest* request,
                        v1::Operation* response) override;
  grpc::Status GetOperation(grpc::ServerContext*,
                            const v1::GetOperationRequest* request,
                            v1::Operation* response) override;
  grpc::Status WatchOperation(grpc::ServerContext* context,
                              const v1::GetOperationRequest* request,
                              grpc::ServerWriter<v1::Operation>* writer) override;
  grpc::Status RestartApiServer(grpc::ServerContext* context,
                                const v1::RestartApiServerRequest* request,
                                v1::RestartApiServerResponse* response) override;

 private:
  // The caller's refusal, or OK.
  grpc::Status Gate(grpc::ServerContext* context, std::string_view method) const;
  // `s` as a gRPC status, counted as a refusal.
  grpc::Status Refused(const absl::Status& s) const;
  // Refused, for a command refused after its caller was let in (by the
  // fence, the plan's step, the executor's guards), logged with who asked.
  grpc::Status RefusedCommand(const grpc::ServerContext& context, std::string_view method,
                              const absl::Status& s) const;
  // Whether the refusal logged under `key` is written now (RepeatLimiter):
  // nullopt to hold it back, else how many were held back since.
  std::optional<int64_t> RefusalLogDue(const std::string& key) const;
  // The member whose certificate sent the call, which speaks for a
  // coordinator: its commands must come from the leader and be the plan's
  // step or release. nullopt for an operator or local root.
  std::optional<std::string> CoordinatorMember(const grpc::ServerContext& context) const;

  ProviderProbe& probe_;
  Executor* executor_;
  AgentServiceOptions options_;
  // A refusal repeated every tick (a coordinator asking again while the
  // agent starts or is busy) is logged once each kRefusalLogIntervalMs per
  // sender and reason (RefusedCommand's key), with how many were held back.
  static constexpr int64_t kRefusalLogIntervalMs = 10'000;
  static constexpr size_t kRefusalLogKeys = 256;
  mutable std::mutex refusal_log_mu_;
  mutable RepeatLimiter refusal_log_{kRefusalLogIntervalMs, kRefusalLogKeys};
};


namespace {

// The reason leads the message for people and scripts reading stderr, and
// the ErrorInfo travels as the status details for programs.
grpc::Status ToGrpc(const absl::Status& s) {
  std::string reason = ReasonOf(s);
  std::string message = reason.empty() ? std::string(s.message())
                                       : "[" + reason + "] " + std::string(s.message());
  std::string details;
  if (absl::optional<absl::Cord> info = s.GetPayload(kErrorInfoTypeUrl)) {
    details = std::string(*info);
  }
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), message, details);
}

// Whether the caller of `context`'s call has given up (its deadline
// passed, or it cancelled): the executor asks just before it starts.
std::function<bool()> CallerGoneOf(grpc::ServerContext* context) {
  return [context] { return context->IsCancelled(); };
}

grpc::Status NoExecutor() {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      "this agent runs without an executor");
}

void ToProto(const SwapJournal& j, v1::Operation* out) {
  out->set_operation_id(j.operation_id);
  out->set_kind(j.kind);
  out->set_of_operation_id(j.of_operation_id);
  out->set_checkpoint_acknowledged(j.checkpoint_acknowledged);
  out->set_phase(std::string(PhaseName(j.phase)));
  out->set_done(!j.open);
  out->set_target_version(j.target_version);
  out->set_previous_version(j.previous_version);
  out->set_target_sha256(j.target_sha256);
  out->set_previous_sha256(j.previous_sha256);
  out->set_expected_key_id_hash(j.expected_key_id_hash);
  out->set_reason(j.failure_reason);
  out->set_message(j.failure_message);
  out->set_evidence_dir(j.evidence_dir);
  out->set_registry_sha256(j.registry_sha256);
  out->set_checkpoint_sha256(j.checkpoint_sha256);
  for (const auto& h : j.history) out->add_history(h);
  if (j.fence_term != 0 || j.fence_index != 0) {
    // The journal keeps term and index; in flight was this node.
    out->mutable_fence()->set_term(j.fence_term);
    out->mutable_fence()->set_index(j.fence_index);
  }
  out->set_started_unix_ms(j.started_unix_ms);
  out->set_updated_unix_ms(j.updated_unix_ms);
}

// SwapRequest and RollbackRequest share these fields.
template <typename Request>
CommandParams CommandOf(const Request& r) {
  CommandParams c;
  c.expected_key_id_hash = r.expected_key_id_hash();
  c.stabilization_ms = r.stabilization_ms();
  c.operation_id = r.operation_id();
  if (r.has_fence()) c.fence = r.fence();
  return c;
}

// The fence a coordinator sent with its Stage or Preflight, if any.
template <typename Request>
std::optional<v1::Fence> FenceSent(const Request& r) {
  if (!r.has_fence()) return std::nullopt;
  return r.fence();
}

void SetCondition(const absl::Status& s, v1::Condition* c) {
  c->set_reason(ReasonOf(s));
  c->set_message(std::string(s.message()));
}

}  // namespace

grpc::Status AgentService::Gate(grpc::ServerContext* context,
                                 std::string_view method) const {
  absl::Status s = CheckCall(options_.policy, *context, method);
  return s.ok() ? grpc::Status::OK : Refused(s);
}

grpc::Status AgentService::Refused(const absl::Status& s) const {
  if (options_.on_refusal) options_.on_refusal(ReasonOf(s));
  return ToGrpc(s);
}

grpc::Status AgentService::RefusedCommand(const grpc::ServerContext& context,
                                          std::string_view method,
                                          const absl::Status& s) const {
  // The fence and the executor log why; this line says who asked, so that
  // a forged or replayed command can be traced to a certificate and an
  // address. What the caller can make long is cut short: the error can
  // quote the request, and a certificate can carry many SANs.
  constexpr size_t kMaxLoggedBytes = 512;
  const Caller caller = CallerOf(options_.policy, context);
  const std::string name = Bounded(caller.name, kMaxLoggedBytes);
  const std::string certified = Bounded(caller.certified, kMaxLoggedBytes);
  // Every field that tells one sender from another is in the key, so that
  // a second certificate or host claiming the same name is logged at once
  // beside a coordinator refused every tick. The peer's port is not: it
  // changes with every connection.
  const std::string key = absl::StrJoin(
      {std::string(method), std::string(CallerKindName(caller.kind)), name, certified,
       PeerHost(context.peer()), ReasonOf(s)},
      "\n");
  if (std::optional<int64_t> held_back = RefusalLogDue(key)) {
    Log(LogLevel::kWarn, "command refused",
        {{"node", options_.policy.self}, {"method", std::string(method)},
         {"peer", context.peer()}, {"caller_kind", std::string(CallerKindName(caller.kind))},
         {"caller", name}, {"certified", certified}, {"reason", ReasonOf(s)},
         {"error", Bounded(std::string(s.message()), kMaxLoggedBytes)},
         {"repeats_not_logged", std::to_string(*held_back)}});
  }
  return Refused(s);
}

std::optional<int64_t> AgentService::RefusalLogDue(const std::string& key) const {
  std::lock_guard<std::mutex> lock(refusal_log_mu_);
  // Read under the lock: two refusals read in one order and admitted in
  // the other would look like a clock gone back, and both be logged.
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  return refusal_log_.Admit(key, now_ms);
}

std::optional<std::string> AgentService::CoordinatorMember(
    const grpc::ServerContext& context) const {
  Caller caller = CallerOf(options_.policy, context);
  if (caller.kind != CallerKind::kMember) return std::nullopt;
  return std::move(caller.name);
}

grpc::Status AgentService::Stage(grpc::ServerContext* context,
                                  const v1::StageRequest* r,
                                  v1::StageResponse* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/Stage"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  // Before the fetch, which can take minutes: the stop waits for this call.
  // Asked first: a stopping agent answers AGENT_STOPPING (ask again), not
  // a refusal that would halt a plan (found in review).
  if (absl::Status s = executor_->RefusalWhileStopping(); !s.ok()) return ToGrpc(s);
  // Before anything is read or fetched: a member stages only the plan's.
  if (std::optional<std::string> member = CoordinatorMember(*context)) {
    const ReleaseCommand command{.kind = ReleaseCommand::Kind::kStage,
                                 .version = r->version(),
                                 .source = r->source(),
                                 .checksums = r->checksums(),
                                 .signature = r->signature(),
                                 .artifact_name = r->artifact_name(),
                                 .image = r->image(),
                                 .image_ref = r->image_ref(),
                                 .sent_by = *member};
    absl::Status bound = executor_->CheckMemberRelease(FenceSent(*r), command);
    if (!bound.ok()) return RefusedCommand(*context, "/kmsfleet.v1.Agent/Stage", bound);
  }
  // coordinator:// sources are fetched first, then staged like local files.
  absl::StatusOr<std::unique_ptr<FetchedSources>> fetched = FetchedSources::Fetch(
      {r->version(), r->source(), r->checksums(), r->signature(), r->artifact_name(),
       r->image(), r->image_ref()},
      options_.state_dir, options_.fetch_upload, context->deadline(), [this, context] {
        // A fetch can take executor.download_timeout_ms: it ends with the
        // call it serves, or at once when the agent is told to stop (the
        // stop waits for this call, within systemd's TimeoutStopSec).
        if (context->IsCancelled()) {
          return MakeError(absl::StatusCode::kCancelled, reason::kArtifactFetchFailed,
                           "the Stage call the fetch served was cancelled by its caller");
        }
        return executor_->RefusalWhileStopping();
      });
  if (!fetched.ok()) return ToGrpc(fetched.status());
  absl::StatusOr<StagedArtifact> a = executor_->Stage((*fetched)->request());
  if (!a.ok()) return ToGrpc((*fetched)->NameSources(a.status()));
  response->set_version(a->version);
  response->set_path(a->binary_path);
  response->set_sha256(a->sha256);
  response->set_signed_(a->is_signed);
  response->set_signer(a->signer);
  response->set_previous_artifact_verified(executor_->PreviousReleaseKept());
  response->set_staged_digest(a->staged_digest);
  return grpc::Status::OK;
}

grpc::Status AgentService::Preflight(grpc::ServerContext* context,
                                      const v1::PreflightRequest* r,
                                      v1::PreflightResponse* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/Preflight"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  // A preflight runs the staged release's `version` and `doctor`: a
  // member's is of the plan's release only (installed_only runs the
  // installed one).
  const std::optional<std::string> member =
      r->installed_only() ? std::nullopt : CoordinatorMember(*context);
  if (member) {
    absl::Status bound = executor_->CheckMemberRelease(
        FenceSent(*r), {.kind = ReleaseCommand::Kind::kPreflight,
                        .version = r->version(),
                        .sent_by = *member});
    if (!bound.ok()) return RefusedCommand(*context, "/kmsfleet.v1.Agent/Preflight", bound);
  }
  absl::StatusOr<PreflightOutcome> p = r->installed_only() ? executor_->PreflightInstalled()
                                                           : executor_->Preflight(r->version());
  if (!p.ok()) return ToGrpc(p.status());
  if (r->installed_only()) {
    response->set_previous_artifact_verified(executor_->PreviousReleaseKept());
  } else {
    response->set_version(r->version());
  }
  response->set_binary_version(p->doctor.binary_version);
  for (const Check& c : p->doctor.doctor.checks) {
    v1::PreflightCheck* out = response->add_checks();
    out->set_id(c.id);
    out->set_title(c.title);
    out->set_status(std::string(CheckStatusName(c.status)));
    out->set_message(c.message);
  }
  if (!p->doctor.verdict.ok()) SetCondition(p->doctor.verdict, response->mutable_blocking());
  if (!p->rotation_plan.ok()) {
    SetCondition(p->rotation_plan, response->mutable_rotation_plan());
  }
  response->set_rotation_state(p->rotation.rotation_state);
  response->set_transit_metadata_status(p->rotation.transit_metadata_status);
  response->set_pending_key_id_hash(p->rotation.pending_key_id_hash);
  response->set_state_checkpoint_status(p->rotation.state_checkpoint_status);
  if (p->rotation.active_transit_version) {
    response->set_active_transit_version(*p->rotation.active_transit_version);
  }
  if (p->rotation.latest_transit_version) {
    response->set_latest_transit_version(*p->rotation.latest_transit_version);
  }
  if (p->rotation.pending_transit_version) {
    response->set_pending_transit_version(*p->rotation.pending_transit_version);
  }
  // A dry run's answer ran no doctor: it passes nothing. Nor does one
  // whose checkpoint is not current, which the node's swap refuses unless
  // acknowledged (found in review: `node preflight` passed, the swap
  // refused). Not in rotation_plan: the coordinator reads that condition
  // as the rotation's, which no acknowledgement waives.
  response->set_passed(!r->installed_only() && p->doctor.verdict.ok() && p->rotation_plan.ok() &&
                       CheckpointNotCurrentWhy(p->rotation).empty());
  return grpc::Status::OK;
}

grpc::Status AgentService::Swap(grpc::ServerContext* context,
                                 const v1::SwapRequest* r,
                                 v1::Operation* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/Swap"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  CommandParams command = CommandOf(*r);
  std::optional<std::string> member = CoordinatorMember(*context);
  command.bound_to_plan = member.has_value();
  command.sent_by = member.value_or("");
  command.caller_gone = CallerGoneOf(context);
  absl::StatusOr<SwapJournal> j =
      executor_->Swap({r->version(), command, r->expected_staged_digest(),
                       {r->acknowledgements().begin(), r->acknowledgements().end()}});
  if (!j.ok()) return RefusedCommand(*context, "/kmsfleet.v1.Agent/Swap", j.status());
  ToProto(*j, response);
  return grpc::Status::OK;
}

grpc::Status AgentService::Rollback(grpc::ServerContext* context,
                                     const v1::RollbackRequest* r,
                                     v1::Operation* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/Rollback"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  CommandParams command = CommandOf(*r);
  std::optional<std::string> member = CoordinatorMember(*context);
  command.bound_to_plan = member.has_value();
  command.sent_by = member.value_or("");
  command.caller_gone = CallerGoneOf(context);
  absl::StatusOr<SwapJournal> j =
      executor_->Rollback({r->of_operation_id(), command, r->expected_version()});
  if (!j.ok()) return RefusedCommand(*context, "/kmsfleet.v1.Agent/Rollback", j.status());
  ToProto(*j, response);
  return grpc::Status::OK;
}

grpc::Status AgentService::GetOperation(grpc::ServerContext* context,
                                         const v1::GetOperationRequest* r,
                                         v1::Operation* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/GetOperation"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  absl::StatusOr<SwapJournal> j = executor_->Get(r->operation_id());
  if (!j.ok()) return ToGrpc(j.status());
  ToProto(*j, response);
  return grpc::Status::OK;
}

grpc::Status AgentService::WatchOperation(
    grpc::ServerContext* context, const v1::GetOperationRequest* r,
    grpc::ServerWriter<v1::Operation>* writer) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/WatchOperation"); !s.ok()) return s;
  if (executor_ == nullptr) return NoExecutor();
  size_t seen = 0;
  while (!context->IsCancelled()) {
    // A bounded wait, so a cancelled client frees this thread soon.
    absl::StatusOr<SwapJournal> j = executor_->WaitForUpdate(
        r->operation_id(), seen, std::chrono::milliseconds(1000));
    // Still being admitted: the stream stays open until it started or was
    // refused (then NotFound), the answer a follow-only swap waits for.
    if (IsBeingAdmitted(j.status())) continue;
    if (!j.ok()) return ToGrpc(j.status());
    if (j->history.size() == seen && j->open) continue;
    seen = j->history.size();
    v1::Operation op;
    ToProto(*j, &op);
    if (!writer->Write(op)) break;
    if (!j->open) break;
  }
  return grpc::Status::OK;
}

// Synchronous: the restart and the /readyz wait are bounded by the
// node's apiserver config; the coordinator's deadline is longer.
grpc::Status AgentService::RestartApiServer(grpc::ServerContext* context,
                                            const v1::RestartApiServerRequest* r,
                                            v1::RestartApiServerResponse* response) {
  if (grpc::Status s = Gate(context, "/kmsfleet.v1.Agent/RestartApiServer"); !s.ok()) {
    return s;
  }
  if (executor_ == nullptr || options_.apiserver == nullptr) return NoExecutor();
  std::optional<v1::Fence> fence;
  if (r->has_fence()) fence = r->fence();
  // A member speaks for a coordinator: only the plan's own restart.
  std::optional<NodeCommand> bound;
  if (std::optional<std::string> member = CoordinatorMember(*context)) {
    bound = NodeCommand{.kind = NodeCommand::Kind::kRestartApiServer,
                        .operation_id = r->restart_id(),
                        .sent_by = *std::move(member)};
  }
  absl::StatusOr<ApiServerRestartReport> report = options_.apiserver->Restart(
      r->restart_id(), [this, &fence, &bound, context](const std::function<void()>& work) {
        return executor_->RunAdmitted(fence, work, bound, CallerGoneOf(context));
      });
  if (!report.ok()) {
    // A restart that ran and failed is its outcome, not a guard's refusal
    // (the coordinator asks again under the same id, and gets it again).
    const std::string why = ReasonOf(report.status());
    if (why == reason::kApiServerRestartFailed || why == reason::kApiServerNotReady) {
      return ToGrpc(report.status());
    }
    return RefusedCommand(*context, "/kmsfleet.v1.Agent/RestartApiServer", report.status());
  }
  response->set_method(report->method);
  response->set_done(report->done);
  response->set_restart_ms(report->restart_ms);
  response->set_ready_ms(report->ready_ms);
  response->set_readyz_attempts(report->readyz_attempts);
  response->set_readyz_url(options_.apiserver->options().readyz.ToString());
  return grpc::Status::OK;
}

std::unique_ptr<grpc::Service> NewAgentService(ProviderProbe& probe, Executor* executor,
                                               AgentServiceOptions options) {
  return std::make_unique<AgentService>(probe, executor, std::move(options));
}

AgentServer::AgentServer(ProviderProbe& probe, Executor* executor, std::string mode,
                         ApiServerRestarter* apiserver)
    : service_(NewAgentService(probe, executor,
                               {.policy = {.local = true},
                                .mode = std::move(mode),
                                .apiserver = apiserver})) {}

AgentServer::AgentServer(ProviderProbe& probe, Executor* executor, AgentServiceOptions options)
    : service_(NewAgentService(probe, executor, [&] {
        options.policy = {.local = true};
        return std::move(options);
      }())) {}

AgentServer::~AgentServer() { Shutdown(std::chrono::milliseconds(0)); }

absl::Status AgentServer::Start(const AgentListenAddresses& addresses) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // as the cluster listener
  std::optional<gid_t> gid;
  if (!addresses.unix_socket.empty()) {
    if (absl::Status s = PrepareUnixSocketPath(addresses.unix_socket); !s.ok()) {
      return s;
    }
    if (!addresses.unix_group.empty()) {
      absl::StatusOr<gid_t> g = GroupId(addresses.unix_socket, addresses.unix_group);
      if (!g.ok()) return g.status();
      gid = *g;
    }
    builder.AddListeningPort("unix:" + addresses.unix_socket,
                             grpc::InsecureServerCredentials());
  }
  if (!addresses.tcp.empty()) {
    // Only with listen.insecure on loopback (checked at config load).
    builder.AddListeningPort(addresses.tcp, grpc::InsecureServerCredentials(),
                             &tcp_port_);
  }
  builder.RegisterService(service_.get());
  for (grpc::Service* extra : extra_services_) builder.RegisterService(extra);
  // The socket is born with its final access: gRPC binds it inside
  // BuildAndStart, under this umask, so there is no window in which others
  // (or the group, when the mode gives it nothing) may connect. Only the
  // group and other bits are masked: the umask is process-wide, and a
  // directory another thread creates meanwhile must stay usable by us.
  mode_t previous = umask(static_cast<mode_t>(~addresses.unix_mode & 0077));
  server_ = builder.BuildAndStart();
  umask(previous);
  if (!server_ || (!addresses.tcp.empty() && tcp_port_ == 0)) {
    server_.reset();
    return MakeError(absl::StatusCode::kUnavailable, reason::kInvalidConfig,
                     "cannot bind the agent listeners (unix " +
                         addresses.unix_socket + ", tcp " + addresses.tcp + ")",
                     {{"unix", addresses.unix_socket}, {"tcp", addresses.tcp}});
  }
  unix_socket_ = addresses.unix_socket;
  if (!unix_socket_.empty()) {
    if (absl::Status s = FinishSocket(unix_socket_, addresses.unix_mode, gid); !s.ok()) {
      Shutdown(std::chrono::milliseconds(0));
      return s;
    }
  }
  return absl::OkStatus();
}

void AgentServer::Shutdown(std::chrono::milliseconds grace) {
  if (!server_) return;
  server_->Shutdown(std::chrono::system_clock::now() + grace);
  server_->Wait();
  server_.reset();
  if (!unix_socket_.empty()) unlink(unix_socket_.c_str());
}

}  // namespace kmsfleet
