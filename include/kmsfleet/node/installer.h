// What the executor installs and restores: today a binary copied over
// `provider.binary`; next a static pod's manifest (architecture.md §4). The
// executor asks, the installer does the file work.
// Thread-safe: implementations serialise nothing; the executor runs one
// operation at a time.
#ifndef KMSFLEET_NODE_INSTALLER_H_
#define KMSFLEET_NODE_INSTALLER_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kmsfleet {

// The release that was installed before an operation, as captured.
struct CapturedRelease {
  std::string path;    // the copy, inside the evidence directory
  std::string sha256;  // of the copy, equal to what was installed
};

class Installer {
 public:
  virtual ~Installer() = default;
  // The SHA-256 of what is installed now. Errors name the path
  // (NotFound when nothing is installed).
  virtual absl::StatusOr<std::string> Observe() = 0;
  // The SHA-256 of a release file (a staged binary or a capture).
  virtual absl::StatusOr<std::string> Digest(const std::string& release) = 0;
  // Copies what is installed into `evidence_dir` (which exists).
  virtual absl::StatusOr<CapturedRelease> Capture(const std::string& evidence_dir) = 0;
  // Installs `release` atomically if its digest is `sha256`; does nothing
  // when that digest is installed already (an interrupted operation).
  // Errors: CHECKSUM_MISMATCH (nothing changed), ARTIFACT_IO.
  absl::Status Install(const std::string& release, const std::string& sha256) {
    return Install(release, sha256, nullptr);
  }
  // Judges what is installed, as late as the installer can: a refusal
  // leaves it in place and is Install's answer.
  using LiveCheck = std::function<absl::Status()>;
  // As above; `check_live`, when given, is called once nothing is left to
  // do but replace the installed release (a static pod's temp manifest is
  // written and fsynced, the rename is next), so a change made by hand
  // while the release was prepared is not written over. The binary
  // installer, whose copy and rename are one call, asks it before the
  // copy (no caller passes one on a systemd node).
  virtual absl::Status Install(const std::string& release, const std::string& sha256,
                               const LiveCheck& check_live) = 0;
  // What Install needs besides the release, checked before anything is
  // stopped (a static pod's staging directory on the manifest's
  // filesystem). Errors as Install's; by default there is nothing to check.
  virtual absl::Status CheckCanInstall() { return absl::OkStatus(); }
};

// The binary at `install_path`, replaced by copy + fsync + rename.
std::unique_ptr<Installer> NewBinaryInstaller(std::string install_path);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_INSTALLER_H_
