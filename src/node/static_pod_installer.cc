// The static-pod installer (static_pod_installer.h): the provider's
// manifest replaced by a hidden temp file beside it, fsync, rename over
// it, fsync of the directory.
#include "kmsfleet/node/static_pod_installer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

// The kubelet reads only names not starting with '.' in its manifest
// directory (pkg/kubelet/config/file.go globs "[^.]*" and drops events for
// hidden names), so the temp file can sit beside the manifest, where a
// rename is always within one mount.
constexpr char kTempPrefix[] = ".kmsfleet-manifest.tmp.";

// Reads the release and checks it is what the journal says it is.
absl::StatusOr<std::string> ReadRelease(const std::string& release, const std::string& sha256) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string content, ReadBoundedFile(release, kMaxManifestBytes));
  const std::string actual = Sha256Hex(content);
  if (actual != sha256) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                     "SHA-256 of " + release + " is " + actual + ", expected " + sha256,
                     {{"file", release}, {"expected", sha256}, {"actual", actual}});
  }
  return content;
}

class StaticPodInstaller final : public Installer {
 public:
  explicit StaticPodInstaller(StaticPodInstallerOptions options)
      : o_(std::move(options)),
        manifest_dir_(DirOf(o_.manifest_path)) {}

  // kmsfleet::Installer
  // Bounded like every read of a manifest: the path is outside input.
  absl::StatusOr<std::string> Observe() override {
    return Sha256File(o_.manifest_path, kMaxManifestBytes);
  }

  absl::StatusOr<std::string> Digest(const std::string& release) override {
    return Sha256File(release, kMaxManifestBytes);
  }

  absl::StatusOr<CapturedRelease> Capture(const std::string& evidence_dir) override {
    CapturedRelease out;
    out.path = evidence_dir + "/previous-manifest.yaml";
    KMSFLEET_ASSIGN_OR_RETURN(
        out.sha256, CopyFileAtomic(o_.manifest_path, out.path, 0600, "", kMaxManifestBytes));
    return out;
  }

  using Installer::Install;
  absl::Status Install(const std::string& release, const std::string& sha256,
                       const LiveCheck& check_live) override {
    // Observe before acting: an interrupted operation may have put it in
    // place already. Bounded, as every read of a manifest: a live file
    // far larger than any release (or one still growing), or one that is
    // no regular file, is not ours and is refused, naming it, rather than
    // hashed whole or replaced. Any other failure to read it (absent, a
    // passing EIO) is written over, as before: a restore must not end
    // RollbackFailed for want of a hash it does not need.
    absl::StatusOr<std::string> installed = Sha256File(o_.manifest_path, kMaxManifestBytes);
    const std::string why = installed.ok() ? "" : ReasonOf(installed.status());
    if (why == reason::kInputTooLarge || why == reason::kNotRegularFile) {
      return installed.status();
    }
    // Its rename may not have reached the disk (killed before the
    // directory's fsync): make it durable before it counts as installed.
    if (installed.ok() && *installed == sha256) {
      // A crash before its rename may have left a temp file (found in
      // review: a recovery that found the release in place kept it).
      RemoveStaleTemps();
      return FsyncDir(DirOf(o_.manifest_path));
    }
    KMSFLEET_ASSIGN_OR_RETURN(std::string content, ReadRelease(release, sha256));
    KMSFLEET_RETURN_IF_ERROR(ObserveManifestImage(content, release, o_.container).status());
    KMSFLEET_RETURN_IF_ERROR(CheckCanInstall());
    RemoveStaleTemps();
    KMSFLEET_ASSIGN_OR_RETURN(
        std::string tmp, WriteTempFile(manifest_dir_ + "/" + kTempPrefix, content, LiveMode()));
    Hook("staged");
    // The write and its fsync take a while (a slow disk, a busy node): an
    // edit made meanwhile is judged now, not written over.
    absl::Status live = check_live ? check_live() : absl::OkStatus();
    if (!live.ok() || rename(tmp.c_str(), o_.manifest_path.c_str()) != 0) {
      const int err = errno;
      unlink(tmp.c_str());
      return live.ok() ? IoError("rename into", o_.manifest_path, err) : live;
    }
    Hook("renamed");
    return FsyncDir(manifest_dir_);
  }

  // A manifest directory the agent cannot write (read-only under the
  // unit's ProtectSystem= without its ReadWritePaths=, say) is found
  // before the provider stops.
  absl::Status CheckCanInstall() override {
    if (access(manifest_dir_.c_str(), W_OK | X_OK) != 0) {
      return IoError("write into", manifest_dir_, errno);
    }
    return absl::OkStatus();
  }

 private:
  void Hook(std::string_view step) const {
    if (o_.step_hook) o_.step_hook(step);
  }

  // The live manifest's permission bits, so the kubelet (and an operator's
  // audit) sees no change there; 0600 as kubeadm writes them otherwise.
  unsigned LiveMode() const {
    struct stat st {};
    if (lstat(o_.manifest_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      return st.st_mode & 07777;
    }
    return 0600;
  }

  // Temp files of an Install that was killed before its rename. Best
  // effort: one left behind wastes a few KiB and is retried next time.
  void RemoveStaleTemps() const {
    DIR* d = opendir(manifest_dir_.c_str());
    if (d == nullptr) return;
    while (dirent* e = readdir(d)) {
      if (std::string_view(e->d_name).starts_with(kTempPrefix)) {
        unlinkat(dirfd(d), e->d_name, 0);
      }
    }
    closedir(d);
  }

  StaticPodInstallerOptions o_;
  std::string manifest_dir_;
};

}  // namespace

std::unique_ptr<Installer> NewStaticPodInstaller(StaticPodInstallerOptions options) {
  return std::make_unique<StaticPodInstaller>(std::move(options));
}

absl::StatusOr<std::string> ReadManifestImage(const std::string& manifest,
                                              std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string text, ReadBoundedFile(manifest, kMaxManifestBytes));
  return ObserveManifestImage(text, manifest, container);
}

namespace {

// The live manifest with `new_image`, refused when the image's tag makes
// the kubelet pull on every start (found in review: `repo:latest@sha256:...`
// rendered a manifest the kubelet takes as imagePullPolicy Always, and the
// next swap was refused for it only once this one had run). A live
// manifest refused for its own policy is the swap's preflight's to refuse,
// journaled (Executor::CheckPullPolicyForSwap): only what the render
// brings is refused here.
absl::StatusOr<std::string> EditedManifest(const std::string& live_manifest,
                                           std::string_view new_image,
                                           std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string live, ReadBoundedFile(live_manifest, kMaxManifestBytes));
  KMSFLEET_ASSIGN_OR_RETURN(std::string edited,
                            ReplaceManifestImage(live, new_image, live_manifest, container));
  if (!CheckPullPolicyRestorable(live, live_manifest, container).ok()) return edited;
  absl::Status policy = CheckPullPolicyRestorable(edited, live_manifest, container);
  if (!policy.ok()) {
    return WithMessagePrefix(policy, "the manifest rendered for the release's image " +
                                          std::string(new_image) + " would be refused: ");
  }
  return edited;
}

}  // namespace

absl::StatusOr<std::string> RenderReleaseManifest(const std::string& live_manifest,
                                                  std::string_view new_image,
                                                  const std::string& dest,
                                                  std::string_view container) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string edited,
                            EditedManifest(live_manifest, new_image, container));
  KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(dest, edited, 0600));
  return Sha256Hex(edited);
}

absl::Status CheckReleaseManifestRenders(const std::string& live_manifest,
                                         std::string_view new_image,
                                         std::string_view container) {
  return EditedManifest(live_manifest, new_image, container).status();
}

}  // namespace kmsfleet
