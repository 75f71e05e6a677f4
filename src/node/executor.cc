// The executor's API, journals and worker thread. Carrying out the
// machine's steps is in swap_runner.cc.
#include "kmsfleet/node/executor.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <random>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/node/static_pod_installer.h"
#include "kmsfleet/node/static_pod_release.h"

namespace kmsfleet {
namespace {

absl::Status CheckOperationId(const std::string& id) {
  if (!IsSafeFileName(id) || id.size() > 128) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidOperationId,
                     "operation id \"" + id +
                         "\" must be 1-128 characters of [A-Za-z0-9._+-]",
                     {{"operation_id", id}});
  }
  return absl::OkStatus();
}

// When `j` entered its current phase: its newest "Phase@unix_ms" history
// entry, else its start (0 when neither can be read).
int64_t PhaseEnteredUnixMs(const SwapJournal& j) {
  if (j.history.empty()) return j.started_unix_ms;
  const std::string& last = j.history.back();
  const size_t at = last.rfind('@');
  if (at == std::string::npos) return 0;
  int64_t ms = 0;
  const char* end = last.data() + last.size();
  auto [ptr, ec] = std::from_chars(last.data() + at + 1, end, ms);
  return ec == std::errc() && ptr == end ? ms : 0;
}

std::unique_ptr<Installer> NewInstallerFor(const ExecutorOptions& options) {
  if (!options.static_pod) return NewBinaryInstaller(options.install_path);
  return NewStaticPodInstaller({.manifest_path = options.static_pod->manifest_path,
                                .container = options.static_pod->container});
}

// What kind of write error `s` is, for logging each kind once: its reason
// and the system's words after the last ": ", without the path before
// them (a temp file's name differs on every attempt).
std::string WriteErrorKind(const absl::Status& s) {
  std::string message(s.message());
  const size_t colon = message.rfind(": ");
  if (colon != std::string::npos) message.erase(0, colon + 2);
  return ReasonOf(s) + " " + message;
}

// A static-pod swap's release is the manifest rendered for its id
// (PlanStaticPodSwap). An admission refused once it was rendered takes it
// away again (found in review: CALLER_GONE left manifest-<id>.yaml in the
// release's directory for good). A rollback's target is a capture: kept.
void RemoveRenderedRelease(const ExecutorOptions& o, const SwapJournal& j) {
  if (!o.static_pod || j.kind != "swap" ||
      j.target_binary != RenderedManifestPath(o.state_dir, j.target_version, j.operation_id)) {
    return;
  }
  if (::unlink(j.target_binary.c_str()) != 0 && errno != ENOENT) {
    Log(LogLevel::kWarn, "could not remove the manifest rendered for a swap that did not start",
        {{"node", o.node}, {"operation", j.operation_id}, {"file", j.target_binary},
         {"error", std::strerror(errno)}});
  }
}

}  // namespace

struct Executor::OwnedSeams {
  std::unique_ptr<Installer> installer;
  std::unique_ptr<ProviderCli> cli;
  std::unique_ptr<JournalStore> journals;
  SteadyClock steady;
};

Executor::Executor(ExecutorOptions options, ExecutorSeams seams)
    : options_(std::move(options)), seams_(seams),
      fence_check_(NoElectionFenceCheck(options_.node, /*standalone=*/false)) {}

Executor::Executor(ExecutorOptions options, ProviderProbe& probe,
                   ServiceManager& services, const Clock& clock, ContainerRuntime* runtime)
    : Executor(options,
               std::make_unique<OwnedSeams>(OwnedSeams{
                   NewInstallerFor(options), NewProcessProviderCli(options.preflight),
                   NewFileJournalStore(options.state_dir), SteadyClock()}),
               probe, services, clock, runtime) {}

Executor::Executor(ExecutorOptions options, std::unique_ptr<OwnedSeams> owned,
                   ProviderProbe& probe, ServiceManager& services, const Clock& clock,
                   ContainerRuntime* runtime)
    : options_(std::move(options)),
      owned_(std::move(owned)),
      seams_{probe, services, *owned_->installer, *owned_->cli, *owned_->journals,
             clock, owned_->steady, runtime},
      fence_check_(NoElectionFenceCheck(options_.node, /*standalone=*/false)) {}

Executor::~Executor() { Stop(); }

void Executor::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
  if (learner_.joinable()) learner_.join();
}

absl::Status Executor::AgentStopping() const {
  return MakeError(absl::StatusCode::kUnavailable, reason::kAgentStopping,
                   "the agent on " + options_.node + " is stopping and starts no new operation",
                   {{"node", options_.node}});
}

absl::Status Executor::RefusalWhileStopping() {
  return RefusingNewCommands() ? AgentStopping() : absl::OkStatus();
}

absl::Status Executor::RefusalWhileInstalling(const std::string& version) const {
  for (const auto& [id, j] : ops_) {
    if (!j.open || j.kind != "swap" || j.target_version != version) continue;
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                     "operation " + id + " is swapping " + options_.node + " to " + version +
                         " (" + std::string(PhaseName(j.phase)) +
                         "): staging that version again now would replace the release it "
                         "installs; stage it once the operation has ended",
                     {{"node", options_.node}, {"operation_id", id}, {"version", version}});
  }
  // Claimed and not open in ops_: the swap is between its claim and its
  // journal, or its journal is closed and its worker not yet done.
  if (claimed_for_swap_ && claimed_for_swap_->version == version) {
    const std::string& id = claimed_for_swap_->operation_id;
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                     "operation " + id + ", a swap of " + options_.node + " to " + version +
                         ", is being admitted or ending: staging that version again now "
                         "would replace the release it installs; stage it once the "
                         "operation has ended",
                     {{"node", options_.node}, {"operation_id", id}, {"version", version}});
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<std::mutex>> Executor::MarkStaging(const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  KMSFLEET_RETURN_IF_ERROR(RefusalWhileInstalling(version));
  // The lock first: a failed allocation must not leave a mark that no
  // Unmark will take back (it would refuse every swap of the version).
  std::shared_ptr<std::mutex>& one_at_a_time = stage_locks_[version];
  if (!one_at_a_time) one_at_a_time = std::make_shared<std::mutex>();
  ++staging_[version];
  return one_at_a_time;
}

void Executor::UnmarkStaging(const std::string& version) {
  std::lock_guard<std::mutex> lock(mu_);
  if (--staging_[version] == 0) {
    staging_.erase(version);
    stage_locks_.erase(version);
  }
}

absl::Status Executor::ClaimForSwap(const std::string& version, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (staging_.contains(version)) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                     "a stage of " + version + " is running on " + options_.node +
                         ": a swap now would install a release being replaced; swap once the "
                         "stage has ended",
                     {{"node", options_.node}, {"version", version}});
  }
  claimed_for_swap_ = SwapClaim{version, id};
  return absl::OkStatus();
}

// The worker returns with its operation's journal open on disk.
void Executor::LeaveOpen() {
  std::lock_guard<std::mutex> lock(mu_);
  left_open_ = true;
}

bool Executor::RefusingNewCommands() {
  std::lock_guard<std::mutex> lock(mu_);
  return refusing_new_;
}

bool Executor::LeftAnOperationOpen() {
  std::lock_guard<std::mutex> lock(mu_);
  return left_open_;
}

std::string Executor::NewOperationId() const {
  std::random_device rd;
  return ::kmsfleet::NewOperationId(seams_.wall.NowUnixMillis(), rd());
}

void Executor::Hook(std::string_view point) const {
  if (step_hook_) step_hook_(point);
}

// The state directories are 0700; a provider command run as
// executor.run_as must still reach the release it runs (and doctor the
// paths below it), so the directories down to it become traversable (not
// listable) when run_as is set. Files inside keep their own modes.
absl::Status Executor::ShareWithRunAs(const std::string& dir) const {
  if (options_.preflight.run_as.empty()) return absl::OkStatus();
  return AllowTraverse(options_.state_dir, dir);
}

absl::Status Executor::Persist(SwapJournal& j) {
  j.updated_unix_ms = seams_.wall.NowUnixMillis();
  KMSFLEET_RETURN_IF_ERROR(seams_.journals.Save(j));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ops_[j.operation_id] = j;
  }
  changed_.notify_all();
  return absl::OkStatus();
}

// A phase is entered only once it is on disk: on a copy until then, so a
// failed write leaves `j` where the journal on disk says it is, and the
// machine decides from there. Before the unit was touched the failure
// fails the step (the machine closes the operation, provider untouched).
// After it, the write is tried again until it lands (RetryRecord), since
// failing the step would send the machine down the rollback path from a
// phase it never saved, with writes failing there too, and could leave
// the provider stopped.
absl::Status Executor::Record(SwapJournal& j, SwapPhase phase) {
  const SwapPhase left = j.phase;
  const int64_t entered = PhaseEnteredUnixMs(j);
  const int64_t now = seams_.wall.NowUnixMillis();
  SwapJournal next = j;
  KMSFLEET_RETURN_IF_ERROR(Advance(next, phase, now));
  absl::Status saved = Persist(next);
  if (!saved.ok() && left >= SwapPhase::kStopped) saved = RetryRecord(next, saved);
  KMSFLEET_RETURN_IF_ERROR(saved);
  j = std::move(next);
  if (phase_observer_ && entered > 0) {
    phase_observer_(PhaseName(left), static_cast<double>(now - entered) / 1000.0);
  }
  Log(LogLevel::kInfo, "operation phase",
      {{"node", options_.node}, {"operation", j.operation_id},
       {"phase", std::string(PhaseName(phase))}});
  Hook(PhaseName(phase));
  return absl::OkStatus();
}

// The end is reported only once the closed journal is on disk: until then
// a restart would finish or undo the operation from its open journal, so
// the node must not be released, nor another operation admitted (it could
// replace the binary that the stale journal would then "roll back").
void Executor::Close(SwapJournal& j) {
  j.open = false;
  if (absl::Status s = Persist(j); !s.ok() && !RetryClose(j, s).ok()) {
    Log(LogLevel::kWarn, "agent stopping with the journal still open; the next start "
                         "recovers the operation",
        {{"node", options_.node}, {"operation", j.operation_id}});
    return LeaveOpen();
  }
  Log(LogLevel::kInfo, "operation ended",
      {{"node", options_.node},
       {"operation", j.operation_id},
       {"phase", std::string(PhaseName(j.phase))},
       {"reason", j.failure_reason}});
}

// Writes `j` again, with a growing delay (CloseRetryDelayMs), until it
// lands or the executor stops. Each distinct error is logged once, as
// `retrying` and the error; `each_failure` runs before each wait. Returns
// OK once written, or the latest failure when the executor stops.
absl::Status Executor::PersistUntilWritten(
    SwapJournal& j, absl::Status failed, const std::string& retrying,
    const std::function<void(const absl::Status&)>& each_failure) {
  std::string logged;  // the kind of error last logged
  for (int failures = 1;; ++failures) {
    if (std::string kind = WriteErrorKind(failed); kind != logged) {
      Log(LogLevel::kError, retrying + std::string(failed.message()),
          {{"node", options_.node}, {"operation", j.operation_id},
           {"phase", std::string(PhaseName(j.phase))}, {"reason", ReasonOf(failed)}});
      logged = std::move(kind);
    }
    if (each_failure) each_failure(failed);
    if (!SleepUnlessStopping(std::chrono::milliseconds(CloseRetryDelayMs(failures)))) {
      return failed;
    }
    failed = Persist(j);
    if (failed.ok()) return failed;
  }
}

// Writes phase `next` again until it lands (PersistUntilWritten).
// Meanwhile the worker holds busy_ and the journal on disk, open at its
// last phase, keeps the node's slot (DecideHandoff). On stop it returns
// Cancelled: the operation is left open for the next start to recover.
absl::Status Executor::RetryRecord(SwapJournal& next, absl::Status failed) {
  if (!PersistUntilWritten(next, std::move(failed),
                           "cannot record phase " + std::string(PhaseName(next.phase)) +
                               ", retrying before going on: ",
                           {})
           .ok()) {
    return absl::CancelledError("kmsfleetd is stopping while " + next.operation_id +
                                " could not record " + std::string(PhaseName(next.phase)) +
                                "; the next start recovers it from its journal");
  }
  Log(LogLevel::kInfo, "phase recorded after retries",
      {{"node", options_.node}, {"operation", next.operation_id},
       {"phase", std::string(PhaseName(next.phase))}});
  return absl::OkStatus();
}

// Writes the closed journal again until it lands (PersistUntilWritten).
// Meanwhile the worker holds busy_, watchers see the end phase with the
// journal still open (not done), and the hand-off query answers running
// with the reason (DecideHandoff). Returns OK once written, or `failed`'s
// latest on stop.
absl::Status Executor::RetryClose(SwapJournal& j, absl::Status failed) {
  SwapJournal shown = j;
  shown.open = true;
  failed = PersistUntilWritten(j, std::move(failed), "cannot close journal, retrying: ",
                               [&](const absl::Status& latest) {
                                 {
                                   std::lock_guard<std::mutex> lock(mu_);
                                   ops_[j.operation_id] = shown;
                                   pending_close_ =
                                       PendingClose{j, std::string(latest.message())};
                                 }
                                 changed_.notify_all();
                               });
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_close_.reset();
  }
  if (failed.ok()) {
    Log(LogLevel::kInfo, "journal closed after retries",
        {{"node", options_.node}, {"operation", j.operation_id}});
  }
  return failed;
}

// Set by Stop, once the agent has drained its listeners.
bool Executor::Stopping() {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

// Sleeps `total` on the steady clock in short slices; false as soon as the
// executor is stopping, so its destructor never waits on a long backoff.
bool Executor::SleepUnlessStopping(std::chrono::milliseconds total) {
  constexpr std::chrono::milliseconds kSlice(100);
  while (true) {
    if (Stopping()) return false;
    if (total <= std::chrono::milliseconds(0)) return true;
    const std::chrono::milliseconds step = std::min(total, kSlice);
    seams_.steady.SleepFor(step);
    total -= step;
  }
}

absl::StatusOr<SwapJournal> Executor::Load(const std::string& id) {
  KMSFLEET_RETURN_IF_ERROR(CheckOperationId(id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = ops_.find(id); it != ops_.end()) return it->second;
  }
  return seams_.journals.Load(id);
}

// Found in review: a coordinator following a swap whose call had timed out
// (sent follow-only, the plan paused) was answered NotFound while the swap
// was still being admitted, between the reservation and its journal, and
// the plan gave the node's slot back "untouched" as the swap started.
// Admitting is read before the disk: an admission that ends meanwhile has
// put its journal in ops_ first. One that starts after this lookup is
// refused if its caller gave up (CALLER_GONE); one whose caller is still
// there (a deposed coordinator's call still in flight) may start, which
// the plan finds at the node's release (PlanStep::StepRanAfterAll).
absl::StatusOr<SwapJournal> Executor::LoadForCaller(const std::string& id) {
  KMSFLEET_RETURN_IF_ERROR(CheckOperationId(id));
  bool admitting = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = ops_.find(id); it != ops_.end()) return it->second;
    admitting = admitting_.contains(id);
  }
  absl::StatusOr<SwapJournal> j = seams_.journals.Load(id);
  if (!admitting || !absl::IsNotFound(j.status())) return j;
  return MakeError(absl::StatusCode::kUnavailable, reason::kOperationBeingAdmitted,
                   "operation " + id + " is being admitted on " + options_.node +
                       ": it either starts or is refused in a moment; ask again",
                   {{"node", options_.node}, {"operation_id", id}});
}

bool IsBeingAdmitted(const absl::Status& s) {
  return absl::IsUnavailable(s) && ReasonOf(s) == reason::kOperationBeingAdmitted;
}

FenceCheck NoElectionFenceCheck(std::string node, bool standalone) {
  return [node, standalone](const std::optional<v1::Fence>& fence) -> absl::Status {
    if (!fence && standalone) return absl::OkStatus();
    if (!fence) {
      return MakeError(absl::StatusCode::kFailedPrecondition,
                       reason::kStandaloneNotConfigured,
                       "node " + node + " has no cluster: section and is not declared "
                       "standalone: true, so nothing keeps another node from swapping "
                       "at the same time; configure the cluster, or set standalone: true "
                       "on a single-node control plane");
    }
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNoElection,
                     "node " + node + " runs no election (its config has no cluster: "
                     "section), so it cannot check fence " +
                         std::to_string(fence->term()) + "/" +
                         std::to_string(fence->index()) +
                         "; send the command without a fence or configure the cluster",
                     {{"fence_term", std::to_string(fence->term())},
                      {"fence_index", std::to_string(fence->index())}});
  };
}

bool Executor::Busy() {
  std::lock_guard<std::mutex> lock(mu_);
  return busy_;
}

HandoffAnswer Executor::HandoffOutcome(const v1::Fence& fence) {
  JournalStore::Scan scan = seams_.journals.LoadAll();
  HandoffFacts facts;
  facts.unreadable = std::move(scan.unreadable);
  std::map<std::string, SwapJournal> journals;
  for (SwapJournal& j : scan.journals) journals[j.operation_id] = std::move(j);
  std::lock_guard<std::mutex> lock(mu_);
  facts.busy = busy_;
  facts.pending_close = pending_close_;
  // The worker's copy wins; while it is mid-write, busy_ decides anyway.
  for (const auto& [id, j] : ops_) journals[id] = j;
  for (auto& [id, j] : journals) facts.journals.push_back(std::move(j));
  return DecideHandoff(facts, fence);
}

// Marks the executor busy, then checks the fence without holding mu_: the
// check takes the election's lock, and the election's hand-off query asks
// Busy() under it. Busy first means that query never answers "finished"
// while a command it could no longer refuse is being admitted. The wait for
// the fence's commit comes before busy: it decides nothing, and a forged
// fence one record ahead would otherwise hold the node busy, answering
// hand-off queries "running", for as long as the wait.
absl::Status Executor::Reserve(const std::optional<v1::Fence>& fence) {
  if (fence && fence_wait_) {
    {
      // Refused at once, not after the wait (which would change nothing).
      std::lock_guard<std::mutex> lock(mu_);
      KMSFLEET_RETURN_IF_ERROR(RefusalNow());
    }
    fence_wait_(*fence);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    KMSFLEET_RETURN_IF_ERROR(RefusalNow());
    busy_ = true;
  }
  absl::Status admitted = fence_check_(fence);
  if (!admitted.ok()) Unreserve();
  return admitted;
}

absl::Status Executor::RefusalNow() const {
  if (refusing_new_) return AgentStopping();
  if (starting_) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kAgentStarting,
                     "the agent on " + options_.node +
                         " is still starting and admits no operation yet",
                     {{"node", options_.node}});
  }
  if (!unreadable_at_start_.empty()) return RefusalForUnreadableJournals();
  if (busy_) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kOperationInProgress,
                     "another operation is running on this node");
  }
  return absl::OkStatus();
}

void Executor::RefuseNewCommands() {
  std::lock_guard<std::mutex> lock(mu_);
  refusing_new_ = true;
}

void Executor::RefuseNewCommandsUntilStarted() {
  std::lock_guard<std::mutex> lock(mu_);
  starting_ = true;
}

void Executor::Started() {
  std::lock_guard<std::mutex> lock(mu_);
  starting_ = false;
}

void Executor::Unreserve() {
  std::lock_guard<std::mutex> lock(mu_);
  busy_ = false;
  claimed_for_swap_.reset();
}

absl::Status Executor::RunAdmitted(const std::optional<v1::Fence>& fence,
                                   const std::function<void()>& work,
                                   const std::optional<NodeCommand>& bound_to_plan,
                                   const std::function<bool()>& caller_gone) {
  KMSFLEET_RETURN_IF_ERROR(Reserve(fence));
  if (bound_to_plan) {
    if (absl::StatusOr<PlanBinding> bound = plan_check_(*bound_to_plan); !bound.ok()) {
      Unreserve();
      return bound.status();
    }
  }
  if (caller_gone && caller_gone()) {
    Unreserve();
    return CallerGone(bound_to_plan ? bound_to_plan->operation_id : "");
  }
  work();
  Unreserve();
  changed_.notify_all();
  return absl::OkStatus();
}

// The steps every disruptive command shares: an idempotent operation id,
// the fence, then `plan` fills in the journal, and the worker runs it.
// Lookups of the id answer BeingAdmitted until the admission has put its
// journal in ops_ or refused (LoadForCaller).
absl::StatusOr<SwapJournal> Executor::Start(const CommandParams& c, NodeCommand what,
                                            const PlanOperation& plan) {
  const std::string id = c.operation_id.empty() ? NewOperationId() : c.operation_id;
  KMSFLEET_RETURN_IF_ERROR(CheckOperationId(id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++admitting_[id];
  }
  // Unmarked on every way out, an exception too (found in review): a mark
  // left behind would answer OPERATION_BEING_ADMITTED for the id for good.
  struct Unmark {
    Executor& executor;
    const std::string& id;
    ~Unmark() {
      {
        std::lock_guard<std::mutex> lock(executor.mu_);
        if (--executor.admitting_[id] == 0) executor.admitting_.erase(id);
      }
      executor.changed_.notify_all();
    }
  } unmark{*this, id};
  return Admit(c, std::move(what), id, plan);
}

absl::StatusOr<SwapJournal> Executor::Admit(const CommandParams& c, NodeCommand what,
                                            const std::string& id, const PlanOperation& plan) {
  const std::string kind = what.kind == NodeCommand::Kind::kSwap ? "swap" : "rollback";
  if (absl::StatusOr<SwapJournal> existing = Load(id); existing.ok()) {
    return SameCommand(*std::move(existing), what, c);
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();  // a corrupt record is not a free id
  }
  KMSFLEET_RETURN_IF_ERROR(CheckStabilizationMs(c.stabilization_ms));
  KMSFLEET_RETURN_IF_ERROR(CheckExpectedKeyIdHash(c.expected_key_id_hash));
  KMSFLEET_RETURN_IF_ERROR(Reserve(c.fence));
  // Again once reserved: the same command sent twice at once may both have
  // found the id free, this one then waiting for its fence while the other
  // ran (and ended): it is answered from that record, not run again.
  if (absl::StatusOr<SwapJournal> ran = Load(id); ran.ok() || !absl::IsNotFound(ran.status())) {
    Unreserve();
    if (!ran.ok()) return ran;
    return SameCommand(*std::move(ran), what, c);
  }
  what.operation_id = id;
  what.stabilization_ms = c.stabilization_ms;
  what.sent_by = c.sent_by;
  absl::StatusOr<PlanBinding> bound = c.bound_to_plan ? plan_check_(what) : PlanBinding{};
  if (!bound.ok()) {
    Unreserve();  // the plan check logs why, at most once each 10 s per reason
    return bound.status();
  }
  absl::StatusOr<SwapJournal> j = plan(id);
  if (!j.ok()) {
    Unreserve();
    return j.status();
  }
  j->operation_id = id;
  j->kind = kind;
  j->of_operation_id = what.of_operation_id;
  if (kind == "swap") {
    j->restore_refused_once_served = bound->restore_refused_once_served;
    // A plan's swap takes the plan's acknowledgement, an operator's its own.
    j->checkpoint_acknowledged =
        c.bound_to_plan ? bound->checkpoint_acknowledged : c.checkpoint_acknowledged;
  }
  j->expected_key_id_hash = c.expected_key_id_hash;
  j->stabilization_ms = c.stabilization_ms > 0 ? c.stabilization_ms
                                               : options_.default_stabilization_ms;
  if (c.fence) {
    j->fence_term = c.fence->term();
    j->fence_index = c.fence->index();
  }
  // Last, after the waits admission may take (the fence's commit, the
  // checks of the target): a caller that has given up, a coordinator whose
  // call timed out, may have gone on to decide on the node as it was.
  Hook("admitting");
  if (c.caller_gone && c.caller_gone()) {
    RemoveRenderedRelease(options_, *j);
    Unreserve();
    return CallerGone(id);
  }
  return Launch(std::move(*j));
}

// An operation id names one command: sent again as another (a rollback
// under a swap's id, a swap to another version), it is refused rather than
// answered with the operation the id names, which the caller would take
// for its own (found in review: `node swap --version 0.3.0` under the id
// of a swap to 0.2.0 printed that Stable swap and exited 0).
absl::StatusOr<SwapJournal> Executor::SameCommand(SwapJournal j, const NodeCommand& what,
                                                  const CommandParams& c) const {
  const bool swap = what.kind == NodeCommand::Kind::kSwap;
  const std::string kind = swap ? "swap" : "rollback";
  // A rollback journaled before of_operation_id names none: it matches any.
  const bool same_target = swap ? j.target_version == what.version
                                : j.of_operation_id.empty() ||
                                      j.of_operation_id == what.of_operation_id;
  if (j.kind == kind && same_target) {
    // Found in review: an operator refused STATE_CHECKPOINT_NOT_CURRENT who
    // sent the same line again with --acknowledge was answered with the
    // refused operation, whose remedy named the flag just given.
    if (!c.checkpoint_acknowledged || j.checkpoint_acknowledged) {
      KMSFLEET_RETURN_IF_ERROR(SameOperatorSettings(j, what, c));
      return j;
    }
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kOperationIdReused,
                     "operation id " + j.operation_id + " already names a swap to " +
                         j.target_version + " on " + options_.node + " sent without --acknowledge " +
                         reason::kAckStateCheckpointNotCurrent + " (" +
                         std::string(PhaseName(j.phase)) +
                         "); the acknowledged swap is a command of its own: give it a new "
                         "--operation-id",
                     {{"node", options_.node}, {"operation_id", j.operation_id}});
  }
  const auto named = [](const std::string& k, const std::string& version,
                        const std::string& of) {
    if (k == "swap") return "a swap to " + version;
    return of.empty() ? "a " + k : "a " + k + " of " + of;
  };
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kOperationIdReused,
                   "operation id " + j.operation_id + " already names " +
                       named(j.kind, j.target_version, j.of_operation_id) + " on " +
                       options_.node + ", not " +
                       named(kind, what.version, what.of_operation_id) +
                       "; give this command an id of its own",
                   {{"node", options_.node}, {"operation_id", j.operation_id}});
}

// Found in review: an operator refused ACTIVE_KEY_NOT_EXPECTED who sent
// the swap again with the corrected --expected-key-id-hash under the same
// --operation-id got the refusal back, and one whose Stable swap ran with
// another hash, window or staged digest would be told the new command had
// passed. Sent by an operator with another of these, the id names another
// command. A value not given asks for the default and matches any. Not for
// a coordinator's command: its re-send of the plan's step carries the
// parity hash of the round at hand, which may differ from the first send's,
// and must be answered with the operation the step started. A coordinator
// always sends under a member certificate, so bound_to_plan (a cluster on
// plain TCP has no coordinator sending commands: Coordinator builds no
// FleetActions without TLS).
absl::Status Executor::SameOperatorSettings(const SwapJournal& j, const NodeCommand& what,
                                            const CommandParams& c) const {
  if (c.bound_to_plan) return absl::OkStatus();
  std::string setting, journaled, sent;
  if (!c.expected_key_id_hash.empty() && !j.expected_key_id_hash.empty() &&
      c.expected_key_id_hash != j.expected_key_id_hash) {
    setting = "expected key_id hash";
    journaled = j.expected_key_id_hash;
    sent = c.expected_key_id_hash;
  } else if (c.stabilization_ms > 0 && c.stabilization_ms != j.stabilization_ms) {
    setting = "stabilisation window (ms)";
    journaled = std::to_string(j.stabilization_ms);
    sent = std::to_string(c.stabilization_ms);
  } else if (!what.expected_staged_digest.empty() && !j.staged_digest.empty() &&
             what.expected_staged_digest != j.staged_digest) {
    setting = "staged digest";
    journaled = j.staged_digest;
    sent = what.expected_staged_digest;
  } else {
    return absl::OkStatus();
  }
  const std::string command = j.kind == "swap" ? "a swap to " + j.target_version : "a " + j.kind;
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kOperationIdReused,
                   "operation id " + j.operation_id + " already names " + command + " on " +
                       options_.node + " with " + setting + " " + journaled + " (" +
                       std::string(PhaseName(j.phase)) +
                       (j.failure_reason.empty() ? "" : ", " + j.failure_reason) + "), not " +
                       sent + ": sent with another, it is a command of its own: give it a new "
                       "--operation-id",
                   {{"node", options_.node},
                    {"operation_id", j.operation_id},
                    {"setting", setting},
                    {"journaled", journaled},
                    {"sent", sent}});
}

absl::Status Executor::CallerGone(const std::string& operation_id) const {
  Log(LogLevel::kWarn, "command not started: its caller gave up before it could start",
      {{"node", options_.node}, {"operation", operation_id}});
  return MakeError(absl::StatusCode::kCancelled, reason::kCallerGone,
                   "the caller gave up (deadline passed or cancelled) before " +
                       (operation_id.empty() ? std::string("the command")
                                             : "operation " + operation_id) +
                       " could start on " + options_.node + "; nothing was started",
                   {{"node", options_.node}, {"operation_id", operation_id}});
}

// REQUIRES: Reserve() succeeded; the worker clears busy_ when it ends.
absl::StatusOr<SwapJournal> Executor::Launch(SwapJournal j) {
  if (worker_.joinable()) worker_.join();
  j.sequence = NextSequence();
  j.started_unix_ms = seams_.wall.NowUnixMillis();
  j.history.push_back("Idle@" + std::to_string(j.started_unix_ms));
  if (absl::Status s = Persist(j); !s.ok()) {
    RemoveRefusedAdmission(j, s);
    Unreserve();
    return s;
  }
  worker_ = std::thread([this, j] {
    BeginEarlyReads(j);
    Run(j, FirstSwapStep());
    Unreserve();
  });
  return j;
}

namespace {

uint64_t HighestSequence(const std::vector<SwapJournal>& journals) {
  uint64_t highest = 0;
  for (const SwapJournal& j : journals) highest = std::max(highest, j.sequence);
  return highest;
}

}  // namespace

// One more than any journal's, so the hand-off orders the node's
// operations as they were admitted (DecideHandoff). Known from
// StartRecovery's scan; scanned here when it did not run. Launch is
// serialised by busy_.
uint64_t Executor::NextSequence() {
  std::optional<uint64_t> last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    last = last_sequence_;
  }
  if (!last) last = HighestSequence(seams_.journals.LoadAll().journals);
  std::lock_guard<std::mutex> lock(mu_);
  last_sequence_ = std::max(last_sequence_.value_or(0), *last) + 1;
  return *last_sequence_;
}

// A journal write can fail after its rename (the directory's fsync): the
// open journal is then on disk, and the hand-off would keep the node's
// slot (HANDOFF_JOURNAL_OPEN: break-glass) for an operation that never
// started, until a restart closed it; closed now, a command sent again
// under the same id would be answered from it as failed. It is removed,
// so the admission leaves nothing behind (a crash before that is durable
// brings the open journal back, which the start then closes).
void Executor::RemoveRefusedAdmission(const SwapJournal& j, const absl::Status& refusal) {
  absl::StatusOr<SwapJournal> on_disk = seams_.journals.Load(j.operation_id);
  if (!on_disk.ok() && absl::IsNotFound(on_disk.status())) return;
  // Reserved (busy_) since before the write: nothing else can have
  // written under this id meanwhile.
  absl::Status removed = on_disk.ok() && on_disk->open && on_disk->phase == SwapPhase::kIdle
                             ? seams_.journals.Remove(j.operation_id)
                             : on_disk.status();
  if (!removed.ok()) {
    Log(LogLevel::kError, "journal of a refused admission may be left open; the node keeps its "
                          "slot until kmsfleetd restarts and closes it",
        {{"node", options_.node}, {"operation", j.operation_id}, {"reason", ReasonOf(refusal)},
         {"error", std::string(refusal.message()) + "; then: " + std::string(removed.message())}});
  }
}

// A plan preflights the release it staged; the same version staged again
// since (another signed build, another image, by hand or by another tool)
// is not it. `what`: the staged files, for the message.
absl::Status Executor::CheckStagedDigest(const SwapParams& p, const std::string& staged_digest,
                                         const std::string& what) const {
  if (p.expected_staged_digest.empty() || p.expected_staged_digest == staged_digest) {
    return absl::OkStatus();
  }
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kStagedArtifactChanged,
                   "the release of " + p.version + " staged on " + options_.node + " (" + what +
                       ") has digest " + staged_digest + ", not " + p.expected_staged_digest +
                       ", the one the swap expects: it was staged again since. `kmsfleetctl "
                       "resume` stages the plan's release again; by hand, swap without the "
                       "digest",
                   {{"node", options_.node},
                    {"version", p.version},
                    {"staged_digest", staged_digest},
                    {"expected_staged_digest", p.expected_staged_digest}});
}

absl::StatusOr<std::string> Executor::StagedDigest(const std::string& version) {
  // On a static-pod node the staged binary is the kit's.
  KMSFLEET_ASSIGN_OR_RETURN(StagedArtifact staged,
                            FindStagedUnverified(options_.artifacts, version));
  if (!options_.static_pod) return staged.sha256;
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef image, FindStagedImage(options_.state_dir, version));
  return StaticPodStagedDigest(staged.sha256, image.ToString());
}

absl::StatusOr<SwapJournal> Executor::PlanSwap(const SwapParams& p, const std::string& id) {
  if (options_.static_pod) return PlanStaticPodSwap(p, id);
  // Not hashed here: the operation's first step (CheckTarget) hashes the
  // file against this digest before anything else is done.
  KMSFLEET_ASSIGN_OR_RETURN(StagedArtifact staged,
                            FindStagedUnverified(options_.artifacts, p.version));
  KMSFLEET_RETURN_IF_ERROR(CheckStagedDigest(p, staged.sha256, staged.binary_path));
  KMSFLEET_RETURN_IF_ERROR(ShareWithRunAs(ArtifactDir(options_.state_dir, p.version)));
  SwapJournal j;
  j.target_version = p.version;
  j.target_binary = staged.binary_path;
  j.target_sha256 = staged.sha256;
  j.staged_digest = staged.sha256;
  return j;
}

absl::StatusOr<SwapJournal> Executor::PlanRollback(const RollbackParams& p) {
  KMSFLEET_ASSIGN_OR_RETURN(SwapJournal of, Load(p.of_operation_id));
  if (of.phase != SwapPhase::kStable || of.previous_binary.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotRollbackable,
                     "operation " + of.operation_id + " ended " +
                         std::string(PhaseName(of.phase)) +
                         "; only a Stable swap can be rolled back",
                     {{"operation_id", of.operation_id}});
  }
  KMSFLEET_RETURN_IF_ERROR(CheckRollbackTarget(of, p.expected_version, options_.node));
  // A swap its plan bound (one-way, wire format) was ready: undoing it by
  // hand is the same rollback its node refused to make (found in review).
  KMSFLEET_RETURN_IF_ERROR(CheckRestoreOnceServed(of));
  // Undoing `of` means replacing what it installed. If something else was
  // installed since (a later swap, a change by hand), restoring its
  // previous release would skip that one and leave its journal wrong.
  absl::StatusOr<std::string> installed = seams_.installer.Observe();
  if (installed.ok() && *installed != of.target_sha256) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotRollbackable,
                     "operation " + of.operation_id + " installed " +
                         of.target_sha256.substr(0, 12) + " (" + of.target_version +
                         "), but what is installed now is " + installed->substr(0, 12) +
                         ": a later swap or a change by hand replaced it; roll back the "
                         "latest operation instead",
                     {{"operation_id", of.operation_id}});
  }
  if (::access(of.previous_binary.c_str(), F_OK) != 0 && errno == ENOENT) {
    return MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kNotRollbackable,
        "operation " + of.operation_id + "'s copy of the release it replaced (" +
            of.previous_version + ", " + of.previous_binary +
            ") is gone: a node keeps the copies for executor.rollback_steps rollbacks in a "
            "row from what is installed when an operation ends; stage " +
            of.previous_version + " and swap to it instead",
        {{"operation_id", of.operation_id}, {"file", of.previous_binary}});
  }
  SwapJournal j;
  j.target_version = of.previous_version;
  j.target_binary = of.previous_binary;
  j.target_sha256 = of.previous_sha256;
  j.replaces_sha256 = of.target_sha256;
  // The registry the older binary served with, for the refusal rule.
  j.registry_schema = of.registry_schema;
  j.registry_removed_records = of.registry_removed_records;
  // What must still be active if the rollback goes to an older release.
  j.key_id_hash_before_undone = KeyIdHashBeforeUndone(of);
  // What runs now, until the capture reads it (a refusal before names it).
  j.previous_version = of.target_version;
  return j;
}

namespace {

// A node judges one acknowledgement itself: the checkpoint's (the others
// are the plan's guards, which a swap by hand does not run). A member's
// command takes the plan's; one it sent of its own would let a
// coordinator's certificate past a refusal the operator never waived.
absl::Status CheckSwapAcknowledgements(const SwapParams& p) {
  for (const std::string& code : p.acknowledgements) {
    const std::string shown = code.substr(0, 64);  // the caller's, bounded
    if (p.command.bound_to_plan) {
      return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                       "a plan's swap carries no acknowledgement of its own (here " + shown +
                           "): the committed plan's are used",
                       {{"acknowledge", shown}});
    }
    if (code == reason::kAckStateCheckpointNotCurrent) continue;
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidArgument,
                     "--acknowledge \"" + shown + "\" is not one a node's swap judges: only " +
                         std::string(reason::kAckStateCheckpointNotCurrent) +
                         " (the other codes are the plan's, given to `kmsfleetctl upgrade`)",
                     {{"acknowledge", shown}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SwapJournal> Executor::Swap(const SwapParams& p) {
  KMSFLEET_RETURN_IF_ERROR(CheckSwapAcknowledgements(p));
  CommandParams command = p.command;
  command.checkpoint_acknowledged =
      Acknowledged(p.acknowledgements, reason::kAckStateCheckpointNotCurrent);
  return Start(command,
               NodeCommand{.kind = NodeCommand::Kind::kSwap,
                           .version = p.version,
                           .expected_staged_digest = p.expected_staged_digest},
               [&](const std::string& id) -> absl::StatusOr<SwapJournal> {
                 KMSFLEET_RETURN_IF_ERROR(ClaimForSwap(p.version, id));
                 return PlanSwap(p, id);
               });
}

absl::StatusOr<SwapJournal> Executor::Rollback(const RollbackParams& p) {
  return Start(p.command,
               NodeCommand{.kind = NodeCommand::Kind::kRollback,
                           .of_operation_id = p.of_operation_id},
               [&](const std::string&) { return PlanRollback(p); });
}

absl::StatusOr<SwapJournal> Executor::Get(const std::string& id) { return LoadForCaller(id); }

absl::StatusOr<SwapJournal> Executor::WaitForUpdate(const std::string& id,
                                                    size_t seen,
                                                    std::chrono::milliseconds timeout) {
  absl::StatusOr<SwapJournal> first = LoadForCaller(id);
  if (IsBeingAdmitted(first.status())) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return !admitting_.contains(id) || ops_.contains(id); });
    lock.unlock();
    return LoadForCaller(id);
  }
  KMSFLEET_ASSIGN_OR_RETURN(SwapJournal j, std::move(first));
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(lock, timeout, [&] {
    auto it = ops_.find(id);
    return it != ops_.end() &&
           (it->second.history.size() > seen || !it->second.open);
  });
  if (auto it = ops_.find(id); it != ops_.end()) return it->second;
  return j;
}

// REQUIRES: mu_ held.
absl::Status Executor::RefusalForUnreadableJournals() const {
  std::string listed;
  for (const std::string& why : unreadable_at_start_) {
    listed += (listed.empty() ? "" : "; ") + why;
  }
  return MakeError(absl::StatusCode::kDataLoss, reason::kJournalCorrupt,
                   "node " + options_.node + " starts no operation: at start it could not "
                   "read " + listed + ". An operation recorded there may be unfinished. "
                   "Repair the journal, or move it out of the directory if its operation "
                   "ended (\"open\": false), then restart kmsfleetd",
                   {{"node", options_.node}, {"journal", unreadable_at_start_.front()}});
}

void Executor::StartRecovery() {
  JournalStore::Scan scan = seams_.journals.LoadAll();
  const uint64_t highest_sequence = HighestSequence(scan.journals);
  std::vector<SwapJournal> open;
  for (SwapJournal& j : scan.journals) {
    if (j.open) open.push_back(std::move(j));
  }
  for (const std::string& why : scan.unreadable) {
    Log(LogLevel::kError, "journal unreadable; refusing new operations",
        {{"node", options_.node}, {"reason", reason::kJournalCorrupt}, {"journal", why}});
  }
  // With an operation to recover, the prune follows the recovery.
  if (open.empty() && scan.unreadable.empty()) PruneCapturesFromDisk();
  std::lock_guard<std::mutex> lock(mu_);
  unreadable_at_start_ = std::move(scan.unreadable);
  last_sequence_ = std::max(last_sequence_.value_or(0), highest_sequence);
  // Known before the recovery's first write: a stage of the version an
  // open swap installs is refused from the start (RefusalWhileInstalling).
  for (const SwapJournal& j : open) ops_.emplace(j.operation_id, j);
  if (open.empty()) {
    // The installed release's `version` and `config` answers depend only on
    // its bytes and the config file (command_memo.h): learnt now, off any
    // command's path, a plan's stage and preflight find them kept.
    if (!options_.static_pod && !learner_.joinable() && !stopping_ &&
        unreadable_at_start_.empty()) {
      learner_ = std::thread([this] { seams_.cli.LearnKeptAnswers(options_.install_path); });
    }
    return;
  }
  busy_ = true;
  worker_ = std::thread([this, open = std::move(open)] {
    recovering_ = true;
    for (const SwapJournal& j : open) {
      // Stopped meanwhile: the rest stay open for the next start, rather
      // than being installed and started during the stop.
      if (Stopping()) {
        LeaveOpen();
        break;
      }
      Recover(j);
    }
    recovering_ = false;
    if (!Stopping()) PruneCapturesFromDisk();
    Unreserve();
  });
}

}  // namespace kmsfleet
