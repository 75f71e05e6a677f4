// kmsfleet.v1.Fleet: the operator's API (fleet.proto). Every method checks
// its caller first (caller_auth.h); plan changes are the coordinator's.
#include <grpc/grpc.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <shared_mutex>
#include <thread>

#include "kmsfleet/cluster/cluster_server.h"
#include "kmsfleet/cluster/coordinator.h"
#include "kmsfleet/cluster/upload_idle_watch.h"
#include "kmsfleet/cluster/upload_store.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/v1/fleet.grpc.pb.h"

namespace kmsfleet {
namespace {

// How often WatchPlan sends the view even when nothing changed, so that a
// client sees elapsed times move and notices a dead stream.
constexpr std::chrono::seconds kWatchRefresh{1};
// How often a follower asks the coordinator for a watcher.
constexpr std::chrono::milliseconds kFollowerPoll{100};

// The caller of an operator command, as the coordinator waits for it.
CommandCaller CallerOf(grpc::ServerContext* context) {
  return {context->deadline(), [context] { return context->IsCancelled(); }};
}

class FleetService final : public v1::Fleet::Service {
 public:
  FleetService(PeerNode& node, CallerPolicy policy, Coordinator* coordinator,
               const UploadStore& uploads)
      : node_(node), policy_(std::move(policy)), coordinator_(coordinator), uploads_(uploads) {}

  grpc::Status GetLeader(grpc::ServerContext* context, const v1::GetLeaderRequest*,
                         v1::LeaderView* view) override {
    if (absl::Status s = Check(*context, "GetLeader"); !s.ok()) return ToGrpcStatus(s);
    *view = node_.View();
    return grpc::Status::OK;
  }

  grpc::Status ProposePlan(grpc::ServerContext* context, const v1::ProposePlanRequest* req,
                           v1::ProposePlanReply* reply) override {
    if (absl::Status s = Check(*context, "ProposePlan"); !s.ok()) return ToGrpcStatus(s);
    // A raw record must not replace a fleet plan that has not ended (its
    // break-glass nonce, halt or in-flight node would be lost with it), nor
    // be a fleet plan itself (one started without its guards).
    absl::StatusOr<v1::Fence> fence = node_.ProposePlan(
        req->in_flight(), req->payload(), std::chrono::seconds(5),
        [&req](const v1::PlanRecord& committed) {
          return CheckRawProposal(committed, req->payload());
        });
    if (!fence.ok()) return ToGrpcStatus(WithLeader(fence.status()));
    *reply->mutable_fence() = *fence;
    return grpc::Status::OK;
  }

  grpc::Status StartUpgrade(grpc::ServerContext* context, const v1::UpgradeRequest* req,
                            v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "StartUpgrade"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    // Held until the plan is committed: a prune in between would remove an
    // upload CheckHeldUploads has just found, and every node would fail to
    // stage it. Once committed, the plan keeps prunes away (see below).
    std::shared_lock<std::shared_mutex> held = uploads_.HoldUploads();
    if (absl::Status s = CheckHeldUploads(req->settings()); !s.ok()) return ToGrpcStatus(s);
    // A dry run commits nothing for a prune to race, and may wait on every
    // node's read-only preflight: prunes need not wait for it.
    if (req->dry_run()) held.unlock();
    return Reply(coordinator_->StartUpgrade(*req, Who(*context), CallerOf(context)), reply);
  }

  grpc::Status CommandPlan(grpc::ServerContext* context, const v1::PlanCommandRequest* req,
                           v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "CommandPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    return Reply(coordinator_->Command(*req, Who(*context), CallerOf(context)), reply);
  }

  grpc::Status GetPlan(grpc::ServerContext* context, const v1::GetPlanRequest*,
                       v1::PlanView* reply) override {
    if (absl::Status s = Check(*context, "GetPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    *reply = coordinator_->CoordinatorView();
    return grpc::Status::OK;
  }

  grpc::Status WatchPlan(grpc::ServerContext* context, const v1::GetPlanRequest*,
                         grpc::ServerWriter<v1::PlanView>* writer) override {
    if (absl::Status s = Check(*context, "WatchPlan"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    uint64_t version = 0;
    // Ends when the agent stops (the client says its agent went away):
    // left to run, it would hold the listener's shutdown for its grace.
    while (!context->IsCancelled() && !coordinator_->WatchesEnded()) {
      if (node_.View().role() != "Leader") {
        // A follower relays the coordinator's view, polled.
        if (!writer->Write(coordinator_->CoordinatorView())) break;
        std::this_thread::sleep_for(kFollowerPoll);
        continue;
      }
      if (!writer->Write(coordinator_->View(&version))) break;
      coordinator_->WaitForChange(version, kWatchRefresh);
    }
    return grpc::Status::OK;
  }

  grpc::Status ListPlans(grpc::ServerContext* context, const v1::ListPlansRequest*,
                         v1::PlanHistory* reply) override {
    if (absl::Status s = Check(*context, "ListPlans"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    *reply = coordinator_->History();
    return grpc::Status::OK;
  }

  grpc::Status UploadArtifact(grpc::ServerContext* context,
                              grpc::ServerReader<v1::ArtifactChunk>* reader,
                              v1::ArtifactRef* ref) override {
    if (absl::Status s = Check(*context, "UploadArtifact"); !s.ok()) return ToGrpcStatus(s);
    if (absl::Status s = HaveCoordinator(); !s.ok()) return ToGrpcStatus(s);
    if (node_.View().role() != "Leader") {
      return ToGrpcStatus(WithLeader(MakeError(absl::StatusCode::kUnavailable,
                                               reason::kNotLeader, "not the coordinator")));
    }
    absl::StatusOr<v1::ArtifactRef> stored = ReceiveUpload(*reader, *context);
    if (!stored.ok()) {
      Log(LogLevel::kWarn, "upload refused: " + std::string(stored.status().message()),
          {{"node", node_.self()}, {"reason", ReasonOf(stored.status())},
           {"caller", Who(*context)}});
      return ToGrpcStatus(stored.status());
    }
    Log(LogLevel::kInfo, "upload stored",
        {{"node", node_.self()}, {"name", stored->name()}, {"sha256", stored->sha256()},
         {"bytes", std::to_string(stored->size())}, {"caller", Who(*context)}});
    PruneUploadsOfPastPlans(stored->sha256());
    *ref = *std::move(stored);
    return grpc::Status::OK;
  }

  grpc::Status FetchArtifact(grpc::ServerContext* context, const v1::FetchArtifactRequest* req,
                             grpc::ServerWriter<v1::ArtifactChunk>* writer) override {
    if (absl::Status s = Check(*context, "FetchArtifact"); !s.ok()) return ToGrpcStatus(s);
    absl::StatusOr<std::string> path = uploads_.Find(req->sha256(), req->name());
    if (!path.ok()) return ToGrpcStatus(path.status());
    return ToGrpcStatus(SendUpload(*path, *req, *writer, *context));
  }

 private:
  // A new upload starts a new plan: uploads of finished plans, older than
  // any sibling of this one, go. While a plan is under way (paused,
  // halted and break-glass included) nothing is removed: it may stage again.
  // The plan is looked at inside Prune, once no start holds the uploads:
  // looked at before, a plan started in between would lose its upload.
  void PruneUploadsOfPastPlans(const std::string& just_stored) {
    std::vector<std::string> errors;
    const int removed = uploads_.Prune(
        std::chrono::system_clock::now() - kUploadKeepFor, just_stored, errors, [this] {
          v1::PlanView view = coordinator_->View();
          return !view.has_plan() || IsFinished(view.plan().phase());
        });
    if (removed > 0) {
      Log(LogLevel::kInfo, "uploads of past plans removed",
          {{"node", node_.self()}, {"count", std::to_string(removed)}});
    }
    for (const std::string& e : errors) {
      Log(LogLevel::kWarn, "cannot remove an old upload", {{"node", node_.self()}, {"error", e}});
    }
  }

  // A plan whose coordinator:// source names this agent starts only if the
  // upload is here: otherwise every node would fail to stage it and the
  // plan halt, where the operator can be told now (pruned after an hour,
  // or a source copied from an older plan). A source on another node is
  // checked by the agents that fetch it.
  absl::Status CheckHeldUploads(const v1::PlanSettings& settings) const {
    for (const std::string* source : {&settings.artifact_source(), &settings.checksums_source(),
                                      &settings.signature_source(),
                                      &settings.image_ref_source()}) {
      if (!IsCoordinatorSource(*source)) continue;
      absl::StatusOr<CoordinatorSource> parsed = ParseCoordinatorSource(*source);
      if (!parsed.ok()) return parsed.status();
      if (parsed->node != node_.self()) continue;
      if (absl::StatusOr<std::string> held = uploads_.Find(parsed->sha256, parsed->name);
          !held.ok()) {
        return MakeError(held.status().code(), ReasonOf(held.status()),
                         "the plan's source " + *source + " cannot start a plan: " +
                             std::string(held.status().message()),
                         {{"source", *source}});
      }
    }
    return absl::OkStatus();
  }

  // Every chunk into one writer; the last chunk's sha256 is the declared one.
  absl::StatusOr<v1::ArtifactRef> ReceiveUpload(grpc::ServerReader<v1::ArtifactChunk>& reader,
                                                grpc::ServerContext& context) {
    absl::StatusOr<std::unique_ptr<UploadStore::Writer>> writer = uploads_.Begin();
    if (!writer.ok()) return writer.status();
    v1::ArtifactChunk chunk;
    std::string declared;
    // A caller that neither sends nor hangs up would hold this thread, the
    // temp file and the stream's slot for ever: its stream is cancelled,
    // with a status that says why (TryCancel's says only CANCELLED). The
    // C call is what TryCancel itself makes, thread-safe; grpc.h says the
    // status is not sent, but gRPC's HTTP/2 server transport (1.51 here)
    // sends it in the trailers. FleetArtifactTest checks the message
    // arrives: an upgrade of gRPC that drops it fails there.
    const std::string why = StalledUploadCallerMessage(uploads_.limits());
    UploadIdleWatch idle(uploads_.limits().idle_timeout, [&context, &why] {
      grpc_call_cancel_with_status(context.c_call(), GRPC_STATUS_DEADLINE_EXCEEDED, why.c_str(),
                                   nullptr);
    });
    idle.AwaitingChunk();
    while (reader.Read(&chunk)) {
      idle.ChunkCame();
      if (absl::Status s = (*writer)->Append(chunk); !s.ok()) return s;
      declared = chunk.sha256();
      idle.AwaitingChunk();
    }
    if (idle.Stop()) return UploadStalled((*writer)->progress(), uploads_.limits());
    // A caller that went away (interrupted, or its file unreadable) ends
    // the stream as one that finished does. Found in review: its part was
    // fsynced, hashed and logged as refused for declaring no SHA-256.
    if (context.IsCancelled()) return UploadCut((*writer)->progress());
    return (*writer)->Commit(declared, node_.self());
  }

  static absl::Status UploadCut(const UploadProgress& got) {
    const std::string name = got.started ? got.name : "a file";
    return MakeError(absl::StatusCode::kCancelled, reason::kArtifactIo,
                     "the upload of " + name + " was cut by the caller after " +
                         std::to_string(got.received) + " bytes; nothing is stored",
                     {{"name", got.name}, {"bytes", std::to_string(got.received)}});
  }

  // The file in chunks of at most 1 MiB, then an empty chunk with the digest.
  absl::Status SendUpload(const std::string& path, const v1::FetchArtifactRequest& req,
                          grpc::ServerWriter<v1::ArtifactChunk>& writer,
                          grpc::ServerContext& context) {
    absl::StatusOr<ScopedFd> fd = OpenRegularFile(path, Symlinks::kRefuse);
    if (!fd.ok()) return fd.status();
    std::string block(kMaxUploadChunkBytes, '\0');
    uint64_t offset = 0;
    for (;;) {
      ssize_t n = ::read(fd->get(), block.data(), block.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                         "cannot read " + path + ": " + std::strerror(errno), {{"path", path}});
      }
      v1::ArtifactChunk chunk;
      chunk.set_name(req.name());
      chunk.set_offset(offset);
      if (n == 0) chunk.set_sha256(req.sha256());
      chunk.set_data(block.data(), static_cast<size_t>(n));
      if (context.IsCancelled() || !writer.Write(chunk)) {
        return MakeError(absl::StatusCode::kCancelled, reason::kArtifactIo,
                         "the caller went away while " + path + " was sent");
      }
      if (n == 0) return absl::OkStatus();
      offset += static_cast<uint64_t>(n);
    }
  }

  absl::Status Check(const grpc::ServerContext& context, const std::string& method) {
    return CheckCall(policy_, context, "/kmsfleet.v1.Fleet/" + method);
  }

  absl::Status HaveCoordinator() const {
    if (coordinator_ != nullptr) return absl::OkStatus();
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     node_.self() + " runs no coordinator runtime");
  }

  // Who asked, for the plan's audit.
  std::string Who(const grpc::ServerContext& context) const {
    Caller caller = CallerOf(policy_, context);
    switch (caller.kind) {
      case CallerKind::kLocal: return "local root";
      case CallerKind::kOperator: return "operator " + caller.name;
      default: return std::string(CallerKindName(caller.kind)) + " " + caller.name;
    }
  }

  // A follower's NOT_LEADER names the leader, so the caller can go there.
  absl::Status WithLeader(const absl::Status& s) {
    if (ReasonOf(s) != reason::kNotLeader) return s;
    v1::LeaderView view = node_.View();
    return MakeError(absl::StatusCode::kUnavailable, reason::kNotLeader,
                     node_.self() + " is not the coordinator; ask " +
                         (view.leader().empty() ? "again once one is elected"
                                                : view.leader() + " at " + view.leader_address()),
                     {{"leader", view.leader()}, {"leader_address", view.leader_address()}});
  }

  grpc::Status Reply(absl::StatusOr<v1::PlanView> view, v1::PlanView* reply) {
    if (!view.ok()) return ToGrpcStatus(WithLeader(view.status()));
    *reply = *std::move(view);
    return grpc::Status::OK;
  }

  PeerNode& node_;
  CallerPolicy policy_;
  Coordinator* coordinator_;
  const UploadStore& uploads_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewFleetService(PeerNode& node, CallerPolicy policy,
                                               Coordinator* coordinator,
                                               const UploadStore& uploads) {
  return std::make_unique<FleetService>(node, std::move(policy), coordinator, uploads);
}

}  // namespace kmsfleet
