// Staging a static-pod provider's image (static_pod_release.h).
#include "kmsfleet/node/static_pod_release.h"

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/artifacts.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

absl::Status Missing(const std::string& version, const std::string& what) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kImageRefMissing,
                   "version " + version + " is staged for a static-pod provider, which needs " +
                       what,
                   {{"version", version}});
}

// The one reference in a file, surrounding whitespace ignored.
absl::StatusOr<ImageRef> ReadImageRefFile(const std::string& path) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string text, ReadBoundedFile(path, kMaxImageRefFileBytes));
  const size_t first = text.find_first_not_of(" \t\r\n");
  const size_t last = text.find_last_not_of(" \t\r\n");
  std::string_view ref;
  if (first != std::string::npos) ref = std::string_view(text).substr(first, last - first + 1);
  return ParseImageRef(ref, path);
}

}  // namespace

absl::StatusOr<ImageRef> CheckImageRequest(const ImageStageRequest& request) {
  if (request.image.empty()) {
    return Missing(request.version, "the image to run (--image repo@sha256:<digest>)");
  }
  if (request.image_ref_file.empty()) {
    return Missing(request.version, "the kit's image-ref.txt (--image-ref)");
  }
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef wanted, ParseImageRef(request.image, "--image"));
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef kit, ReadImageRefFile(request.image_ref_file));
  if (kit.Pinned() != wanted.Pinned()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kImageRefMismatch,
                     "the kit's " + request.image_ref_file + " names " + kit.ToString() +
                         " but the image asked for is " + wanted.ToString() +
                         "; the kit's binary would not be the release the pod runs",
                     {{"file", request.image_ref_file},
                      {"expected", wanted.Pinned()},
                      {"actual", kit.Pinned()}});
  }
  return wanted;
}

absl::StatusOr<ImageRef> StageImage(const std::string& state_dir, ContainerRuntime& runtime,
                                    const ImageStageRequest& request) {
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef wanted, CheckImageRequest(request));
  KMSFLEET_RETURN_IF_ERROR(runtime.PullImage(wanted.ToString()).status());
  const std::string dir = ArtifactDir(state_dir, request.version);
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(dir, 0700));
  KMSFLEET_RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/" + kStagedImageRefName, wanted.ToString() + "\n", 0600));
  return wanted;
}

absl::StatusOr<ImageRef> FindStagedImage(const std::string& state_dir,
                                         const std::string& version) {
  const std::string path = ArtifactDir(state_dir, version) + "/" + kStagedImageRefName;
  absl::StatusOr<ImageRef> ref = ReadImageRefFile(path);
  if (!ref.ok() && absl::IsNotFound(ref.status())) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotStaged,
                     "no image is staged for version " + version + " (" + path +
                         " is absent); stage it with --image and --image-ref",
                     {{"version", version}});
  }
  return ref;
}

}  // namespace kmsfleet
