// The binary installer: the provider's executable at `provider.binary`,
// captured and replaced by copy + fsync + rename (fs_util.h).
#include "kmsfleet/node/installer.h"

#include <cstdint>

#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

class BinaryInstaller final : public Installer {
 public:
  explicit BinaryInstaller(std::string install_path)
      : install_path_(std::move(install_path)) {}

  // kmsfleet::Installer
  absl::StatusOr<std::string> Observe() override { return Sha256File(install_path_); }

  absl::StatusOr<std::string> Digest(const std::string& release) override {
    return Sha256File(release);
  }

  absl::StatusOr<CapturedRelease> Capture(const std::string& evidence_dir) override {
    CapturedRelease out;
    out.path = evidence_dir + "/previous-binary";
    // 0755: `executor.run_as` runs `version` on the capture, and a
    // rollback's doctor runs it too.
    KMSFLEET_ASSIGN_OR_RETURN(
        out.sha256, CopyFileAtomic(install_path_, out.path, 0755, "", SIZE_MAX));
    return out;
  }

  using Installer::Install;
  absl::Status Install(const std::string& release, const std::string& sha256,
                       const LiveCheck& check_live) override {
    // Observe before acting: an interrupted operation may have put it in
    // place already.
    absl::StatusOr<std::string> installed = Sha256File(install_path_);
    // Its rename may not have reached the disk (killed before the
    // directory's fsync): make it durable before it counts as installed.
    if (installed.ok() && *installed == sha256) return FsyncDir(DirOf(install_path_));
    // The copy and its rename are one call here.
    if (check_live) KMSFLEET_RETURN_IF_ERROR(check_live());
    return CopyFileAtomic(release, install_path_, 0755, sha256, SIZE_MAX).status();
  }

 private:
  std::string install_path_;
};

}  // namespace

std::unique_ptr<Installer> NewBinaryInstaller(std::string install_path) {
  return std::make_unique<BinaryInstaller>(std::move(install_path));
}

}  // namespace kmsfleet
