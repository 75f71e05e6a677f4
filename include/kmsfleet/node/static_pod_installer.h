// The static-pod Installer (architecture.md §4, issue 10): the provider's
// manifest in the kubelet's manifest directory, replaced so that the
// kubelet only ever sees the old manifest or the new one, whole.
//
// What a "release" is in this mode: a rendered manifest, a regular file in
// the state directory (RenderReleaseManifest writes one from the live
// manifest and a new image). Observe() and Digest() return SHA-256 of
// manifest files, so the swap journal's target_sha256/previous_sha256 keep
// their meaning: "these exact bytes are installed". Capture() copies the
// live manifest into the evidence directory as `previous-manifest.yaml`
// (the backup a rollback reinstalls).
//
// Install writes the new manifest to a hidden temp file beside the live
// one (`.kmsfleet-manifest.tmp.XXXXXX`): the kubelet reads only names that
// do not start with '.', so it never sees a manifest half written. The
// temp file is fsynced and renamed into place, then the directory is
// fsynced. Being in the same directory, the rename is always within one
// filesystem and one mount (a temp file in the state directory was not,
// under the unit's ProtectSystem=, where each writable path is a mount).
// Thread-compatible: the executor runs one operation at a time.
#ifndef KMSFLEET_NODE_STATIC_POD_INSTALLER_H_
#define KMSFLEET_NODE_STATIC_POD_INSTALLER_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "kmsfleet/core/manifest_edit.h"
#include "kmsfleet/node/installer.h"

namespace kmsfleet {

inline constexpr char kDefaultStaticPodManifest[] =
    "/etc/kubernetes/manifests/bao-kms-provider.yaml";

struct StaticPodInstallerOptions {
  std::string manifest_path = kDefaultStaticPodManifest;
  std::string container = kDefaultProviderContainer;
  // Test seam, called with "staged" (the temp file is written and fsynced,
  // not renamed) and "renamed" (in place, the directory not yet fsynced).
  std::function<void(std::string_view step)> step_hook = nullptr;
};

// Install(release, sha256, check_live), beyond the Installer contract:
//   - nothing happens when the live manifest's SHA-256 is `sha256` already;
//   - a live manifest is read at most kMaxManifestBytes far: a larger one
//     is refused (INPUT_TOO_LARGE naming it), and so is one that is no
//     regular file (a symlink: NOT_REGULAR_FILE); one that is absent or
//     cannot be read otherwise is installed over;
//   - the release must be a regular file (no symlink) of at most
//     kMaxManifestBytes whose SHA-256 is `sha256` (CHECKSUM_MISMATCH) and
//     which is a v1 Pod with the provider's container and an image (the
//     manifest_edit.h reasons): the kubelet never gets a file it would
//     drop;
//   - the new manifest keeps the live one's permission bits (0600 when
//     there is none);
//   - temp files left by an interrupted Install are removed on the next;
//   - `check_live` runs after the temp file's fsync, right before the
//     rename: its refusal removes the temp file.
// Errors: those, ARTIFACT_IO naming the path. On any error the live
// manifest is as it was. CheckCanInstall refuses a manifest directory the
// agent cannot write (ARTIFACT_IO), before the provider stops.
// Observe and Capture refuse a live manifest that is a symlink
// (NOT_REGULAR_FILE): a rename would replace the link, not its target.
std::unique_ptr<Installer> NewStaticPodInstaller(StaticPodInstallerOptions options);

// The image of `container` in the manifest file `manifest`: read (a
// regular file of at most kMaxManifestBytes) and ObserveManifestImage.
absl::StatusOr<std::string> ReadManifestImage(
    const std::string& manifest, std::string_view container = kDefaultProviderContainer);

// Renders a release: the manifest at `live_manifest` with the provider
// container's image replaced by `new_image` (ReplaceManifestImage, every
// other byte kept), written atomically to `dest` (0600; its directory must
// exist). Returns the SHA-256 of what was written. Errors: ARTIFACT_IO,
// NOT_REGULAR_FILE, INPUT_TOO_LARGE and the manifest_edit.h reasons, naming
// the live manifest, IMAGE_PULL_POLICY_ALWAYS among them: the rendered
// manifest is held to CheckPullPolicyRestorable as the live one is (a
// `latest` tag without imagePullPolicy); `dest` is untouched on error.
absl::StatusOr<std::string> RenderReleaseManifest(
    const std::string& live_manifest, std::string_view new_image, const std::string& dest,
    std::string_view container = kDefaultProviderContainer);

// RenderReleaseManifest's checks without the write: whether a swap to
// `new_image` could edit the manifest at `live_manifest` now. A plan's
// preflight asks it of every node, so that a line no swap can edit stops
// the plan before any node swaps, not half-way through the fleet.
absl::Status CheckReleaseManifestRenders(const std::string& live_manifest,
                                         std::string_view new_image,
                                         std::string_view container = kDefaultProviderContainer);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_STATIC_POD_INSTALLER_H_
