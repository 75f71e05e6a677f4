// --plan: each simulated node's executor and provider. The executor admits
// swaps and rollbacks with the real FenceGuard (as the toy executor of the
// election simulation does), runs one operation at a time for a simulated
// while and ends it Stable, RolledBack or RollbackFailed, or failed before
// the stop (doctor failed at the swap: nothing touched); an agent crash in
// the middle leaves the provider down until the restarted agent recovers
// the operation, forward or back, or closes it where it was if that was
// before the stop (AGENT_RESTARTED). Every operation is remembered by its
// id, so a command sent again (a retry, a new coordinator, the adversary's
// replay) starts nothing new. The provider reports a version, a key_id
// hash (a promoted rotation reaches the nodes one by one), a rotation state
// and its registry's `removed` count. A rollback to an older release is
// refused before its stop when the node's hash is not the one the undone
// operation captured.
#include "kmsfleet/core/plan_command_guard.h"
#include "kmsfleet/core/plan_machine.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/release_guards.h"
#include "kmsfleet/core/status.h"
#include "plan_invariants.h"
#include "sim_world.h"

namespace kmsfleet::sim {

std::string FenceKey(const v1::Fence& fence) {
  return std::to_string(fence.term()) + "/" + std::to_string(fence.index()) + "/" +
         fence.in_flight();
}

// The digest of what `node` holds staged for `version`.
std::string StagedDigest(const Node& node, const std::string& version) {
  return node.name + "/" + version + "#" + std::to_string(node.stage_generation);
}

namespace {

// The plan an operation id belongs to: "<plan id>.<node>.<kind>.<n>".
std::string PlanIdOf(const std::string& operation_id) {
  return operation_id.substr(0, operation_id.find('.'));
}

}  // namespace

std::string SimHash(int serial) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  SeededRandom r(static_cast<uint64_t>(serial) * 7919 + 1);
  std::string out;
  for (int i = 0; i < 43; ++i) out += kAlphabet[r.Uniform(0, 63)];
  return out;
}

// While faults last: rotations are promoted (each node reaches the new hash
// within a second), rotations stand pending for a while, and a registry
// now and then gains a `removed` record (which forbids a rollback).
void World::PlanFaults() {
  if (Chance(0.002)) {
    std::string hash = SimHash(++hash_serial_);
    Trace("rotation promoted: key_id hash " + hash.substr(0, 6) + "...");
    for (const std::string& v : voters_) {
      nodes_.at(v).provider.next_hash = hash;
      nodes_.at(v).provider.hash_at = now_ + Pick(0, 10);
    }
  }
  for (const std::string& v : voters_) {
    SimProvider& p = nodes_.at(v).provider;
    if (!p.rotation_pending && Chance(0.003)) p.rotation_pending = true;
    else if (p.rotation_pending && Chance(0.1)) p.rotation_pending = false;
    if (Chance(0.0002)) ++p.removed_records;
    if (restage_rng_.Uniform(0, 9999) < 4) {
      ++nodes_.at(v).stage_generation;
      ++counters_.restaged;
      Trace(v + ": its staged release replaced by other bytes of the same version");
    }
    CheckpointFault(nodes_.at(v));
    OutageFault(nodes_.at(v));
  }
}

// A registry checkpoint falls behind or goes missing now and then (a
// restore of one file of the pair, say), and is repaired a while later.
void World::CheckpointFault(Node& node) {
  SimProvider& p = node.provider;
  if (p.checkpoint == "current") {
    if (checkpoint_rng_.Uniform(0, 9999) >= 2) return;
    p.checkpoint = checkpoint_rng_.Uniform(0, 1) == 0 ? "behind" : "missing";
    p.checkpoint_off_since = now_;
    Trace(node.name + ": its registry checkpoint is " + p.checkpoint);
  } else if (checkpoint_rng_.Uniform(0, 9999) < 40) {
    p.checkpoint = "current";
    p.checkpoint_off_since = -1;
    Trace(node.name + ": its registry checkpoint is current again");
  }
}

// A provider goes down by itself now and then (its process crashed and its
// unit is slow to start it again, or it lost OpenBao) and serves again a
// while later, or once the plan starts an operation on it. The plan must
// not take this for its own doing, nor start another swap, rollback or
// kube-apiserver restart meanwhile (CheckSentWhileOthersServe). Not on a
// node whose provider is down already.
void World::OutageFault(Node& node) {
  SimProvider& p = node.provider;
  if (now_ < p.outage_until || Disrupted(node) || outage_rng_.Uniform(0, 9999) >= 8) return;
  p.outage_since = now_;
  p.outage_until = now_ + outage_rng_.Uniform(5, 60);
  ++counters_.outages;
  Trace(node.name + ": its provider is down by itself until t=" + std::to_string(p.outage_until));
}

// Operations that reached their end change the provider; hashes of a
// promoted rotation arrive.
void World::AdvanceProviders() {
  for (auto& [name, node] : nodes_) {
    SimProvider& p = node.provider;
    if (!p.next_hash.empty() && now_ >= p.hash_at) {
      p.hash = p.next_hash;
      p.next_hash.clear();
    }
    if (node.op_applied && !node.op_interrupted) node.served_hashes[p.version].insert(p.hash);
    if (node.op_applied || node.op_interrupted || now_ < node.op_end) continue;
    node.op_applied = true;
    if (node.op_refused_before_stop && node.op_outcome != SwapPhase::kPreflighted) {
      Fail(name + " operation " + node.op_id + " was refused before its stop, yet ends " +
           std::string(PhaseName(node.op_outcome)) + ": it ran after all");
    }
    node.op_outcomes[node.op_id] = {node.op_outcome, node.op_reason};
    if (node.op_outcome < SwapPhase::kStopped) ++counters_.ended_before_stop;
    if (node.op_reason == reason::kManifestChanged) ++counters_.manifest_refusals;
    if (node.op_reason == reason::kArtifactIo) ++counters_.disk_refusals;
    const bool kept = node.op_outcome == SwapPhase::kRollbackFailed && node.op_target_served;
    p.version = node.op_outcome == SwapPhase::kStable || kept ? node.op_target : node.op_prev;
    // Reference §8.1: never back across a wire-format change or a one-way
    // release once the newer one may have written.
    if (node.op_target_served && p.version == node.op_prev && node.op_prev != node.op_target &&
        wire_format_) {
      Fail(name + " restored " + node.op_prev + " after " + node.op_target +
           " had been ready, across the plan's wire-format change (" + node.op_id + ")");
    }
    CheckRestoredReleaseServedTheKey(node);
    Trace(name + " operation " + node.op_id + " ends " +
          std::string(PhaseName(node.op_outcome)) + " on " + p.version);
  }
}

// A swap that fails after its stop is restored, unless its target had been
// ready under a plan that binds it (CheckRestoreOnceServed, core): then it
// ends RollbackFailed on the target. Half the swaps that fail after the
// stop had their target ready.
void World::KeepAServedTargetIfBound(Node& node) {
  if (node.op_outcome != SwapPhase::kRolledBack || !node.op_is_swap) return;
  SwapJournal j;
  j.kind = "swap";
  j.previous_version = node.op_prev;
  j.target_version = node.op_target;
  // Written at once, "ready" survives a crash of the agent (recovery).
  j.target_ready_seen = compat_rng_.Uniform(0, 1) == 0 || node.op_target_served;
  j.restore_refused_once_served = node.op_restore_barrier;
  node.op_target_served = j.target_ready_seen;
  if (absl::Status kept = CheckRestoreOnceServed(j); !kept.ok()) {
    node.op_outcome = SwapPhase::kRollbackFailed;
    ++counters_.rollback_failed;
    ++counters_.served_targets_kept;
    Trace(node.name + " keeps " + node.op_target + ", ready before it failed: " +
          std::string(kept.message()));
  }
}

// Answers the swap or rollback `e` carries with `refusal`: nothing ran.
void World::RefuseCommand(Node& node, const Envelope& e, const absl::Status& refusal) {
  ActionResult r;
  r.kind = ResultKind::kOperation;
  r.node = node.name;
  r.revision = e.action->revision;
  r.operation_id = e.action->operation_id;
  r.status = refusal;
  Reply(node, e, std::move(r), false, max_delay_);
}

void World::HandlePlanSwap(Node& node, const Envelope& e) {
  const PlanAction& a = *e.action;
  const bool known = node.op_id == a.operation_id || node.op_outcomes.contains(a.operation_id);
  if (known && !e.adversary && faults_ && Chance(0.05)) {
    // As an agent restarted with a member list that no longer names this
    // coordinator (or whose journal of that id is unreadable): its caller
    // check runs before the id is looked up, and the refusal says nothing
    // of the operation, which runs or ran (CommandRefusalForPlan).
    ++counters_.resent_refused_by_caller;
    return RefuseCommand(node, e,
                         MakeError(absl::StatusCode::kPermissionDenied, reason::kVoterOnly,
                                   node.name + " does not take commands from this caller now"));
  }
  // As PeerNode::AdmitSwap: a term seen in the election is a term seen.
  node.guard->ObserveTerm(node.machine->term());
  absl::Status s = node.guard->AdmitSwap(e.fence, node.machine->committed());
  if (!s.ok()) {
    std::string reason = ReasonOf(s);
    if (reason.empty()) Fail("a refused swap carries no reason code: " + s.ToString());
    if (reason == reason::kStaleTerm) ++counters_.swaps_stale_term;
    if (reason == reason::kStaleFence) ++counters_.swaps_stale_fence;
    if (e.adversary) ++counters_.adversary_refused;
    if (e.adversary && reason == reason::kUnknownFence) ++counters_.adversary_unknown;
    Trace(node.name + " refused " + (e.adversary ? "injected " : "") + "swap " +
          e.action->operation_id + ": " + std::string(s.message()));
    return RefuseCommand(node, e, s);
  }
  node.fence_durable = node.guard->state();  // persisted before acting
  if (!CheckAdmitted(node, e)) return;
  if (!known) {
    if (!node.op_applied || node.op_interrupted || node.admitting) {
      // As Executor::Reserve: another operation holds the node, or is
      // being admitted (this one, sent again, maybe).
      const std::string& holder =
          node.admitting ? node.admitting->e.action->operation_id : node.op_id;
      return RefuseCommand(node, e,
                           MakeError(absl::StatusCode::kFailedPrecondition,
                                     reason::kOperationInProgress,
                                     node.name + " is busy with " + holder));
    }
    // As the agent for a member's command: the plan's own step only.
    NodeCommand command{.kind = a.kind == ActionKind::kRollbackNode ? NodeCommand::Kind::kRollback
                                                                    : NodeCommand::Kind::kSwap,
                        .operation_id = a.operation_id,
                        .version = a.version,
                        .of_operation_id = a.of_operation_id,
                        .stabilization_ms = a.stabilization_ms,
                        .expected_staged_digest = a.expected_staged_digest,
                        .sent_by = e.Key()};
    absl::StatusOr<PlanBinding> bound = BindCommandToPlan(
        node.machine->committed(), node.name, command,
        LeaderOfTerm{.leader = node.machine->leader(), .term = node.machine->term()});
    if (!bound.ok()) {
      const std::string why = ReasonOf(bound.status());
      if (e.held_back && why == reason::kCommandNotFromLeader) {
        ++counters_.adversary_held_back_refused;
      }
      if (why == reason::kPlanNotMoving) {
        ++(e.adversary ? counters_.adversary_plan_not_moving : counters_.swaps_plan_not_moving);
      }
      if (e.adversary) ++counters_.adversary_refused;
      if (e.weakened && why == reason::kCommandNotInPlan) ++counters_.adversary_weakened_refused;
      Trace(node.name + " refused " + (e.adversary ? "injected " : "") + "swap " +
            a.operation_id + ": " + std::string(bound.status().message()));
      return RefuseCommand(node, e, bound.status());
    }
    if (e.weakened) {
      Fail(node.name + " started " + a.operation_id + " from a member's command with a " +
           std::to_string(a.stabilization_ms) + " ms window and no staged digest");
    }
    if (!CheckStartedByItsLeader(node, e)) return;
    if (!CheckAlone(node, e.fence)) return;
    if (!CheckStagedDigest(node, e)) return;
    if (CallerGone(node, e)) {
      ++counters_.arrived_after_caller;
      return;
    }
    if (faults_ && !e.adversary && admission_rng_.Uniform(0, 9) == 0) {
      return AdmitSlowly(node, e, *bound);
    }
    StartAdmitted(node, e, *bound);
  }
  ++counters_.swaps_accepted;
  ReplyWithOperation(node, e, a);
}

bool World::CheckStagedDigest(Node& node, const Envelope& e) {
  const PlanAction& a = *e.action;
  if (a.kind != ActionKind::kSwap) return true;
  if (a.expected_staged_digest.empty()) {
    if (!e.adversary) Fail("swap " + a.operation_id + " to " + node.name + " names no staged digest");
    return true;
  }
  const std::string staged = StagedDigest(node, a.version);
  if (a.expected_staged_digest == staged) return true;
  ++counters_.restage_refused;
  Trace(node.name + " refused swap " + a.operation_id + ": staged " + staged + ", expected " +
        a.expected_staged_digest);
  RefuseCommand(node, e,
                MakeError(absl::StatusCode::kFailedPrecondition, reason::kStagedArtifactChanged,
                          node.name + " holds other bytes of " + a.version + " staged"));
  return false;
}

// Reference §8.1 when a coordinator's rollback starts: the node still
// serves the key_id hash the plan recorded for it, so no rotation was
// promoted under the release being undone, unless the node refused it
// before its stop (for that very reason, or any other: nothing was
// reinstalled): the coordinator decides on views
// a rotation can overtake (seed 13373: one promoted a tick before the
// operator's `rollback`, reaching the node between the views the command
// was judged on and the send). (The adversary's replays are held to
// CheckRestoredReleaseServedTheKey instead, from the world's history.)
void World::CheckRollbackOnBaseline(const Node& node, const Envelope& e) {
  if (e.adversary || e.action->kind != ActionKind::kRollbackNode) return;
  if (node.op_outcome == SwapPhase::kPreflighted) return;
  std::optional<v1::FleetPlan> plan = FleetPlanIn(node.machine->committed().payload());
  if (!plan) return;
  for (const v1::NodeBaseline& b : plan->baseline()) {
    if (b.node() != node.name || b.key_id_hash().empty()) continue;
    if (b.key_id_hash() == node.provider.hash) return;
    Fail("rollback " + e.action->operation_id + " admitted on " + node.name +
         " serving key_id hash " + node.provider.hash.substr(0, 6) + "..., not the plan's " +
         b.key_id_hash().substr(0, 6) + "...: a rotation was promoted since the plan started");
  }
}

// The admission takes up to twice a swap call's deadline: it may end
// after its caller gave up.
void World::AdmitSlowly(Node& node, const Envelope& e, const PlanBinding& binding) {
  node.admitting = Admission{e, now_ + admission_rng_.Uniform(1, 60), binding};
  ++counters_.slow_admissions;
  Trace(node.name + " admits " + e.action->operation_id + " until t=" +
        std::to_string(node.admitting->until) + " (its caller gives up at t=" +
        std::to_string(e.caller_deadline) + ")");
}

// As Executor::Start's last check before it starts the operation: a
// command whose caller gave up (its call's deadline passed: the network
// held it, or its admission took that long) starts nothing, and is
// answered to no one, the call being over. Its caller may have decided on
// the node as it was.
bool World::CallerGone(const Node& node, const Envelope& e) {
  if (e.caller_deadline < 0 || now_ <= e.caller_deadline) return false;
  ++counters_.callers_gone;
  Trace(node.name + " refused " + e.action->operation_id + ": its caller gave up at t=" +
        std::to_string(e.caller_deadline) + " (CALLER_GONE)");
  return true;
}

// Admissions that reached their end start their operation, unless the
// caller has given up (Executor::Start's last check): it may have decided
// on the node as it was.
void World::FinishAdmissions() {
  for (auto& [name, node] : nodes_) {
    if (!node.admitting || now_ < node.admitting->until) continue;
    const Admission done = std::move(*node.admitting);
    node.admitting.reset();
    const PlanAction& a = *done.e.action;
    if (CallerGone(node, done.e)) continue;
    if (!CheckAlone(node, done.e.fence)) continue;
    StartAdmitted(node, done.e, done.binding);
    ++counters_.swaps_accepted;
    ReplyWithOperation(node, done.e, a);
  }
}

// The operation of the plan's command `e`, admitted: it starts, bound to
// what the plan bound it to (BindCommandToPlan).
void World::StartAdmitted(Node& node, const Envelope& e, const PlanBinding& binding) {
  StartPlanOperation(node, *e.action, e.fence, binding.checkpoint_acknowledged);
  CheckRollbackOnBaseline(node, e);
  node.op_restore_barrier = binding.restore_refused_once_served;
  KeepAServedTargetIfBound(node);
}

// Answers with how operation `a` stands: running, ended (as its journal
// says), or unknown to the node; one being admitted answers
// OPERATION_BEING_ADMITTED (Executor::Get), asked again.
void World::ReplyWithOperation(Node& node, const Envelope& e, const PlanAction& a) {
  if (node.admitting && node.admitting->e.action->operation_id == a.operation_id) {
    ++counters_.lookups_while_admitting;
    return RefuseCommand(node, e,
                         MakeError(absl::StatusCode::kUnavailable, reason::kOperationBeingAdmitted,
                                   node.name + " is admitting " + a.operation_id));
  }
  bool running = false;
  ActionResult r = OperationResult(node, a, running);
  const bool ended = !running && node.op_outcomes.contains(a.operation_id);
  Reply(node, e, std::move(r), running, max_delay_, ended);
}

void World::StartPlanOperation(Node& node, const PlanAction& a, const v1::Fence& fence,
                               bool checkpoint_acknowledged) {
  if (given_back_.contains(node.name + "/" + a.operation_id)) {
    Fail(node.name + " starts " + a.operation_id + ", whose slot its plan gave back untouched");
  }
  CheckNoApiServerLeftNotReady(node, a);
  ++counters_.operations;
  node.provider.outage_until = -1;  // the operation stops and starts it anew
  node.op_id = a.operation_id;
  node.op_prev = node.provider.version;
  node.op_target = a.version;
  node.op_start = now_;
  node.op_end = now_ + Pick(5, 40);
  node.op_fence = fence;
  node.op_applied = false;
  node.op_interrupted = false;
  node.op_target_served = false;
  node.op_is_swap = a.kind == ActionKind::kSwap;
  node.op_start_hash = node.provider.hash;
  node.served_hashes[node.op_prev].insert(node.provider.hash);
  SwapJournal& captured = node.captures[a.operation_id];
  captured.previous_version = node.op_prev;
  captured.target_version = a.version;
  captured.registry_active_key_id_hash = node.provider.hash;
  // Of the operations that fail, half fail before the stop (the swap's
  // own doctor or rotation-plan, a changed binary) and half after it.
  double roll = Unit();
  const double fails_before_stop = rollback_failed_rate_ + op_fail_rate_ / 2;
  node.op_outcome = !faults_                                     ? SwapPhase::kStable
                    : roll < rollback_failed_rate_                 ? SwapPhase::kRollbackFailed
                    : roll < fails_before_stop                     ? SwapPhase::kPreflighted
                    : roll < rollback_failed_rate_ + op_fail_rate_ ? SwapPhase::kRolledBack
                                                                   : SwapPhase::kStable;
  // Of those before the stop, half fail against the release (doctor: an
  // auto-rollback walks back), a quarter for the node's disk, which
  // refused a journal write, and a quarter for its own manifest, edited
  // under the swap (nothing failed against the release: the plan halts
  // without a walk back). Split by the same roll, so that every seed's
  // schedule stays what it was.
  const bool node_own = roll >= rollback_failed_rate_ + op_fail_rate_ / 4;
  const bool manifest = roll >= rollback_failed_rate_ + op_fail_rate_ * 3 / 8;
  node.op_reason = node.op_outcome != SwapPhase::kPreflighted ? ""
                   : manifest                                  ? reason::kManifestChanged
                   : node_own                                  ? reason::kArtifactIo
                                                               : reason::kDoctorFailed;
  JudgeCheckpoint(node, a, checkpoint_acknowledged);
  JudgeRotationSinceCapture(node, a);
  JudgeActiveKey(node, a);
  CheckSwapStartsOnItsExpectedKey(node, a);
  node.op_refused_before_stop = node.op_outcome == SwapPhase::kPreflighted;
  if (node.op_outcome == SwapPhase::kRollbackFailed) ++counters_.rollback_failed;
  Trace(node.name + " starts " + a.operation_id + " " + node.op_prev + " -> " + a.version +
        " under " + FenceKey(fence) + ", ends " + std::string(PhaseName(node.op_outcome)) +
        " at t=" + std::to_string(node.op_end));
}

void World::JudgeCheckpoint(Node& node, const PlanAction& a, bool acknowledged) {
  if (a.kind != ActionKind::kSwap || node.provider.checkpoint == "current") return;
  // The agent's earlier checks (its disk, its manifest, doctor) come first
  // (CheckTargetReleasable): a swap they refuse keeps their reason.
  if (node.op_outcome == SwapPhase::kPreflighted) return;
  if (acknowledged) {
    ++counters_.checkpoint_acknowledged_swaps;
    return;
  }
  ++counters_.checkpoint_refused_by_node;
  node.op_outcome = SwapPhase::kPreflighted;
  node.op_reason = reason::kStateCheckpointNotCurrent;
}

// As Executor::CheckRegistryForRollback before a rollback's stop, with
// the real core checks: a rollback to an older release must find the key
// the undone operation's capture kept. Its earlier checks come first.
void World::JudgeRotationSinceCapture(Node& node, const PlanAction& a) {
  if (a.kind != ActionKind::kRollbackNode || node.op_outcome == SwapPhase::kPreflighted) return;
  auto undone = node.captures.find(a.of_operation_id);
  if (undone == node.captures.end()) return;
  SwapJournal j;
  j.kind = "rollback";
  j.target_version = a.version;
  j.previous_version = node.op_prev;
  j.key_id_hash_before_undone = KeyIdHashBeforeUndone(undone->second);
  RefuseBeforeStop(node, a, CheckNoRotationSinceCapture(j, node.provider.hash),
                   counters_.rotation_refused_by_node);
}

// As Executor::CaptureEvidence before a swap's stop, with the real core
// check: the registry's active key (here the provider's hash: a rotation
// lands on both at once) must be the one the swap expects. Its earlier
// checks come first.
void World::JudgeActiveKey(Node& node, const PlanAction& a) {
  if (a.kind != ActionKind::kSwap || node.op_outcome == SwapPhase::kPreflighted) return;
  SwapJournal j;
  j.kind = "swap";
  j.target_version = a.version;
  j.expected_key_id_hash = a.expected_key_id_hash;
  j.registry_active_key_id_hash = node.provider.hash;
  RefuseBeforeStop(node, a, CheckActiveKeyAsExpected(j), counters_.active_key_refused_by_node);
}

// A node's own judgement before its stop said no (`judged` not OK): the
// operation ends there, its reason kept, and `refused` counts it.
void World::RefuseBeforeStop(Node& node, const PlanAction& a, const absl::Status& judged,
                             int64_t& refused) {
  if (judged.ok()) return;
  ++refused;
  node.op_outcome = SwapPhase::kPreflighted;
  node.op_reason = ReasonOf(judged);
  Trace(node.name + " refuses " + a.operation_id + " before its stop: " +
        std::string(judged.message()));
}

// World truth: a swap that goes past its stop expects the key its node
// serves. Otherwise its target, started on the registry's other key, fails
// its verification after a restart the node could have spared, and the
// restore then runs on a registry the older release never promoted.
void World::CheckSwapStartsOnItsExpectedKey(const Node& node, const PlanAction& a) {
  if (a.kind != ActionKind::kSwap || node.op_outcome == SwapPhase::kPreflighted ||
      a.expected_key_id_hash.empty() || a.expected_key_id_hash == node.provider.hash) {
    return;
  }
  Fail(node.name + " stops its provider for " + a.operation_id + " expecting key_id hash " +
       a.expected_key_id_hash.substr(0, 6) + "... while it serves " +
       node.provider.hash.substr(0, 6) + "...");
}

// Reference §8.1 as world truth, whoever sent the rollback: a rollback
// that passed its stop reinstalled a release that had served, on this
// node, the key_id hash the node served when the rollback started.
void World::CheckRestoredReleaseServedTheKey(const Node& node) {
  if (node.op_is_swap || node.op_target == node.op_prev ||
      node.provider.version != node.op_target) {
    return;
  }
  auto served = node.served_hashes.find(node.op_target);
  if (served != node.served_hashes.end() && served->second.contains(node.op_start_hash)) return;
  Fail(node.name + " rollback " + node.op_id + " reinstalled " + node.op_target +
       " while the node served key_id hash " + node.op_start_hash.substr(0, 6) + "..., which " +
       node.op_target + " never served there: a rotation promoted under the newer release");
}

// A swap or rollback that may start takes its node's provider down, and a
// kube-apiserver restart its node's API server: each is sent only while
// every other voter's provider serves (the gates of a step sent anew,
// OthersGates; a restart waits for its own node's provider too). World
// truth at the send: no other voter's provider (nor, for a restart, its
// own) is down since before the coordinator last saw it, nor down while
// the coordinator cannot reach its agent. It found two gaps: a restart,
// then a swap, decided on the round before the change that carried it
// committed, and sent once it did though a round meanwhile saw another
// node down (seeds 821 and 759).
void World::CheckSentWhileOthersServe(const PlanCoordinator& p, const PlanAction& a) {
  const bool disrupts = a.kind == ActionKind::kRestartApiServer ||
                        (a.start_allowed && (a.kind == ActionKind::kSwap ||
                                             a.kind == ActionKind::kRollbackNode));
  if (!disrupts) return;
  const bool own_counts = a.kind == ActionKind::kRestartApiServer;
  for (const std::string& v : voters_) {
    if (v == a.node && !own_counts) continue;
    auto view = p.views.find(v);
    const bool seen = view != p.views.end() && view->second.state &&
                      view->second.unreachable_since_unix_ms == 0;
    const int64_t seen_at = seen ? view->second.state->observed_at_unix_ms() / kTickMs : -1;
    // Whatever it shows, a look older than kMaxViewsAgeAtSendMs says
    // nothing a disruption may start on (a slow round, a slow commit).
    if (seen && (now_ - seen_at) * kTickMs > kMaxViewsAgeAtSendMs) {
      return Fail("the coordinator sends " + std::string(ActionKindName(a.kind)) + " " +
                  a.operation_id + " to " + a.node + " on a look at " + v + " from t=" +
                  std::to_string(seen_at) + ", more than " +
                  std::to_string(kMaxViewsAgeAtSendMs) + " ms before");
    }
    const int64_t down_since = DownSince(nodes_.at(v));
    if (down_since < 0) continue;
    if (seen && seen_at < down_since) continue;  // it went down after the last look
    Fail("the coordinator sends " + std::string(ActionKindName(a.kind)) + " " + a.operation_id +
         " to " + a.node + " while " + v + "'s provider has been down since t=" +
         std::to_string(down_since) +
         (seen ? ", which it saw at t=" + std::to_string(seen_at)
               : ", whose agent it cannot reach"));
    return;
  }
}

// Within a plan, once a node's kube-apiserver restart failed, no other
// node's provider is disrupted before a restart there succeeds: `resume`
// and `rollback` ask for that restart again first (found in review: a
// walk back went on to the other nodes).
void World::CheckNoApiServerLeftNotReady(const Node& node, const PlanAction& a) {
  auto it = apiserver_not_ready_.find(PlanIdOf(a.operation_id));
  if (it == apiserver_not_ready_.end() || it->second == node.name) return;
  Fail(node.name + " starts " + a.operation_id + " while " + it->second +
       "'s kube-apiserver, whose restart failed in this plan, is not known to be ready");
}

void World::CheckCheckpointGuard(const Node& node, const PlanAction& a,
                                 const v1::FleetPlan& plan) {
  const SimProvider& p = node.provider;
  if (a.kind != ActionKind::kSwap || !a.start_allowed || p.checkpoint == "current" ||
      Acknowledged(plan.acknowledgements(), reason::kAckStateCheckpointNotCurrent)) {
    return;
  }
  // Every preflight of a plan begun after the checkpoint went off (faults
  // come before the plan's Step within a tick) reported it: the plan's
  // guard must have refused the upgrade.
  if (p.checkpoint_off_since * kTickMs <= plan.created_unix_ms()) {
    Fail("the coordinator sends upgrade " + a.operation_id + " to " + node.name +
         ", whose checkpoint has been " + p.checkpoint + " since t=" +
         std::to_string(p.checkpoint_off_since) +
         ", before its plan began, and the plan did not acknowledge it");
  }
}

// GetOperation: how the operation `a` names ended, or that it still runs.
ActionResult World::OperationResult(const Node& node, const PlanAction& a,
                                    bool& running) const {
  ActionResult r;
  r.kind = ResultKind::kOperation;
  r.node = node.name;
  r.revision = a.revision;
  r.operation_id = a.operation_id;
  running = node.op_id == a.operation_id && (!node.op_applied || node.op_interrupted);
  auto it = node.op_outcomes.find(a.operation_id);
  if (running || it == node.op_outcomes.end()) return r;  // kNotFound
  SetEndedOutcome(r, it->second.phase, it->second.reason);
  return r;
}

// Stage, preflight and the API server restart take a while and may fail
// while faults last; a poll answers at once.
void World::HandleAction(Node& node, const Envelope& e) {
  const PlanAction& a = *e.action;
  if (e.kind == Kind::kPoll) return ReplyWithOperation(node, e, a);
  ActionResult r;
  r.node = node.name;
  r.revision = a.revision;
  int64_t delay = max_delay_ + Pick(1, 8);
  const bool fail = faults_ && Chance(action_fail_rate_);
  switch (a.kind) {
    case ActionKind::kStage:
      r.kind = ResultKind::kStaged;
      r.previous_artifact_verified = true;
      r.staged_digest = StagedDigest(node, a.version);
      if (fail) {
        r.status = MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                             node.name + ": the staged artifact does not match checksums.txt");
      }
      break;
    case ActionKind::kPreflight: {
      r.kind = ResultKind::kPreflighted;
      r.doctor = {node.name, true, !fail, fail ? "config.load" : ""};
      const std::string state = node.provider.rotation_pending ? "pending" : "active";
      RotationReport report;
      report.name = "rotation-plan";
      report.transit_metadata_status = "pass";
      report.rotation_state = state;
      report.state_checkpoint_status = node.provider.checkpoint;
      if (node.provider.checkpoint != "current") ++counters_.checkpoints_reported;
      r.rotation.node = node.name;
      r.rotation.report = report;
      r.rotation.metric_state = state;
      break;
    }
    case ActionKind::kRestartApiServer: {
      r.kind = ResultKind::kApiServerRestarted;
      r.operation_id = a.operation_id;  // as FleetActions::RestartApiServer
      delay += Pick(5, 20);
      // As ApiServerRestarter: a restart id asked again is answered from
      // its run, not run again (the draw above is kept for the schedule).
      // One run while the node's own provider is down does not come back
      // ready: the API server cannot read Secrets without its plugin.
      const auto [run, ran_now] =
          node.restarts.try_emplace(a.operation_id, fail || DownSince(node) >= 0);
      const bool failed = run->second;
      if (failed) r.status = absl::DeadlineExceededError("/readyz did not answer 200");
      const std::string plan_id = PlanIdOf(a.operation_id);
      if (!ran_now) {
        // Answered from its run: nothing ran, the world is as it was.
      } else if (failed) {
        apiserver_not_ready_[plan_id] = node.name;
      } else if (auto it = apiserver_not_ready_.find(plan_id);
                 it != apiserver_not_ready_.end() && it->second == node.name) {
        apiserver_not_ready_.erase(it);
      }
      break;
    }
    default:
      return;
  }
  Reply(node, e, std::move(r), false, delay);
}

void World::Reply(Node& node, const Envelope& e, ActionResult result, bool running,
                  int64_t delay, bool ended) {
  if (!nodes_.contains(e.from)) return;  // the adversary's own command
  Envelope answer;
  answer.kind = Kind::kResult;
  answer.from = node.name;
  answer.to = e.from;
  answer.term = e.term;
  answer.fence = e.fence;
  answer.action = e.action;
  answer.result = std::make_shared<const ActionResult>(std::move(result));
  answer.running = running;
  answer.ended = ended;
  Send(std::move(answer), delay);
}

// The agent dies in the middle of an operation: the provider stays as the
// operation left it (down) until the agent restarts and recovers.
void World::CrashExecutor(Node& node) {
  // An admission is the agent's memory only: nothing started.
  if (node.admitting) {
    Trace(node.name + " crashed admitting " + node.admitting->e.action->operation_id);
    node.admitting.reset();
  }
  if (node.op_applied || node.op_interrupted || now_ >= node.op_end) return;
  node.op_interrupted = true;
  ++counters_.crashed_mid_swap;
  Trace(node.name + " crashed in the middle of " + node.op_id);
}

// The restarted agent reads its journal and finishes the operation forward
// or rolls it back, which takes a while (architecture §2 principle 2).
void World::RecoverExecutor(Node& node) {
  if (!node.op_interrupted) return;
  node.op_interrupted = false;
  node.op_end = now_ + Pick(2, 10);
  // One crash in five came before the stop: the restarted agent closes the
  // operation where it was, nothing touched.
  const bool rollback_failed = faults_ && Chance(rollback_failed_rate_);
  const double roll = Unit();
  if (node.op_refused_before_stop) {
    // As the agent: the crash came before the check that refused it (the
    // restarted agent closes the journal AGENT_RESTARTED) or after (the
    // refusal was written): either way the provider was never touched.
    // Drawn from the same roll, so every seed's schedule stays what it was.
    ++counters_.crashed_refusals;
    if (roll < 0.5) node.op_reason = reason::kAgentRestarted;
    Trace(node.name + " recovers " + node.op_id + ": refused before its stop (" +
          node.op_reason + "), ends at t=" + std::to_string(node.op_end));
    return;
  }
  node.op_outcome = rollback_failed ? SwapPhase::kRollbackFailed
                    : roll < 0.4    ? SwapPhase::kStable
                    : roll < 0.8    ? SwapPhase::kRolledBack
                                    : SwapPhase::kPreflighted;
  // A target seen ready (its journal says so) was past the stop.
  if (node.op_target_served && node.op_outcome == SwapPhase::kPreflighted) {
    node.op_outcome = SwapPhase::kRolledBack;
  }
  node.op_reason = node.op_outcome == SwapPhase::kPreflighted ? reason::kAgentRestarted : "";
  if (node.op_outcome == SwapPhase::kRollbackFailed) ++counters_.rollback_failed;
  KeepAServedTargetIfBound(node);
  Trace(node.name + " recovers " + node.op_id + ": ends " +
        std::string(PhaseName(node.op_outcome)) + " at t=" + std::to_string(node.op_end));
}

// The operator's repair by hand of a node left RollbackFailed (the
// break-glass runbook): the previous release is restored outside kmsfleet,
// which the node's journals record as a later operation that ended
// RolledBack under no fence, so the node can hand off again.
void World::Repair(Node& node) {
  if (node.op_start < 0 || !node.op_applied ||
      node.op_outcome != SwapPhase::kRollbackFailed) {
    return;
  }
  node.op_id = node.name + "/repair/" + std::to_string(now_);
  node.op_outcome = SwapPhase::kRolledBack;
  node.op_reason.clear();
  node.op_outcomes[node.op_id] = {SwapPhase::kRolledBack, ""};
  node.op_start = now_;
  node.op_end = now_;
  node.op_fence = v1::Fence();
  // A target kept across the plan's wire-format change is fixed forward
  // (the break-glass runbook), never taken back.
  const bool forward = node.op_target_served && !node.op_restore_barrier.empty();
  node.provider.version = forward ? node.op_target : node.op_prev;
  Trace("operator repairs " + node.name + " by hand: " + (forward ? "forward" : "back") +
        " on " + node.provider.version);
}

// A swap or rollback starts only from a command its coordinator sent to
// start, or one sent under the key of the leader of its fence's term (out
// of scope, architecture.md §7): never the step a coordinator holds back
// (follow-only) from another member's key.
bool World::CheckStartedByItsLeader(const Node& node, const Envelope& e) {
  if (started_steps_.contains(FenceKey(e.fence) + "/" + e.action->operation_id)) return true;
  const auto leader = leader_of_term_.find(e.fence.term());
  if (leader != leader_of_term_.end() && leader->second == e.Key()) return true;
  Fail(node.name + " admitted " + e.action->operation_id + " under " + FenceKey(e.fence) +
       " from " + e.Key() + "'s key, a step no coordinator sent to start" +
       (e.held_back ? " (its coordinator held it back)" : ""));
  return false;
}

// The adversary replays the real command sent under a fence it saw; under
// a fence it forged it sends the newest real command it saw for the node
// (nothing if none), or, with adversary_picks_version, one of its own.
std::shared_ptr<const PlanAction> World::AdversaryAction(const v1::Fence& fence,
                                                         const std::string& to) {
  auto it = real_swaps_.find(FenceKey(fence));
  if (it != real_swaps_.end()) return it->second;
  if (!options_.adversary_picks_version) {
    auto last = last_real_swap_.find(to);
    return last == last_real_swap_.end() ? nullptr : last->second;
  }
  auto forged = std::make_shared<PlanAction>();
  forged->kind = ActionKind::kSwap;
  forged->node = to;
  forged->version = kPlanTo;
  forged->operation_id = "forged/" + to + "/" + std::to_string(now_);
  return forged;
}

}  // namespace kmsfleet::sim
