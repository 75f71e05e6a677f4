// Staging a static-pod provider's image (static_pod_release.h).
#include "kmsfleet/node/static_pod_release.h"

#include <unistd.h>

#include <cerrno>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/artifacts.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/kit_archive.h"

namespace kmsfleet {
namespace {

absl::Status Missing(const std::string& version, const std::string& what) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kImageRefMissing,
                   "version " + version + " is staged for a static-pod provider, which needs " +
                       what,
                   {{"version", version}});
}

// The one reference in `text`, surrounding whitespace ignored.
absl::StatusOr<ImageRef> ParseImageRefText(const std::string& text, const std::string& what) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  const size_t last = text.find_last_not_of(" \t\r\n");
  std::string_view ref;
  if (first != std::string::npos) ref = std::string_view(text).substr(first, last - first + 1);
  return ParseImageRef(ref, what);
}

absl::StatusOr<ImageRef> ReadImageRefFile(const std::string& path) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string text, ReadBoundedFile(path, kMaxImageRefFileBytes));
  return ParseImageRefText(text, path);
}

bool IsKit(std::string_view name) {
  return name.ends_with(".tar.gz") || name.ends_with(".tgz");
}

}  // namespace

absl::StatusOr<std::string> ReadVouchedImageRef(const std::string& version,
                                                const std::string& source,
                                                const std::string& checksums,
                                                const std::string& checksums_path,
                                                bool is_signed, uint64_t max_kit_bytes) {
  if (source.empty()) return Missing(version, "the static-pod kit (--image-ref)");
  const std::string name = source.substr(source.rfind('/') + 1);
  absl::StatusOr<std::string> listed = FindChecksum(checksums, name, checksums_path);
  // Found in review: any error here read as "not listed", hiding a
  // malformed line or a name listed twice behind IMAGE_REF_UNVERIFIED (and
  // taking an unsigned image-ref.txt unhashed beside them).
  if (!listed.ok() && ReasonOf(listed.status()) != reason::kChecksumNotListed) {
    return listed.status();
  }
  if (!listed.ok()) {
    if (!is_signed && !IsKit(name)) return ReadBoundedFile(source, kMaxImageRefFileBytes);
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kImageRefUnverified,
                     checksums_path + " does not list " + name +
                         ", so nothing signed names the image the pod would run; pass the "
                         "release's static-pod kit (bao-kms-provider_" + version +
                         "_static-pod_linux_<arch>.tar.gz) as --image-ref",
                     {{"file", source}, {"checksums", checksums_path}});
  }
  if (IsKit(name)) {
    return ReadFileFromKit({.path = source,
                            .expected_sha256 = *listed,
                            .name = kStagedImageRefName,
                            .max_file_bytes = kMaxImageRefFileBytes,
                            .max_kit_bytes = max_kit_bytes});
  }
  KMSFLEET_ASSIGN_OR_RETURN(std::string text, ReadBoundedFile(source, kMaxImageRefFileBytes));
  if (const std::string actual = Sha256Hex(text); actual != *listed) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                     "SHA-256 of " + source + " is " + actual + ", expected " + *listed,
                     {{"file", source}, {"expected", *listed}, {"actual", actual}});
  }
  return text;
}

absl::StatusOr<ImageRef> CheckImageRequest(const ImageStageRequest& request) {
  if (request.image.empty()) {
    return Missing(request.version, "the image to run (--image repo@sha256:<digest>)");
  }
  if (request.image_ref_file.empty()) {
    return Missing(request.version, "the static-pod kit (--image-ref)");
  }
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef wanted, ParseImageRef(request.image, "--image"));
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef kit, ParseImageRefText(request.image_ref_text,
                                                            request.image_ref_file));
  // Normalised: a kit naming docker.io/library/x@D and an --image of x@D
  // name the same image. The stage keeps the operator's text.
  if (kit.NormalizedPinned() != wanted.NormalizedPinned()) {
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

absl::Status ForgetStagedImage(const std::string& state_dir, const std::string& version) {
  absl::StatusOr<SemVer> parsed = SemVer::Parse(version);
  if (!parsed.ok() || parsed->ToString() != version || !IsSafeFileName(version)) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidSemver,
                     "version \"" + version + "\" is not canonical SemVer",
                     {{"version", version}});
  }
  const std::string dir = ArtifactDir(state_dir, version);
  const std::string path = dir + "/" + kStagedImageRefName;
  if (unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return IoError("remove", path, errno);
  }
  // Durable before the kit changes: a power cut must not bring it back.
  return FsyncDir(dir);
}

std::string StaticPodStagedDigest(std::string_view kit_sha256, std::string_view image) {
  return Sha256Hex(std::string(kit_sha256) + "\n" + std::string(image));
}

std::string RenderedManifestPath(const std::string& state_dir, const std::string& version,
                                 const std::string& operation_id) {
  return ArtifactDir(state_dir, version) + "/manifest-" + operation_id + ".yaml";
}

}  // namespace kmsfleet
