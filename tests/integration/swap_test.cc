// The node executor end to end under a real systemd user manager:
// kmsfleetctl node ... -> kmsfleetd -> sd-bus -> bao-kms-provider.service
// (the fake provider), covering the failures of issue 4.
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "fleet.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/key_id_hash.h"
#include "kmsfleet/node/service_manager.h"
#include "user_manager.h"
#include "operation_json.h"
#include "systemd_node.h"

namespace kmsfleet::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kOld[] = "0.1.0";
constexpr char kNew[] = "0.2.0";

// The file's SHA-256, or "" when it cannot be read.
std::string Digest(const std::string& path) {
  absl::StatusOr<std::string> d = Sha256File(path);
  return d.ok() ? *d : "";
}

class SwapTest : public ::testing::Test {
 protected:
  void Start(const std::string& installed_script = "", bool in_cluster = false,
             const std::string& installed_version = kOld) {
    node_ = std::make_unique<SystemdNode>(installed_version, installed_script);
    if (in_cluster) node_->JoinSingleVoterCluster();
    node_->StartAgent();
    old_digest_ = Digest(node_->install_path());
    ASSERT_EQ(old_digest_.size(), 64u);
  }

  void TearDown() override {
    if (HasFailure() && node_) std::cerr << node_->Logs();
  }

  SubprocessResult Stage(const SystemdNode::Release& r, bool sign = true) {
    std::vector<std::string> args = {"stage", "--version", version_, "--source",
                                     r.binary, "--checksums", r.checksums};
    if (sign) {
      args.push_back("--signature");
      args.push_back(r.signature);
    }
    absl::StatusOr<SubprocessResult> res = node_->Node(args);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? *res : SubprocessResult{};
  }

  // Stages `version_` from `script` ("" = a stamped copy) and swaps to it;
  // returns the final operation.
  boost::json::object StageAndSwap(const std::string& script = "",
                                   const std::string& op_id = "op-1") {
    SubprocessResult staged = Stage(node_->MakeRelease(version_, script));
    EXPECT_EQ(staged.exit_code, 0) << staged.stderr_text;
    absl::StatusOr<SubprocessResult> r =
        node_->Node({"swap", "--version", version_, "--operation-id", op_id});
    EXPECT_TRUE(r.ok()) << r.status();
    last_swap_ = r.ok() ? *r : SubprocessResult{};
    return Json(last_swap_.stdout_text);
  }

  // A 0.2.0 that writes `registry` over the key registry as it starts,
  // then fails to start.
  std::string FailingReleaseWritingRegistry(const std::string& registry) const {
    return "#!/bin/sh\ncase \" $* \" in *' serve '*) printf '%s' '" + registry + "' > " +
           node_->registry_path() + ";; esac\nexec " + FAKE_PROVIDER_PATH +
           " --fake-version 0.2.0 --fake-set exit_on_start=true \"$@\"\n";
  }

  // The serving fake reloads its scenario and promotes key version 2,
  // writing the new active key over `registry_before`.
  void PromoteARotation(const std::string& registry_before) {
    WriteFile(node_->dir() + "/scenario.tmp", "key_seed: swap-key-1\nkey_version: 2\n");
    std::filesystem::rename(node_->dir() + "/scenario.tmp", node_->dir() + "/scenario.yaml");
    ASSERT_TRUE(WaitUntil([&] { return ReadFile(node_->registry_path()) != registry_before; },
                          std::chrono::seconds(10)))
        << "the fake never promoted the rotation";
  }

  std::string MainPid() { return node_->Systemctl({"show", "-p", "MainPID", node_->unit()}); }

  void ExpectOldServing() {
    EXPECT_TRUE(WaitUntil([&] { return node_->ProviderReady(); }, std::chrono::seconds(5)));
    EXPECT_EQ(node_->ServingVersion(), kOld);
    EXPECT_EQ(Digest(node_->install_path()), old_digest_);
  }

  std::unique_ptr<SystemdNode> node_;
  std::string version_ = kNew;
  std::string old_digest_;
  SubprocessResult last_swap_;
};

TEST_F(SwapTest, HappySwapThenManualRollback) {
  Start();
  boost::json::object op = StageAndSwap();
  EXPECT_EQ(last_swap_.exit_code, 0) << last_swap_.stderr_text;
  EXPECT_EQ(Str(op, "phase"), "Stable");
  EXPECT_TRUE(Done(op));
  EXPECT_EQ(Str(op, "previous_version"), kOld);
  EXPECT_EQ(node_->ServingVersion(), kNew);
  EXPECT_EQ(node_->InstalledVersion(), kNew);
  EXPECT_THAT(last_swap_.stderr_text, HasSubstr("op-1: Installed"));
  // Evidence: the registry pair as it was before the stop, with its hashes.
  std::string evidence = Str(op, "evidence_dir");
  ASSERT_EQ(Str(op, "registry_sha256").size(), 64u);
  ASSERT_EQ(Str(op, "checkpoint_sha256").size(), 64u);
  EXPECT_EQ(Digest(evidence + "/key-registry.json"), Str(op, "registry_sha256"));
  EXPECT_EQ(Digest(evidence + "/key-registry.json.checkpoint"),
            Str(op, "checkpoint_sha256"));
  EXPECT_EQ(Digest(evidence + "/previous-binary"), old_digest_);
  // The benchmark figure of issue 4: kmsfleetd's peak RSS over a swap.
  std::string proc =
      ReadFile("/proc/" + std::to_string(node_->agent()->pid()) + "/status");
  size_t hwm = proc.find("VmHWM:");
  ASSERT_NE(hwm, std::string::npos);
  std::string peak = proc.substr(hwm, proc.find('\n', hwm) - hwm);
  std::cout << "kmsfleetd peak RSS during swap: " << peak << "\n";
  RecordProperty("kmsfleetd_peak_rss", peak);

  absl::StatusOr<SubprocessResult> back =
      node_->Node({"rollback", "--of", "op-1", "--operation-id", "op-2"});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->exit_code, 0) << back->stderr_text << back->stdout_text;
  EXPECT_EQ(Str(Json(back->stdout_text), "phase"), "Stable");
  ExpectOldServing();
}

// The released previews predate the live Transit check: the installed
// 0.1.0-preview.3's rotation-plan prints no transitMetadataStatus, and the
// new release's is asked instead. Before, every swap from a released
// version was refused ROTATION_PLAN_UNTRUSTED.
TEST_F(SwapTest, ASwapFromAReleasedPreviewIsCheckedByTheNewReleasesRotationPlan) {
  Start("", false, "0.1.0-preview.3");
  boost::json::object op = StageAndSwap();
  EXPECT_EQ(last_swap_.exit_code, 0) << last_swap_.stderr_text << last_swap_.stdout_text;
  EXPECT_EQ(Str(op, "phase"), "Stable");
  EXPECT_EQ(Str(op, "previous_version"), "0.1.0-preview.3");
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// Found in review: when --timeout-ms ended the wait, the command exited 1,
// "refused or ended in another phase", while the swap went on.
TEST_F(SwapTest, AWaitThatEndsBeforeTheSwapSaysItIsStillRunning) {
  Start("");
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  absl::StatusOr<SubprocessResult> r =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-w", "--stabilization-ms",
                   "6000"},
                  /*timeout_ms=*/3000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, 4) << r->stderr_text;
  EXPECT_THAT(r->stderr_text, HasSubstr("op-w is still running"));
  EXPECT_THAT(r->stderr_text, HasSubstr("kmsfleetctl node operation --id op-w"));
  absl::StatusOr<SubprocessResult> done = node_->Node({"operation", "--id", "op-w"});
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->exit_code, 0) << done->stderr_text;
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// An election member (a single voter here, so it leads itself) swaps only
// under the coordinator's fence, and the hand-off waits for its operation.
TEST_F(SwapTest, MemberSwapsOnlyUnderAFenceAndHandsOffOnlyWhenDone) {
  Start("", /*in_cluster=*/true);
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  absl::StatusOr<SubprocessResult> unfenced = node_->Node({"swap", "--version", kNew});
  ASSERT_TRUE(unfenced.ok());
  EXPECT_EQ(unfenced->exit_code, 1);
  EXPECT_THAT(unfenced->stderr_text, HasSubstr("[FENCE_REQUIRED] node cp-1"));

  std::string fence;
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<SubprocessResult> c = node_->CommitPlan("cp-1");
        if (c.ok() && c->exit_code == 0) fence = c->stdout_text.substr(0, c->stdout_text.find('\n'));
        return !fence.empty();
      },
      std::chrono::seconds(10)))
      << "no plan record committed";
  EXPECT_THAT(fence, ::testing::EndsWith("/cp-1"));
  absl::StatusOr<SubprocessResult> started =
      node_->Node({"swap", "--version", kNew, "--fence", fence, "--operation-id", "op-1",
                   "--stabilization-ms", "4000", "--no-wait"});
  ASSERT_TRUE(started.ok());
  ASSERT_EQ(started->exit_code, 0) << started->stderr_text;

  // While the swap runs, the coordinator cannot move the plan on.
  absl::StatusOr<SubprocessResult> early = node_->CommitPlan("");
  ASSERT_TRUE(early.ok());
  EXPECT_EQ(early->exit_code, 1);
  EXPECT_THAT(early->stderr_text, HasSubstr("[HANDOFF_PENDING]"));
  absl::StatusOr<SubprocessResult> done = node_->Node({"operation", "--id", "op-1"});
  ASSERT_TRUE(done.ok());
  ASSERT_EQ(done->exit_code, 0) << done->stderr_text;
  boost::json::object op = Json(done->stdout_text);
  const boost::json::object* journaled = op.if_contains("fence") != nullptr
                                             ? op.at("fence").if_object()
                                             : nullptr;
  ASSERT_NE(journaled, nullptr) << done->stdout_text;
  EXPECT_EQ(fence.substr(0, fence.find('/')), Str(*journaled, "term"));
  EXPECT_EQ(node_->ServingVersion(), kNew);

  // Once it is Stable the node hands off, and the old fence is spent.
  absl::StatusOr<SubprocessResult> handed = node_->CommitPlan("");
  ASSERT_TRUE(handed.ok());
  ASSERT_EQ(handed->exit_code, 0) << handed->stderr_text;
  absl::StatusOr<SubprocessResult> stale = node_->Node(
      {"rollback", "--of", "op-1", "--fence", fence, "--operation-id", "op-2"});
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->exit_code, 1);
  EXPECT_THAT(stale->stderr_text, HasSubstr("[STALE_FENCE]"));
  EXPECT_EQ(node_->ServingVersion(), kNew);

  absl::StatusOr<SubprocessResult> again = node_->CommitPlan("cp-1");
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->exit_code, 0) << again->stderr_text;
  std::string next = again->stdout_text.substr(0, again->stdout_text.find('\n'));
  absl::StatusOr<SubprocessResult> back = node_->Node(
      {"rollback", "--of", "op-1", "--fence", next, "--operation-id", "op-3"});
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->exit_code, 0) << back->stderr_text << back->stdout_text;
  ExpectOldServing();
}

TEST_F(SwapTest, ChecksumMismatchStagesNothing) {
  Start();
  SystemdNode::Release r = node_->MakeRelease(kNew);
  StampedProviderCopy(r.binary, "0.2.0-evil");  // after checksums were made
  SubprocessResult s = Stage(r);
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_THAT(s.stderr_text, HasSubstr("CHECKSUM_MISMATCH"));
  EXPECT_THAT(s.stderr_text, HasSubstr(r.binary));
  EXPECT_THAT(s.stderr_text, HasSubstr("expected"));
  EXPECT_FALSE(PathExists(node_->state_dir() + "/artifacts/0.2.0/bao-kms-provider"));
  ExpectOldServing();
}

TEST_F(SwapTest, BadSignatureAndUnsignedAreRefused) {
  Start();
  SystemdNode::Release r = node_->MakeRelease(kNew);
  WriteFile(r.checksums, ReadFile(r.checksums) + std::string(64, 'a') + "  extra\n");
  SubprocessResult s = Stage(r);
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_THAT(s.stderr_text, HasSubstr("SIGNATURE_INVALID"));
  s = Stage(r, /*sign=*/false);
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_THAT(s.stderr_text, HasSubstr("UNSIGNED_REFUSED"));
  EXPECT_FALSE(PathExists(node_->state_dir() + "/artifacts/0.2.0/bao-kms-provider"));
  ExpectOldServing();
}

TEST_F(SwapTest, DoctorFailBlocksBeforeTheStop) {
  Start();
  std::string script = node_->FakeScript(kNew, "--fake-set 'doctor={fail: [transit.metadata]}'");
  ASSERT_EQ(Stage(node_->MakeRelease(kNew, script)).exit_code, 0);
  absl::StatusOr<SubprocessResult> pre = node_->Node({"preflight", "--version", kNew});
  ASSERT_TRUE(pre.ok());
  EXPECT_EQ(pre->exit_code, 1);
  EXPECT_THAT(pre->stdout_text, HasSubstr("transit.metadata"));
  EXPECT_THAT(pre->stdout_text, HasSubstr("DOCTOR_FAILED"));
  absl::StatusOr<SubprocessResult> r =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-d"});
  ASSERT_TRUE(r.ok());
  boost::json::object op = Json(r->stdout_text);
  EXPECT_EQ(r->exit_code, 1);
  EXPECT_EQ(Str(op, "phase"), "Preflighted");
  EXPECT_EQ(Str(op, "reason"), "DOCTOR_FAILED");
  EXPECT_THAT(Str(op, "message"), HasSubstr("transit.metadata"));
  ExpectOldServing();
}

TEST_F(SwapTest, StoppedUnitIsRefusedBeforeAnythingChanges) {
  Start();
  node_->Systemctl({"stop", node_->unit()});
  boost::json::object op = StageAndSwap();
  EXPECT_EQ(last_swap_.exit_code, 1);
  EXPECT_EQ(Str(op, "phase"), "Preflighted");
  EXPECT_EQ(Str(op, "reason"), "UNIT_FAILED");
  EXPECT_THAT(Str(op, "message"), HasSubstr("inactive"));
  EXPECT_EQ(Digest(node_->install_path()), old_digest_);
  EXPECT_THAT(node_->Systemctl({"is-active", node_->unit()}), HasSubstr("inactive"));
}

// Reference §10: the installed release's rotation-plan shows a registry
// checkpoint that is not current: the swap is refused before the stop, and
// the provider keeps running as it was (same main process).
TEST_F(SwapTest, ACheckpointThatIsNotCurrentRefusesTheSwapWithTheProviderUntouched) {
  Start("#!/bin/sh\nexec " + std::string(FAKE_PROVIDER_PATH) + " --fake-version " + kOld +
        " --fake-set 'rotation_plan={stateCheckpointStatus: missing}' \"$@\"\n");
  const std::string pid_before = MainPid();
  boost::json::object op = StageAndSwap();
  EXPECT_EQ(last_swap_.exit_code, 1) << last_swap_.stderr_text;
  EXPECT_EQ(Str(op, "phase"), "Preflighted");
  EXPECT_EQ(Str(op, "reason"), "STATE_CHECKPOINT_NOT_CURRENT");
  EXPECT_THAT(Str(op, "message"), HasSubstr("stateCheckpointStatus missing"));
  ExpectOldServing();
  EXPECT_EQ(MainPid(), pid_before)
      << "the provider was never stopped";
  // Found in review: `node preflight` passed what the swap refuses.
  absl::StatusOr<SubprocessResult> pre = node_->Node({"preflight", "--version", kNew});
  ASSERT_TRUE(pre.ok()) << pre.status();
  EXPECT_EQ(pre->exit_code, 1) << pre->stdout_text;
  EXPECT_THAT(pre->stderr_text, HasSubstr("[STATE_CHECKPOINT_NOT_CURRENT] rotation-plan reports "
                                          "stateCheckpointStatus missing"));
  // The refusal's remedy, by hand: the operator acknowledges it.
  absl::StatusOr<SubprocessResult> r =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-2", "--acknowledge",
                   "STATE_CHECKPOINT_NOT_CURRENT"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_text;
  boost::json::object acknowledged = Json(r->stdout_text);
  EXPECT_EQ(Str(acknowledged, "phase"), "Stable") << r->stdout_text;
  const boost::json::value* flag = acknowledged.if_contains("checkpoint_acknowledged");
  EXPECT_TRUE(flag != nullptr && flag->is_bool() && flag->as_bool()) << r->stdout_text;
  EXPECT_EQ(node_->ServingVersion(), kNew);
  EXPECT_THAT(node_->Logs(), HasSubstr("the swap goes on as acknowledged"));
}

TEST_F(SwapTest, NeverReadyRollsBack) {
  Start();
  boost::json::object op = StageAndSwap(node_->FakeScript(kNew, "--fake-set ready=false"));
  EXPECT_EQ(last_swap_.exit_code, 1);
  EXPECT_EQ(Str(op, "phase"), "RolledBack");
  EXPECT_EQ(Str(op, "reason"), "NOT_READY");
  ExpectOldServing();
}

TEST_F(SwapTest, KeyIdHashChangeRollsBack) {
  Start();
  boost::json::object op =
      StageAndSwap(node_->FakeScript(kNew, "--fake-set key_seed=another-key"));
  EXPECT_EQ(Str(op, "phase"), "RolledBack");
  EXPECT_EQ(Str(op, "reason"), "KEY_ID_HASH_MISMATCH");
  ExpectOldServing();
}

TEST_F(SwapTest, RollbackFailingToo) {
  // The installed release starts now, but will not start again once the
  // marker exists, like a previous release broken by a host change.
  std::string marker = "/tmp/kmsfleet-broken-" + std::to_string(getpid());
  std::string script =
      "#!/bin/sh\nif [ -e " + marker + " ]; then exec " + FAKE_PROVIDER_PATH +
      " --fake-version 0.1.0 --fake-set exit_on_start=true \"$@\"; fi\nexec " +
      FAKE_PROVIDER_PATH + " --fake-version 0.1.0 \"$@\"\n";
  Start(script);
  WriteFile(marker, "");
  boost::json::object op =
      StageAndSwap(node_->FakeScript(kNew, "--fake-set exit_on_start=true"));
  std::filesystem::remove(marker);
  EXPECT_EQ(Str(op, "phase"), "RollbackFailed");
  EXPECT_EQ(Str(op, "reason"), "UNIT_FAILED");
  // The fake's serve exits 5 on start (tests/fakes/README.md): the reason
  // carries the unit's exit status, not only "failed".
  EXPECT_THAT(Str(op, "message"), HasSubstr("exit status 5"));
  EXPECT_EQ(Digest(node_->install_path()), old_digest_);
}

TEST_F(SwapTest, RemovedRecordsRefuseTheRollback) {
  Start();
  // The new release retires versions as it starts (removed records, which
  // older binaries reject), then fails.
  boost::json::object op = StageAndSwap(FailingReleaseWritingRegistry(
      R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1","snapshots":[{"state":"removed"}]})"));
  EXPECT_EQ(Str(op, "phase"), "RollbackFailed");
  EXPECT_EQ(Str(op, "reason"), "ROLLBACK_REFUSED_REMOVED_RECORDS");
  EXPECT_THAT(Str(op, "message"), HasSubstr("UNIT_FAILED"));
  // Left as it is: the new binary stays installed for the operator.
  EXPECT_EQ(node_->InstalledVersion(), kNew);
  // Found in review: --no-wait exited 0 for an operation that had ended
  // in another phase than Stable.
  absl::StatusOr<SubprocessResult> looked =
      node_->Node({"operation", "--id", Str(op, "operation_id"), "--no-wait"});
  ASSERT_TRUE(looked.ok());
  EXPECT_EQ(looked->exit_code, 1) << looked->stdout_text << looked->stderr_text;
  EXPECT_THAT(looked->stderr_text, HasSubstr("ROLLBACK_REFUSED_REMOVED_RECORDS"));
}

// A new release that promotes a Transit version and then fails is kept,
// not restored over: the older release never promoted that key.
TEST_F(SwapTest, ATargetThatPromotedATransitVersionIsKeptWhenItFails) {
  Start();
  boost::json::object op = StageAndSwap(FailingReleaseWritingRegistry(
      R"({"schemaVersion":"keyregistry.openbao-kms/v1alpha1",)"
      R"("snapshots":[{"state":"active","transitVersion":2}]})"));
  EXPECT_EQ(Str(op, "phase"), "RollbackFailed");
  EXPECT_EQ(Str(op, "reason"), "ROLLBACK_REFUSED_KEY_ROTATED");
  EXPECT_THAT(Str(op, "message"), HasSubstr("UNIT_FAILED"));
  EXPECT_EQ(node_->InstalledVersion(), kNew);
}

// Reference §8.1, on the node itself: a rollback by hand (or a command
// replayed to the agent) after a rotation was promoted under the newer
// release is refused before the stop; the newer release keeps serving.
TEST_F(SwapTest, ARollbackAfterARotationPromotedUnderTheNewReleaseIsRefused) {
  Start();
  boost::json::object op = StageAndSwap();
  ASSERT_EQ(Str(op, "phase"), "Stable") << last_swap_.stderr_text;
  const std::string before = ReadFile(node_->registry_path());
  ASSERT_NO_FATAL_FAILURE(PromoteARotation(before));
  absl::StatusOr<SubprocessResult> back =
      node_->Node({"rollback", "--of", "op-1", "--operation-id", "op-2"});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->exit_code, 1) << back->stdout_text;
  boost::json::object refused = Json(back->stdout_text);
  EXPECT_EQ(Str(refused, "phase"), "Preflighted");
  EXPECT_EQ(Str(refused, "reason"), "ROLLBACK_REFUSED_KEY_ROTATED");
  EXPECT_EQ(node_->InstalledVersion(), kNew);
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// The same rule for a swap to the older release by hand: it is a rollback
// by another name, refused before the stop once a rotation was promoted
// under the newer release (judged against the key kept by the capture of
// the swap that replaced the older one).
TEST_F(SwapTest, ASwapBackToTheOlderReleaseAfterARotationPromotedIsRefused) {
  Start();
  boost::json::object op = StageAndSwap();
  ASSERT_EQ(Str(op, "phase"), "Stable") << last_swap_.stderr_text;
  version_ = kOld;
  SubprocessResult staged = Stage(node_->MakeRelease(kOld));
  ASSERT_EQ(staged.exit_code, 0) << staged.stderr_text;
  const std::string before = ReadFile(node_->registry_path());
  ASSERT_NO_FATAL_FAILURE(PromoteARotation(before));
  const std::string pid_before = MainPid();
  absl::StatusOr<SubprocessResult> down =
      node_->Node({"swap", "--version", kOld, "--operation-id", "op-2"});
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->exit_code, 1) << down->stdout_text << down->stderr_text;
  boost::json::object refused = Json(down->stdout_text);
  EXPECT_EQ(Str(refused, "phase"), "Preflighted") << down->stderr_text;
  EXPECT_EQ(Str(refused, "reason"), "ROLLBACK_REFUSED_KEY_ROTATED");
  EXPECT_THAT(Str(refused, "message"), HasSubstr("when 0.1.0 last ran on this node"));
  EXPECT_EQ(MainPid(), pid_before) << "the provider was stopped";
  EXPECT_EQ(node_->ServingVersion(), kNew);
  EXPECT_EQ(node_->InstalledVersion(), kNew);
}

// A swap that carries the key_id hash from before a rotation the node has
// since promoted (a plan's parity rounds just before the promotion, or an
// operator's stale --expected-key-id-hash): the new release would start on
// the promoted key and fail its verification. Refused at the capture, the
// provider never stopped.
TEST_F(SwapTest, ASwapExpectingTheKeyFromBeforeAPromotionLeavesTheProviderRunning) {
  Start();
  SubprocessResult staged = Stage(node_->MakeRelease(version_));
  ASSERT_EQ(staged.exit_code, 0) << staged.stderr_text;
  const std::string before = ReadFile(node_->registry_path());
  const std::string old_hash = KeyIdHash(Str(Json(before), "activeKeyId"));
  ASSERT_EQ(old_hash.size(), 43u) << before;
  ASSERT_NO_FATAL_FAILURE(PromoteARotation(before));
  const std::string pid_before = MainPid();
  absl::StatusOr<SubprocessResult> r =
      node_->Node({"swap", "--version", version_, "--operation-id", "op-1",
                   "--expected-key-id-hash", old_hash});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->stdout_text << r->stderr_text;
  boost::json::object op = Json(r->stdout_text);
  EXPECT_EQ(Str(op, "phase"), "Preflighted");
  EXPECT_EQ(Str(op, "reason"), "ACTIVE_KEY_NOT_EXPECTED");
  EXPECT_THAT(Str(op, "message"), HasSubstr("the swap expects " + old_hash));
  EXPECT_EQ(MainPid(), pid_before) << "the provider was stopped";
  EXPECT_EQ(node_->ServingVersion(), kOld);
  EXPECT_EQ(node_->InstalledVersion(), kOld);
}

// Found in review: a provider that crash-looped while kmsfleetd was down
// hits its unit's start limit; recovery's start (or a rollback's) then
// failed within the limit's interval and the operation ended
// RollbackFailed, where `systemctl reset-failed` and a start, as the
// break-glass runbook does, would have worked. Start resets the unit first.
TEST(SystemdStartTest, AUnitHeldByItsStartLimitIsStartedAgain) {
  TempDir dir;
  std::unique_ptr<ChildProcess> manager = StartUserManager(dir.path());
  const std::string script = dir.File("run.sh");
  WriteExecutable(script, "#!/bin/sh\n[ -e " + dir.File("fixed") +
                              " ] && exec sleep 60\nexit 1\n");
  WriteFile(dir.File("cfg/systemd/user/start-limit.service"),
            "[Unit]\nStartLimitIntervalSec=60\nStartLimitBurst=2\n"
            "[Service]\nType=simple\nExecStart=" + script + "\n");
  UserSystemctl(dir.path(), {"daemon-reload"});
  std::unique_ptr<ServiceManager> services =
      NewSystemdServiceManager("unix:path=" + dir.File("rt/systemd/private"));
  // Each start forks the script, which fails at once; the third is over
  // the limit.
  for (int i = 0; i < 3; ++i) {
    (void)services->Start("start-limit.service", std::chrono::seconds(5));
    for (int w = 0; w < 100; ++w) {
      absl::StatusOr<UnitState> st = services->State("start-limit.service");
      if (st.ok() && st->activity == UnitActivity::kFailed) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  absl::StatusOr<UnitState> failed = services->State("start-limit.service");
  ASSERT_TRUE(failed.ok()) << failed.status();
  EXPECT_EQ(failed->activity, UnitActivity::kFailed) << failed->detail;
  WriteFile(dir.File("fixed"), "");
  absl::Status started = services->Start("start-limit.service", std::chrono::seconds(5));
  EXPECT_TRUE(started.ok()) << started;
  absl::StatusOr<UnitState> st = services->State("start-limit.service");
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->activity, UnitActivity::kRunning) << st->detail;
  StopUserManager(manager);
}

TEST_F(SwapTest, OneOperationAtATimeAndIdsAreIdempotent) {
  Start();
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  absl::StatusOr<SubprocessResult> first = node_->Node(
      {"swap", "--version", kNew, "--operation-id", "op-a", "--no-wait"});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->exit_code, 0) << first->stderr_text;
  absl::StatusOr<SubprocessResult> second =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-b"});
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->exit_code, 1);
  EXPECT_THAT(second->stderr_text, HasSubstr("OPERATION_IN_PROGRESS"));
  // The same id again follows the running operation instead of a new one.
  absl::StatusOr<SubprocessResult> again =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-a"});
  ASSERT_TRUE(again.ok());
  boost::json::object op = Json(again->stdout_text);
  EXPECT_EQ(again->exit_code, 0) << again->stderr_text;
  EXPECT_EQ(Str(op, "operation_id"), "op-a");
  EXPECT_EQ(Str(op, "phase"), "Stable");
  EXPECT_EQ(node_->ServingVersion(), kNew);
  absl::StatusOr<SubprocessResult> none = node_->Node({"operation", "--id", "op-b"});
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(none->stderr_text, HasSubstr("OPERATION_NOT_FOUND"));
}

// A swap whose caller gave up while the agent was stalled (stopped, or
// starved of CPU) must not start when the agent comes back: its caller, a
// coordinator maybe, has gone on to decide with the node untouched. Here
// the agent stalls before it reads the call, which gRPC then drops; one
// given up on while the agent admits it is refused CALLER_GONE
// (ExecutorTest.ACommandWhoseCallerGaveUpIsNotStarted).
TEST_F(SwapTest, ASwapWhoseCallerGaveUpWhileTheAgentStalledIsNotStarted) {
  Start();
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  node_->agent()->Signal(SIGSTOP);
  absl::StatusOr<SubprocessResult> late = node_->Node(
      {"swap", "--version", kNew, "--operation-id", "op-late", "--no-wait"}, 500);
  node_->agent()->Signal(SIGCONT);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_NE(late->exit_code, 0) << "the caller gave up: " << late->stdout_text;
  // Time for the agent to read the command and, had it started it, to
  // stop the provider.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  absl::StatusOr<SubprocessResult> none = node_->Node({"operation", "--id", "op-late"});
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(none->stderr_text, HasSubstr("OPERATION_NOT_FOUND"));
  EXPECT_EQ(node_->ServingVersion(), kOld);
}

// Found in review: an operation whose swap was still being admitted was
// answered OPERATION_NOT_FOUND, which a coordinator following it (its
// call timed out, the plan paused) takes for "never reached the node",
// giving the slot back untouched as the swap starts. Here the agent's
// admission stalls (KMSFLEETD_TEST_STALL_AT) while the id is looked up.
TEST_F(SwapTest, AnOperationStillBeingAdmittedIsNotReportedUnknown) {
  Start();
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_STALL_AT=admitting"}, KMSFLEETD_CRASHTEST_PATH);
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  absl::StatusOr<SubprocessResult> swapped;
  std::thread swap([&] {
    swapped = node_->Node({"swap", "--version", kNew, "--operation-id", "op-1", "--no-wait"});
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  absl::StatusOr<SubprocessResult> asked = node_->Node({"operation", "--id", "op-1", "--no-wait"});
  absl::StatusOr<SubprocessResult> followed = node_->Node({"operation", "--id", "op-1"});
  swap.join();
  ASSERT_TRUE(asked.ok() && followed.ok() && swapped.ok());
  EXPECT_EQ(swapped->exit_code, 0) << swapped->stderr_text;
  EXPECT_EQ(asked->exit_code, 3) << asked->stdout_text;
  EXPECT_THAT(asked->stderr_text, HasSubstr("OPERATION_BEING_ADMITTED"));
  EXPECT_EQ(followed->exit_code, 0) << followed->stderr_text;
  EXPECT_EQ(Str(Json(followed->stdout_text), "phase"), "Stable") << followed->stdout_text;
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// Found in review: a swap admitted while a stage of its version ran could
// install a release being replaced under it (the stage's check of running
// swaps came before its download). Here the agent's stage stalls
// (KMSFLEETD_TEST_STALL_AT) while the swap is asked: refused, untouched;
// asked again once the stage ended, it runs.
TEST_F(SwapTest, ASwapWhileItsVersionIsBeingStagedIsRefused) {
  Start();
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_STALL_AT=staging"}, KMSFLEETD_CRASHTEST_PATH);
  // Made first: the stall (3 s) must cover the swap asked 1 s after the stage.
  const SystemdNode::Release release = node_->MakeRelease(kNew);
  SubprocessResult staged;
  std::thread stage([&] { staged = Stage(release); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  absl::StatusOr<SubprocessResult> refused =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-1"});
  stage.join();
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(staged.exit_code, 0) << staged.stderr_text;
  EXPECT_NE(refused->exit_code, 0) << refused->stdout_text;
  EXPECT_THAT(refused->stderr_text, HasSubstr("OPERATION_IN_PROGRESS"));
  EXPECT_THAT(refused->stderr_text, HasSubstr("a stage of " + std::string(kNew)));
  ExpectOldServing();
  absl::StatusOr<SubprocessResult> swapped =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-1"});
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  EXPECT_EQ(swapped->exit_code, 0) << swapped->stderr_text;
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// ... and the other way round: a stage of the version a swap is still
// admitting is refused, and the swap installs the release it checked
// (before the fix the stage went ahead, and the swap failed its first
// check, on the digest, before the stop).
TEST_F(SwapTest, AStageOfTheVersionASwapIsAdmittingIsRefused) {
  Start();
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_STALL_AT=admitting"}, KMSFLEETD_CRASHTEST_PATH);
  // Made first: the stall (3 s) must cover the stage asked 1 s after the swap.
  const SystemdNode::Release other = node_->MakeRelease(kNew, node_->FakeScript(kNew, ""));
  absl::StatusOr<SubprocessResult> swapped;
  std::thread swap([&] {
    swapped = node_->Node({"swap", "--version", kNew, "--operation-id", "op-1"});
  });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  SubprocessResult again = Stage(other);
  swap.join();
  ASSERT_TRUE(swapped.ok()) << swapped.status();
  EXPECT_NE(again.exit_code, 0) << again.stdout_text;
  EXPECT_THAT(again.stderr_text, HasSubstr("OPERATION_IN_PROGRESS"));
  EXPECT_THAT(again.stderr_text, HasSubstr("is being admitted"));
  EXPECT_EQ(swapped->exit_code, 0) << swapped->stderr_text;
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// Found in review: the agent answered a stage with the staged digest it
// read from disk once the stage had returned, so a second stage of the
// version that replaced the release in between handed the first caller
// (a plan) its own digest, and the plan's swap installed a release the
// plan never staged or preflighted. Each stage stalls just before it
// returns (KMSFLEETD_TEST_STALL_AT): the second one stages meanwhile.
TEST_F(SwapTest, AStageAnswersTheDigestOfWhatItStagedNotOfAStageBesideIt) {
  Start();
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_STALL_AT=stage-done"}, KMSFLEETD_CRASHTEST_PATH);
  const SystemdNode::Release first = node_->MakeRelease(kNew);
  SubprocessResult a;
  std::thread stage([&] { a = Stage(first); });
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // Other bytes in the same files, which the first stage has read.
  SubprocessResult b = Stage(node_->MakeRelease(kNew, node_->FakeScript(kNew, "")));
  stage.join();
  ASSERT_EQ(a.exit_code, 0) << a.stderr_text;
  ASSERT_EQ(b.exit_code, 0) << b.stderr_text;
  const std::string a_sha = Str(Json(a.stdout_text), "sha256");
  const std::string b_sha = Str(Json(b.stdout_text), "sha256");
  ASSERT_NE(a_sha, b_sha);
  EXPECT_EQ(Str(Json(a.stdout_text), "staged_digest"), a_sha) << a.stdout_text;
  EXPECT_EQ(Str(Json(b.stdout_text), "staged_digest"), b_sha) << b.stdout_text;
}

// Found in review: a swap installed whatever was staged when it started,
// so the same version staged again with other bytes (another signed build)
// after the plan's preflight was swapped in. The plan now sends the digest
// its stage reported; `node swap --expected-digest` is the same check.
TEST_F(SwapTest, ASwapExpectingTheFirstStagedBytesRefusesARestage) {
  Start();
  SubprocessResult first = Stage(node_->MakeRelease(kNew));
  ASSERT_EQ(first.exit_code, 0) << first.stderr_text;
  const std::string first_sha = Str(Json(first.stdout_text), "sha256");
  ASSERT_EQ(first_sha.size(), 64u) << first.stdout_text;
  SubprocessResult again = Stage(node_->MakeRelease(kNew, node_->FakeScript(kNew, "")));
  ASSERT_EQ(again.exit_code, 0) << again.stderr_text;
  const std::string second_sha = Str(Json(again.stdout_text), "sha256");
  ASSERT_NE(second_sha, first_sha);

  absl::StatusOr<SubprocessResult> r = node_->Node(
      {"swap", "--version", kNew, "--operation-id", "op-1", "--expected-digest", first_sha});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->stdout_text;
  EXPECT_THAT(r->stderr_text, HasSubstr("STAGED_ARTIFACT_CHANGED"));
  EXPECT_THAT(r->stderr_text, HasSubstr(second_sha));
  ExpectOldServing();

  boost::json::object op = StageAndSwap("", "op-2");
  EXPECT_EQ(Str(op, "phase"), "Stable") << last_swap_.stderr_text;
}

// Found in review: a start that failed after recovery began (here the
// metrics address is taken) joined the recovery with SIGTERM blocked and
// unread, so a stop waited out the whole recovery and systemd's timeouts.
// Now SIGTERM ends it at once and the next start finishes the recovery.
TEST_F(SwapTest, AStartThatFailsDuringRecoveryStillStopsOnSigterm) {
  Start();
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_CRASH_AT=Stopped"}, KMSFLEETD_CRASHTEST_PATH);
  SubprocessResult staged = Stage(node_->MakeRelease(kNew));
  ASSERT_EQ(staged.exit_code, 0) << staged.stderr_text;
  (void)node_->Node({"swap", "--version", kNew, "--operation-id", "op-1",
                     "--stabilization-ms", "8000", "--no-wait"});
  ASSERT_TRUE(node_->agent()->Wait(std::chrono::seconds(30)).has_value())
      << "kmsfleetd did not crash";
  const std::string config = node_->dir() + "/kmsfleet.yaml";
  const std::string good = ReadFile(config);
  HeldPort taken;
  ASSERT_NE(taken.port(), 0);
  WriteFile(config, good + "metrics:\n  listen: 127.0.0.1:" + std::to_string(taken.port()) + "\n");

  ChildProcess agent({KMSFLEETD_PATH, "--config", config},
                     ChildOptions{.out_path = node_->dir() + "/failing-start.log"});
  ASSERT_TRUE(WaitUntil([&] { return agent.Output().find("recovering operation") !=
                                     std::string::npos; },
                        std::chrono::seconds(10)))
      << agent.Output();
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the start has failed by now
  const auto signalled = std::chrono::steady_clock::now();
  agent.Signal(SIGTERM);
  std::optional<int> code = agent.Wait(std::chrono::seconds(15));
  ASSERT_TRUE(code.has_value()) << agent.Output();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, std::chrono::seconds(4));
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(agent.Output(), HasSubstr("stopping with recovery unfinished")) << agent.Output();

  WriteFile(config, good);
  node_->StartAgent();
  absl::StatusOr<SubprocessResult> r = node_->Node({"operation", "--id", "op-1"}, 60000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Str(Json(r->stdout_text), "phase"), "RolledBack") << r->stdout_text;
  ExpectOldServing();
}

// Found in review: a SIGTERM during a swap's stabilisation window waited
// for the window to end (up to an hour) before kmsfleetd exited: past
// systemd's TimeoutStopSec=30s, into a SIGKILL at whatever step came next.
TEST_F(SwapTest, ASigtermInTheWindowStopsTheAgentAndTheNextStartFinishesTheSwap) {
  Start();
  ASSERT_EQ(Stage(node_->MakeRelease(kNew)).exit_code, 0);
  absl::StatusOr<SubprocessResult> swap =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-1", "--stabilization-ms",
                   "20000", "--no-wait"});
  ASSERT_TRUE(swap.ok()) << swap.status();
  const std::string journal = node_->state_dir() + "/journal/op-1.json";
  ASSERT_TRUE(WaitUntil(
      [&] {
        return std::filesystem::exists(journal) &&
               ReadFile(journal).find("\"Verifying\"") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << node_->Logs();
  // Verifying is recorded once the unit starts, maybe before the new
  // provider listens (on a loaded machine, the check below then read ""):
  // the signal comes while it serves, inside the 20 s window.
  ASSERT_TRUE(WaitUntil([&] { return node_->ServingVersion() == kNew; },
                        std::chrono::seconds(10)))
      << node_->Logs();

  const auto signalled = std::chrono::steady_clock::now();
  node_->agent()->Signal(SIGTERM);
  std::optional<int> code = node_->agent()->Wait(std::chrono::seconds(40));
  ASSERT_TRUE(code.has_value()) << "kmsfleetd did not stop";
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, std::chrono::seconds(10));
  // Non-zero, so that Restart=on-failure starts it again after a SIGTERM
  // systemd did not send.
  EXPECT_EQ(*code, 1);
  EXPECT_THAT(node_->Logs(), HasSubstr("the next start verifies it again"));
  EXPECT_THAT(node_->Logs(), HasSubstr("stopped with an operation open"));
  EXPECT_EQ(node_->ServingVersion(), kNew) << "the provider is left as it was";

  node_->StartAgent();
  absl::StatusOr<SubprocessResult> r = node_->Node({"operation", "--id", "op-1"}, 60000);
  ASSERT_TRUE(r.ok()) << r.status();
  boost::json::object op = Json(r->stdout_text);
  ASSERT_TRUE(Done(op)) << r->stdout_text << r->stderr_text;
  EXPECT_EQ(Str(op, "phase"), "Stable") << r->stdout_text;
  EXPECT_EQ(node_->InstalledVersion(), kNew);
  EXPECT_EQ(node_->ServingVersion(), kNew);
}

// Found in review: a journal the restarted agent could not read was
// skipped, so the operation it recorded was neither finished nor rolled
// back, and the node took the next swap. Here kmsfleetd dies with the new
// binary started but unverified, and its journal is then torn.
TEST_F(SwapTest, AJournalUnreadableAfterACrashKeepsTheNodeRefusing) {
  Start();
  node_->StopAgent();
  node_->StartAgent({"KMSFLEETD_TEST_CRASH_AT=Started"}, KMSFLEETD_CRASHTEST_PATH);
  StageAndSwap();
  ASSERT_TRUE(node_->agent()->Wait(std::chrono::seconds(30)).has_value())
      << "kmsfleetd did not crash; the swap printed:\n"
      << last_swap_.stdout_text << last_swap_.stderr_text;
  const std::string journal = node_->state_dir() + "/journal/op-1.json";
  ASSERT_TRUE(std::filesystem::exists(journal));
  WriteFile(journal, "{\"operationId\":");
  node_->StartAgent();

  absl::StatusOr<SubprocessResult> r =
      node_->Node({"swap", "--version", kNew, "--operation-id", "op-2"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 1) << r->stdout_text;
  EXPECT_THAT(r->stderr_text, HasSubstr("JOURNAL_CORRUPT"));
  EXPECT_THAT(r->stderr_text, HasSubstr(journal));
  EXPECT_FALSE(std::filesystem::exists(node_->state_dir() + "/journal/op-2.json"));
  EXPECT_THAT(node_->Logs(), HasSubstr("journal unreadable"));
  // The code break-glass.md tells the operator to look for there.
  EXPECT_THAT(node_->Logs(), HasSubstr("reason=JOURNAL_CORRUPT"));
}

// SIGKILL at each phase boundary and after the rename, then restart: the
// node ends on the one version the journal dictates, with the journal
// closed and evidence intact. Before the stop nothing changed (the
// operation closes where it was); after it, the installed digest decides:
// the previous binary rolls back, the target resumes verification.
struct CrashCase {
  const char* point;
  const char* phase;  // the phase the recovered operation ends in
};

class CrashTest : public SwapTest, public ::testing::WithParamInterface<CrashCase> {};

TEST_P(CrashTest, RecoversToTheVersionTheJournalDictates) {
  Start();
  node_->StopAgent();
  node_->StartAgent({std::string("KMSFLEETD_TEST_CRASH_AT=") + GetParam().point},
                    KMSFLEETD_CRASHTEST_PATH);
  StageAndSwap();
  ASSERT_TRUE(node_->agent()->Wait(std::chrono::seconds(30)).has_value())
      << "kmsfleetd did not crash at " << GetParam().point << "; the swap printed:\n"
      << last_swap_.stdout_text << last_swap_.stderr_text;
  node_->StartAgent();
  absl::StatusOr<SubprocessResult> r = node_->Node({"operation", "--id", "op-1"});
  ASSERT_TRUE(r.ok());
  boost::json::object op = Json(r->stdout_text);
  ASSERT_TRUE(Done(op)) << r->stdout_text << r->stderr_text;
  const std::string phase = Str(op, "phase");
  EXPECT_EQ(phase, GetParam().phase) << r->stdout_text;
  ASSERT_TRUE(WaitUntil([&] { return node_->ProviderReady(); }, std::chrono::seconds(5)));
  const std::string serving = node_->ServingVersion();
  EXPECT_EQ(serving, phase == "Stable" ? kNew : kOld);
  EXPECT_EQ(node_->InstalledVersion(), serving);
  EXPECT_EQ(Str(op, "reason"), phase == "Stable" ? "" : "AGENT_RESTARTED");
  std::string evidence = Str(op, "evidence_dir");
  if (!evidence.empty() && !Str(op, "registry_sha256").empty()) {
    EXPECT_EQ(Digest(evidence + "/key-registry.json"), Str(op, "registry_sha256"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    EveryBoundary, CrashTest,
    ::testing::Values(CrashCase{"Staged", "Staged"}, CrashCase{"Preflighted", "Preflighted"},
                      CrashCase{"Stopped", "RolledBack"}, CrashCase{"Installed", "RolledBack"},
                      CrashCase{"after-rename", "Stable"}, CrashCase{"Started", "Stable"},
                      CrashCase{"Verifying", "Stable"}, CrashCase{"Stable", "Stable"}),
    [](const ::testing::TestParamInfo<CrashCase>& p) {
      std::string n = p.param.point;
      n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
      return n;
    });

// The same while rolling back a swap whose new version serves another key:
// the restarted agent finishes the rollback and keeps the first reason.
class CrashInRollbackTest : public SwapTest,
                            public ::testing::WithParamInterface<const char*> {};

TEST_P(CrashInRollbackTest, FinishesTheRollback) {
  Start();
  node_->StopAgent();
  node_->StartAgent({std::string("KMSFLEETD_TEST_CRASH_AT=") + GetParam()},
                    KMSFLEETD_CRASHTEST_PATH);
  StageAndSwap(node_->FakeScript(kNew, "--fake-set key_seed=another-key"));
  ASSERT_TRUE(node_->agent()->Wait(std::chrono::seconds(30)).has_value())
      << "kmsfleetd did not crash at " << GetParam() << "; the swap printed:\n"
      << last_swap_.stdout_text << last_swap_.stderr_text;
  node_->StartAgent();
  absl::StatusOr<SubprocessResult> r = node_->Node({"operation", "--id", "op-1"});
  ASSERT_TRUE(r.ok());
  boost::json::object op = Json(r->stdout_text);
  ASSERT_TRUE(Done(op)) << r->stdout_text << r->stderr_text;
  EXPECT_EQ(Str(op, "phase"), "RolledBack");
  EXPECT_EQ(Str(op, "reason"), "KEY_ID_HASH_MISMATCH");
  ExpectOldServing();
}

INSTANTIATE_TEST_SUITE_P(RollbackBoundaries, CrashInRollbackTest,
                         ::testing::Values("RollingBack", "RolledBack"));

}  // namespace
}  // namespace kmsfleet::testing
