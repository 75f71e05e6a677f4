// What a release is in each provider mode (architecture.md §4; issue 10):
// under systemd, the staged binary replaces the installed one; as a static
// pod, the staged kit binary runs doctor and rotation-plan, and the release
// installed is the live manifest with the staged image.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <future>
#include <optional>
#include <utility>

#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/manifest_edit.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/command_memo.h"
#include "kmsfleet/node/executor.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/http_fetch.h"
#include "kmsfleet/node/log.h"
#include "kmsfleet/node/static_pod_installer.h"
#include "kmsfleet/node/static_pod_release.h"

namespace kmsfleet {
namespace {

absl::Status NoRuntime(const std::string& node) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kCriUnreachable,
                   "node " + node + " runs its provider as a static pod but has no "
                   "container runtime configured");
}

// The image to stage, as the verified checksums.txt `sums` vouches for it
// (through the kit named by the request, downloaded first if it is a URL).
absl::StatusOr<ImageStageRequest> VouchedImage(const ArtifactStoreOptions& artifacts,
                                               const StageRequest& request,
                                               const VerifiedChecksums& sums) {
  ImageStageRequest image{request.version, request.image, request.image_ref_file, ""};
  std::string kit = request.image_ref_file;
  std::optional<DownloadedSource> downloaded;
  if (IsFetchUrl(kit)) {
    absl::StatusOr<DownloadedSource> fetched =
        DownloadSource(artifacts, kit, artifacts.max_artifact_bytes);
    if (!fetched.ok()) return fetched.status();
    downloaded.emplace(*std::move(fetched));
    kit = downloaded->path;
  }
  KMSFLEET_ASSIGN_OR_RETURN(
      image.image_ref_text,
      ReadVouchedImageRef(request.version, kit, sums.text, request.checksums, sums.is_signed,
                          artifacts.max_artifact_bytes));
  KMSFLEET_RETURN_IF_ERROR(CheckImageRequest(image).status());
  return image;
}

// The verified checksums.txt kept as a private file, for Stage to read in
// place of the request's: read twice, a file rewritten or a URL answering
// otherwise in between would have the image vouched for by one copy and
// the kit binary checked against another. Removed with the value; a crash
// leaves it to kmsfleetd's next start (RemoveStaleTemps, ".incoming-").
absl::StatusOr<DownloadedSource> KeepChecksums(const ArtifactStoreOptions& artifacts,
                                               const std::string& text) {
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(artifacts.state_dir, 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(artifacts.state_dir + "/artifacts", 0700));
  std::string dir = artifacts.state_dir + "/artifacts/.incoming-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return DiskWriteError("cannot create", dir, errno);
  DownloadedSource kept;
  kept.dir = dir;
  kept.path = dir + "/checksums.txt";
  KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(kept.path, text, 0600));
  return kept;
}

// `{image}` for static_pod.doctor_command: the name the runtime stored the
// pull under, repository@digest in Docker's normalised form (containerd
// drops a tag given with a digest, and names busybox@D
// docker.io/library/busybox@D). Found in review: the operator's text was
// passed, which `ctr run` cannot find once a short name or a tag is used.
std::string ImageAsTheRuntimeNamesIt(const std::string& image) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(image, "staged image");
  return ref.ok() ? ref->NormalizedPinned() : image;
}

// A rotation-plan answer into a preflight's outcome: the report, and
// whether it says the rotation is settled (or why there is none).
void RecordRotationPlan(const absl::StatusOr<RotationReport>& plan, PreflightOutcome& out) {
  if (!plan.ok()) {
    out.rotation_plan = plan.status();
    return;
  }
  out.rotation = *plan;
  // The checkpoint is judged from the report where the plan's
  // acknowledgements are known: the coordinator's guard, the swap.
  out.rotation_plan = CheckRotationSettled(*plan);
}

bool DoctorPassed(const absl::StatusOr<PreflightResult>& doctor) {
  return doctor.ok() && doctor->verdict.ok();
}

}  // namespace

absl::StatusOr<StagedArtifact> Executor::Stage(const StageRequest& request) {
  KMSFLEET_RETURN_IF_ERROR(RefusalWhileStopping());
  KMSFLEET_ASSIGN_OR_RETURN(std::shared_ptr<std::mutex> version_lock,
                            MarkStaging(request.version));
  // Unmarked on every way out, an exception too (as Start's mark), after
  // the version's lock is released.
  struct Unmark {
    Executor& executor;
    const std::string& version;
    ~Unmark() { executor.UnmarkStaging(version); }
  } unmark{*this, request.version};
  Hook("staging");
  absl::StatusOr<StagedArtifact> staged;
  {
    std::lock_guard<std::mutex> one_of_this_version(*version_lock);
    // The wait may have outlasted the agent's drain: a stage queued
    // behind another must not start a download the stop then waits for
    // (found in review).
    if (absl::Status stopping = RefusalWhileStopping(); !stopping.ok()) return stopping;
    Hook("stage-writing");
    staged = options_.static_pod ? StageStaticPod(request) : StageBinary(request);
  }
  // The version's lock is free here, another stage of it may write: the
  // answer carries this call's digest, not what is on disk by then.
  Hook("stage-done");
  return staged;
}

absl::StatusOr<StagedArtifact> Executor::StageBinary(const StageRequest& request) {
  // Found in review: the digest was read from disk once the stage had
  // returned, when another stage of the version may have replaced the
  // release; a plan recorded that one's digest, and its swap installed a
  // release the plan never staged or preflighted.
  absl::StatusOr<StagedArtifact> staged = kmsfleet::Stage(options_.artifacts, request);
  if (staged.ok()) staged->staged_digest = staged->sha256;
  return staged;
}

absl::StatusOr<StagedArtifact> Executor::StageStaticPod(const StageRequest& request) {
  if (seams_.runtime == nullptr) return NoRuntime(options_.node);
  KMSFLEET_RETURN_IF_ERROR(CheckLocalPathsAbsolute(request));
  std::lock_guard<std::mutex> one_at_a_time(stage_mu_);
  // The wait may have outlasted the agent's drain.
  KMSFLEET_RETURN_IF_ERROR(RefusalWhileStopping());
  // The image comes from what the release's checksums.txt vouches for,
  // never from the request alone; a tag-only, unvouched or mismatched
  // reference is refused before anything is written. checksums.txt is
  // read once: the kit binary is checked against the copy that vouched.
  KMSFLEET_ASSIGN_OR_RETURN(VerifiedChecksums sums,
                            ReadVerifiedChecksums(options_.artifacts, request));
  KMSFLEET_ASSIGN_OR_RETURN(ImageStageRequest image,
                            VouchedImage(options_.artifacts, request, sums));
  KMSFLEET_ASSIGN_OR_RETURN(DownloadedSource kept, KeepChecksums(options_.artifacts, sums.text));
  StageRequest from_kept = request;
  from_kept.checksums = kept.path;
  // A refused stage changes nothing (artifacts.h), the image record
  // included: a restage merely refused must not unstage a good release.
  absl::StatusOr<StagedArtifact> staged = kmsfleet::Stage(options_.artifacts, from_kept);
  // Its errors name the private copy; the operator knows the file given.
  if (!staged.ok()) return WithNameInMessage(staged.status(), kept.path, request.checksums);
  // The kit is the new one now: the old image record goes before the pull,
  // so that a failed pull leaves the version NOT_STAGED, never the new kit
  // beside the old image. (A crash in between changes the staged digest,
  // which a plan's swap checks: STAGED_ARTIFACT_CHANGED.)
  KMSFLEET_RETURN_IF_ERROR(ForgetStagedImage(options_.state_dir, request.version));
  KMSFLEET_RETURN_IF_ERROR(StageImage(options_.state_dir, *seams_.runtime, image).status());
  // Read under stage_mu_: what is on disk now is what this call staged.
  KMSFLEET_ASSIGN_OR_RETURN(staged->staged_digest, StagedDigest(request.version));
  return staged;
}

bool Executor::PreviousReleaseKept() {
  if (!options_.static_pod) {
    struct stat st;
    if (::stat(options_.install_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        ::access(options_.install_path.c_str(), X_OK) != 0) {
      return false;
    }
    return InstalledIsTheRunningRelease();
  }
  if (seams_.runtime == nullptr) return false;
  absl::StatusOr<std::string> image =
      ReadManifestImage(options_.static_pod->manifest_path, options_.static_pod->container);
  if (!image.ok()) return false;
  absl::StatusOr<std::optional<CriImage>> held = seams_.runtime->ImageStatus(*image);
  return held.ok() && held->has_value();
}

// Verified, not only present: the binary a swap would keep is the release
// the provider runs. One replaced on disk since the provider started
// (another version dropped in by hand, not yet restarted) would be the
// "previous release" a rollback reinstalls: not the version the plan
// recorded, and maybe one the fleet never ran.
bool Executor::InstalledIsTheRunningRelease() {
  // The two are independent: asked together, the answer costs the slower.
  auto running_version = std::async(std::launch::async,
                                    [this] { return seams_.probe.RunningVersion(); });
  absl::StatusOr<std::string> installed = seams_.cli.Version(options_.install_path);
  const std::string running = running_version.get();
  if (installed.ok() && !running.empty() && *installed == running) return true;
  Log(LogLevel::kWarn,
      "the installed release is not verified as the one the provider runs, so no rollback "
      "could rely on keeping it",
      {{"node", options_.node},
       {"binary", options_.install_path},
       {"installed", installed.ok() ? *installed : std::string(installed.status().message())},
       {"running", running.empty() ? "unknown" : running}});
  return false;
}

// The kubelet starts a static pod's image without a registry only while
// the runtime holds it, and image garbage collection removes a staged
// image no container uses: check before anything is stopped.
absl::Status Executor::CheckImageHeld(const std::string& image) {
  if (!options_.static_pod || image.empty()) return absl::OkStatus();
  if (seams_.runtime == nullptr) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kInvalidConfig,
                     "static-pod mode without a container runtime");
  }
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriImage> held, seams_.runtime->ImageStatus(image));
  if (held) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotStaged,
                   "the container runtime no longer holds " + image +
                       " (removed by image garbage collection?), so the kubelet could not "
                       "start it without a registry; stage the release again",
                   {{"image", image}});
}

// A failed swap writes the live manifest back and waits for its image's
// pod: only a digest tells that pod from the new one, and only an image
// the runtime holds starts without a registry. Either missing, the
// restore would end RollbackFailed, so the swap is refused before the
// stop. (Found in review: a manifest naming repo:tag passed every check.)
absl::Status Executor::CheckRunningImageRestorable() {
  if (!options_.static_pod) return absl::OkStatus();
  const std::string& manifest = options_.static_pod->manifest_path;
  KMSFLEET_ASSIGN_OR_RETURN(std::string image, ImageOfRelease(manifest));
  KMSFLEET_RETURN_IF_ERROR(
      ParseImageRef(image, manifest + " image (what a failed swap restores)").status());
  if (seams_.runtime == nullptr) return absl::OkStatus();  // CheckImageHeld says so
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriImage> held, seams_.runtime->ImageStatus(image));
  if (held) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kRollbackArtifactMissing,
                   "the container runtime no longer holds " + image + ", which " + manifest +
                       " runs now: a failed swap could not start it again without a "
                       "registry; pull it (crictl pull " + image + ") before the swap",
                   {{"image", image}, {"file", manifest}});
}

// With `imagePullPolicy: Always` the kubelet pulls even an image the
// runtime holds, so a failed swap's restore needs the registry. Asked of
// swaps only: a rollback is the way back, and its refusal could not be
// mended (editing the manifest makes the swap no longer the node's last
// change, NOT_ROLLBACKABLE).
absl::Status Executor::CheckPullPolicyForSwap() {
  if (!options_.static_pod) return absl::OkStatus();
  const std::string& manifest = options_.static_pod->manifest_path;
  KMSFLEET_ASSIGN_OR_RETURN(std::string text, ReadBoundedFile(manifest, kMaxManifestBytes));
  return CheckPullPolicyRestorable(text, manifest, options_.static_pod->container);
}

// The release of a static-pod swap: the live manifest with the staged
// image, rendered per operation, so the journal's target is exactly the
// bytes that will be installed.
absl::StatusOr<SwapJournal> Executor::PlanStaticPodSwap(const SwapParams& p,
                                                        const std::string& id) {
  KMSFLEET_ASSIGN_OR_RETURN(StagedArtifact kit, FindStaged(options_.artifacts, p.version));
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef image, FindStagedImage(options_.state_dir, p.version));
  const std::string staged_digest = StaticPodStagedDigest(kit.sha256, image.ToString());
  KMSFLEET_RETURN_IF_ERROR(
      CheckStagedDigest(p, staged_digest, kit.binary_path + ", image " + image.ToString()));
  KMSFLEET_RETURN_IF_ERROR(ShareWithRunAs(ArtifactDir(options_.state_dir, p.version)));
  SwapJournal j;
  j.target_version = p.version;
  j.staged_digest = staged_digest;
  j.target_binary = RenderedManifestPath(options_.state_dir, p.version, id);
  KMSFLEET_ASSIGN_OR_RETURN(
      j.target_sha256,
      RenderReleaseManifest(options_.static_pod->manifest_path, image.ToString(),
                            j.target_binary, options_.static_pod->container));
  return j;
}

// `staged_or_captured` is the binary a systemd swap would install (the
// staged one, or a rollback's capture). A static-pod swap runs the kit
// binary of `version`; a rollback whose kit is not staged (the version
// was installed before kmsfleet) runs the kit of the version running now,
// which checks the same config, OpenBao and Transit, and says so.
absl::StatusOr<Executor::ReleaseBinaries> Executor::BinariesFor(
    const std::string& version, const std::string& staged_or_captured,
    const std::string& image) {
  if (!options_.static_pod) {
    return ReleaseBinaries{staged_or_captured, version, options_.install_path,
                           options_.install_path, ""};
  }
  absl::StatusOr<StagedArtifact> kit = FindStaged(options_.artifacts, version);
  if (!kit.ok() && ReasonOf(kit.status()) == reason::kNotStaged) {
    if (std::optional<StagedArtifact> now = RunningKit(version)) {
      Log(LogLevel::kWarn,
          "the kit of " + version + " is not staged; doctor runs with the kit of " +
              now->version + ", the version running now",
          {{"node", options_.node}, {"reason", reason::kNotStaged}});
      kit = *now;
    }
  }
  KMSFLEET_RETURN_IF_ERROR(kit.status());
  KMSFLEET_RETURN_IF_ERROR(ShareWithRunAs(ArtifactDir(options_.state_dir, kit->version)));
  const bool from_image = !options_.preflight.doctor_command.empty();
  return ReleaseBinaries{kit->binary_path, kit->version, "", kit->binary_path,
                         from_image ? ImageAsTheRuntimeNamesIt(image) : ""};
}

// The staged kit of the version running now, when that is not `version`
// (a static-pod step's other release); nullopt when there is none.
std::optional<StagedArtifact> Executor::RunningKit(const std::string& version) {
  const std::string running = seams_.probe.Observe().provider_version();
  if (running.empty() || running == version) return std::nullopt;
  absl::StatusOr<StagedArtifact> now = FindStaged(options_.artifacts, running);
  if (!now.ok()) return std::nullopt;
  return *std::move(now);
}

// The files on this node that doctor and rotation-plan read: the
// binaries, the provider's config, the encryption config, and the key
// registry with its checkpoint. Files these point to (a CA bundle, a
// token) are not watched: the freshness bound covers them, as it covers
// OpenBao and Transit.
std::vector<std::string> Executor::CheckedFiles(const ReleaseBinaries& bin) const {
  std::vector<std::string> files;
  for (const std::string& f : {bin.doctor, bin.installed, bin.rotation_plan,
                               options_.preflight.provider_config,
                               options_.preflight.encryption_config, options_.registry_path}) {
    if (!f.empty()) files.push_back(f);
  }
  if (!options_.registry_path.empty()) files.push_back(options_.registry_path + ".checkpoint");
  return files;
}

// The identity of CheckedFiles as they are now, whatever their age.
std::string Executor::CheckedFilesKey(const ReleaseBinaries& bin) const {
  return IdentityOfFiles(CheckedFiles(bin), /*settled_ms=*/0, CoarseRealTimeMillis()).key;
}

// The identity of CheckedFiles, settled if they will be within
// kMaxSettleWaitMs. The plan's preflight follows the node's stage by a few
// milliseconds, so the release it checks has rarely settled: a pause here,
// beside the other nodes' preflights, instead of a doctor and a
// rotation-plan on the way to the first node's stop (CheckAndKeep).
FilesIdentity Executor::CheckedFilesOnceSettled(const ReleaseBinaries& bin) {
  const auto identity_now = [&] {
    return IdentityOfFiles(CheckedFiles(bin), CommandMemo::kSettledMs,
                           options_.files_now_unix_ms ? options_.files_now_unix_ms()
                                                      : CoarseRealTimeMillis());
  };
  FilesIdentity files = identity_now();
  // Asked again after each pause, since the coarse clock ticks a little
  // late; bounded both by the pauses asked for and by the time they took.
  const int64_t give_up_at = seams_.steady.NowSteadyMillis() + kMaxSettleWaitMs;
  int64_t paused = 0;
  while (!files.settled && files.settles_in_ms <= kMaxSettleWaitMs - paused &&
         files.settles_in_ms <= give_up_at - seams_.steady.NowSteadyMillis()) {
    seams_.steady.SleepFor(std::chrono::milliseconds(files.settles_in_ms));
    paused += files.settles_in_ms;
    files = identity_now();
  }
  return files;
}

// The plan's preflight runs doctor and rotation-plan on every node, and the
// first node's swap asks them again tens of milliseconds later, on its way
// to the provider's stop (later nodes get a preflight of their own just
// before their swap: PlanMachine::WarmUp). A passing pair is kept for that
// swap: reused while it is fresh (kChecksFreshForMs, the bound the swap
// already puts on its own checks) and none of CheckedFiles has changed,
// with the memo's rule for a change hidden in a timestamp tick
// (command_memo.h): kept only when every file had settled before the run.
// A failing pair is not kept: the swap asks again and says what it finds.
Executor::ReleaseChecks Executor::CheckAndKeep(const ReleaseBinaries& bin) {
  const FilesIdentity before = CheckedFilesOnceSettled(bin);
  ReleaseChecks checks = DoctorAndRotationPlan(bin);
  const bool passing = DoctorPassed(checks.doctor) && checks.rotation_plan.ok() &&
                       CheckRotationSettled(*checks.rotation_plan).ok();
  const bool unchanged =
      before.settled && CheckedFilesKey(bin) == before.key;
  std::lock_guard lock(kept_checks_mu_);
  kept_checks_.reset();
  if (passing && unchanged) kept_checks_ = KeptChecks{bin, before.key, checks};
  return checks;
}

// The kept pair for `bin`, once: when it is still fresh and nothing it read
// has changed; nullopt otherwise.
std::optional<Executor::KeptChecks> Executor::RecentChecks(const ReleaseBinaries& bin) {
  std::optional<KeptChecks> kept;
  {
    std::lock_guard lock(kept_checks_mu_);
    kept.swap(kept_checks_);
  }
  if (!kept || !(kept->bin == bin) ||
      !ChecksStillFresh(kept->checks.checked_at_ms, seams_.steady.NowSteadyMillis()) ||
      CheckedFilesKey(bin) != kept->files) {
    return std::nullopt;
  }
  const int64_t age_ms = seams_.steady.NowSteadyMillis() - kept->checks.checked_at_ms;
  Log(LogLevel::kInfo, "doctor and rotation-plan passed in a preflight just before; not run again",
      {{"node", options_.node}, {"age_ms", std::to_string(age_ms)}});
  return kept;
}

// The binary of the step's other release, asked for rotation-plan when the
// first one predates the live Transit check: under systemd the staged (or
// captured) release beside the installed one; as a static pod the kit of
// the version running now beside the target's kit. "" when there is none.
std::string Executor::OtherRotationPlanBinary(const ReleaseBinaries& bin) {
  if (!options_.static_pod) return bin.doctor != bin.rotation_plan ? bin.doctor : "";
  std::optional<StagedArtifact> now = RunningKit(bin.doctor_version);
  if (!now || now->binary_path == bin.rotation_plan) return "";
  // executor.run_as runs it: its directory must be traversable, as the
  // target kit's is (BinariesFor).
  if (!ShareWithRunAs(ArtifactDir(options_.state_dir, now->version)).ok()) return "";
  return now->binary_path;
}

// doctor and rotation-plan read the config, OpenBao and Transit and change
// nothing: run together, the checks cost the slower of the two rather
// than their sum. Both are always waited for. The pair is as old as the
// rotation-plan report, which is asked for again, alone, when a passing
// doctor ends long after it did (found in review: with OpenBao slow to
// answer doctor, a report as old as doctor's run let a rotation begun
// meanwhile pass). A rotation-plan slow itself is not asked again: the
// next report would be no fresher.
Executor::ReleaseChecks Executor::DoctorAndRotationPlan(const ReleaseBinaries& bin) {
  const int64_t asked_at = seams_.steady.NowSteadyMillis();
  auto rotation_plan = std::async(std::launch::async, [this, &bin] {
    absl::StatusOr<RotationReport> report = TrustedRotationPlan(bin);
    return std::make_pair(std::move(report), seams_.steady.NowSteadyMillis());
  });
  absl::StatusOr<PreflightResult> doctor =
      bin.doctor_image.empty()
          ? seams_.cli.Preflight(bin.doctor, bin.doctor_version, bin.installed)
          : seams_.cli.PreflightImage(bin.doctor_image);
  const int64_t doctor_ended_at = seams_.steady.NowSteadyMillis();
  auto [report, report_ended_at] = rotation_plan.get();
  ReleaseChecks checks{std::move(doctor), std::move(report), asked_at};
  if (DoctorPassed(checks.doctor) &&
      doctor_ended_at - report_ended_at > kRotationPlanAskAgainAfterMs) {
    checks.checked_at_ms = seams_.steady.NowSteadyMillis();
    checks.rotation_plan = TrustedRotationPlan(bin);
  }
  return checks;
}

// A rotation-plan report is trusted only when it shows that the live
// Transit check passed (reference §2.6). The released previews predate
// that check: they print no transitMetadataStatus and report the local
// registry only, which cannot show a key version Transit holds beyond it.
// With such a binary asked first, the step's other release, which only
// reads as well, is asked instead (OtherRotationPlanBinary): the newer one
// of an upgrade, or of a rollback the one running now.
absl::StatusOr<RotationReport> Executor::TrustedRotationPlan(const ReleaseBinaries& bin) {
  auto checked_transit = [](const absl::StatusOr<RotationReport>& r) {
    return !r.ok() || !r->transit_metadata_status.empty();
  };
  absl::StatusOr<RotationReport> report = seams_.cli.RotationPlan(bin.rotation_plan);
  std::string asked = bin.rotation_plan + " rotation-plan prints no";
  if (!checked_transit(report)) {
    if (const std::string other = OtherRotationPlanBinary(bin); !other.empty()) {
      report = seams_.cli.RotationPlan(other);
      asked = "neither " + bin.rotation_plan + " nor " + other + " rotation-plan prints a";
    }
  }
  if (checked_transit(report)) return report;
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kRotationPlanUntrusted,
                   asked + " transitMetadataStatus: a release older than the live Transit "
                           "check reports its local registry only, which cannot rule out a key "
                           "version pending in Transit; upgrade with a release that reports it, "
                           "or check Transit by hand and swap each node yourself",
                   {{"binary", bin.rotation_plan}});
}

// The image a static-pod release manifest names ("" in systemd mode).
absl::StatusOr<std::string> Executor::ImageOfRelease(const std::string& manifest) {
  if (!options_.static_pod) return std::string();
  return ReadManifestImage(manifest, options_.static_pod->container);
}

// The version of what is installed now, recorded as the journal's
// previous version (a rollback's target): the installed binary's
// `version`, or in static-pod mode the running container's build_info.
absl::StatusOr<std::string> Executor::RunningVersion(const SwapJournal& j) {
  if (!options_.static_pod) {
    std::optional<InstalledVersion> seen = std::exchange(installed_version_, std::nullopt);
    if (seen && seen->sha256 == j.previous_sha256) return seen->version;
    return seams_.cli.Version(j.previous_binary);
  }
  v1::NodeState now = seams_.probe.Observe();
  if (now.provider_version().empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kVersionCommandFailed,
                     "the running " + options_.unit +
                         " shows no openbao_kms_build_info version, so a rollback "
                         "could not tell which version it restores");
  }
  return now.provider_version();
}

std::optional<Executor::InstalledVersion> Executor::VersionOfInstalled() {
  absl::StatusOr<std::string> sha = seams_.installer.Observe();
  if (!sha.ok()) return std::nullopt;
  // A failure here is not reported: the capture runs `version` again on
  // its copy and reports that.
  absl::StatusOr<std::string> version = seams_.cli.Version(options_.install_path);
  if (!version.ok()) return std::nullopt;
  return InstalledVersion{*std::move(sha), *std::move(version)};
}

// A static-pod swap's release was rendered from the live manifest when the
// swap started; the capture (the manifest a failure restores) must be that
// same manifest, or an operator's edit in between would be lost by the
// install and come back only on a rollback.
absl::Status Executor::CheckReleaseFromCapture(const SwapJournal& j) {
  if (!options_.static_pod) return absl::OkStatus();
  const std::string& container = options_.static_pod->container;
  KMSFLEET_ASSIGN_OR_RETURN(std::string image, ImageOfRelease(j.target_binary));
  KMSFLEET_ASSIGN_OR_RETURN(std::string captured,
                            ReadBoundedFile(j.previous_binary, kMaxManifestBytes));
  KMSFLEET_ASSIGN_OR_RETURN(std::string expected,
                            ReplaceManifestImage(captured, image, j.previous_binary, container));
  if (Sha256Hex(expected) == j.target_sha256) return absl::OkStatus();
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kManifestChanged,
                   options_.static_pod->manifest_path +
                       " changed after the swap started; nothing was touched, start the "
                       "swap again to render the release from the manifest as it is now",
                   {{"file", options_.static_pod->manifest_path}});
}

// A rollback was admitted while what is installed was the release its swap
// installed (PlanRollback). Its checks take seconds; an edit made in them
// (a manifest line changed during an incident, a binary replaced by hand)
// would be captured, then installed over, kept only in the evidence
// directory (found in review). Refused before the stop, nothing touched.
absl::Status Executor::CheckRollbackCapture(const SwapJournal& j) {
  if (j.replaces_sha256.empty() || j.previous_sha256 == j.replaces_sha256) {
    return absl::OkStatus();
  }
  const std::string& installed =
      options_.static_pod ? options_.static_pod->manifest_path : options_.install_path;
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotRollbackable,
                   installed + " changed after the rollback of " + j.of_operation_id +
                       " was admitted (it is " + j.previous_sha256.substr(0, 12) +
                       ", not " + j.replaces_sha256.substr(0, 12) +
                       " as that operation installed): the rollback stopped before the "
                       "provider's stop and restored nothing over the change; keep the "
                       "change, or undo it and roll back again",
                   {{"file", installed},
                    {"operation_id", j.of_operation_id},
                    {"installed_sha256", j.previous_sha256},
                    {"expected_sha256", j.replaces_sha256}});
}

absl::StatusOr<PreflightOutcome> Executor::Preflight(const std::string& version) {
  KMSFLEET_RETURN_IF_ERROR(RefusalWhileStopping());
  KMSFLEET_ASSIGN_OR_RETURN(StagedArtifact staged,
                            FindStaged(options_.artifacts, version));
  KMSFLEET_RETURN_IF_ERROR(ShareWithRunAs(ArtifactDir(options_.state_dir, version)));
  KMSFLEET_RETURN_IF_ERROR(seams_.installer.CheckCanInstall());
  std::string image;
  if (options_.static_pod) {
    KMSFLEET_ASSIGN_OR_RETURN(ImageRef ref, FindStagedImage(options_.state_dir, version));
    image = ref.ToString();
    KMSFLEET_RETURN_IF_ERROR(CheckImageHeld(image));
    // As the swap's own preflight and its start: a plan learns it before
    // any node swaps. (Found in review: an image line no swap can edit
    // passed the plan's preflight, and stopped the plan half-way.)
    KMSFLEET_RETURN_IF_ERROR(CheckRunningImageRestorable());
    KMSFLEET_RETURN_IF_ERROR(CheckPullPolicyForSwap());
    KMSFLEET_RETURN_IF_ERROR(CheckReleaseManifestRenders(options_.static_pod->manifest_path,
                                                         image, options_.static_pod->container));
  }
  KMSFLEET_ASSIGN_OR_RETURN(ReleaseBinaries bin,
                            BinariesFor(version, staged.binary_path, image));
  // The installed binary's `version`, beside the checks: a swap's capture
  // needs it on the way to the provider's stop, and finds it then in the
  // provider CLI's memo while the binary is unchanged (command_memo.h).
  std::future<absl::StatusOr<std::string>> installed;
  if (!options_.static_pod) {
    installed = std::async(std::launch::async,
                           [this] { return seams_.cli.Version(options_.install_path); });
  }
  ReleaseChecks checks = CheckAndKeep(bin);
  PreflightOutcome out;
  if (installed.valid()) {
    absl::StatusOr<std::string> v = installed.get();
    if (v.ok()) out.installed_version = *std::move(v);
  }
  KMSFLEET_ASSIGN_OR_RETURN(out.doctor, std::move(checks.doctor));
  RecordRotationPlan(checks.rotation_plan, out);
  return out;
}

absl::StatusOr<PreflightOutcome> Executor::PreflightInstalled() {
  KMSFLEET_RETURN_IF_ERROR(RefusalWhileStopping());
  PreflightOutcome out;
  absl::StatusOr<std::string> binary = InstalledRotationPlanBinary();
  if (!binary.ok()) {
    out.rotation_plan = binary.status();
    return out;
  }
  absl::StatusOr<RotationReport> report = seams_.cli.RotationPlan(*binary);
  if (report.ok() && report->transit_metadata_status.empty()) {
    out.rotation_plan = MakeError(
        absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated,
        *binary + " rotation-plan predates the live Transit check; the real run asks the "
                  "new release in Preflight",
        {{"binary", *binary}});
    return out;
  }
  RecordRotationPlan(report, out);
  return out;
}

// The binary whose rotation-plan stands for the release installed now.
absl::StatusOr<std::string> Executor::InstalledRotationPlanBinary() {
  if (!options_.static_pod) return options_.install_path;
  const std::string running = seams_.probe.Observe().provider_version();
  absl::StatusOr<StagedArtifact> kit = absl::NotFoundError("no running version");
  if (!running.empty()) kit = FindStaged(options_.artifacts, running);
  if (!kit.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated,
                     "no kit of the running version (" +
                         (running.empty() ? std::string("unknown") : running) +
                         ") is staged to run rotation-plan with; the real run uses the new "
                         "release's kit in Preflight",
                     {{"node", options_.node}});
  }
  // As a real preflight: executor.run_as must reach the kit.
  if (absl::Status s = ShareWithRunAs(ArtifactDir(options_.state_dir, kit->version)); !s.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotEvaluated,
                     "the kit of " + kit->version + " cannot be run as executor.run_as: " +
                         std::string(s.message()),
                     {{"node", options_.node}});
  }
  return kit->binary_path;
}

}  // namespace kmsfleet
