// A static-pod provider's release on this node (issue 10; reference §8.7,
// §8.8): beside the staged kit binary (artifacts.h), the provider image,
// pinned by digest, pulled into the container runtime and recorded as
// <state_dir>/artifacts/<version>/image-ref.txt.
//
// What authenticates the image: the operator names it (`--image
// repo@sha256:...`, from the signed release or its notes), the kit's own
// image-ref.txt must name the same repository (normalised:
// ImageRef::NormalizedPinned) and digest, and the runtime must hold
// exactly that digest after the pull. The kit binary, verified
// against checksums.txt, is what `doctor` runs; the two are the same
// release only because the kit says so, which is why the match is checked.
// Thread-safe: free functions; the executor serialises operations.
#ifndef KMSFLEET_NODE_STATIC_POD_RELEASE_H_
#define KMSFLEET_NODE_STATIC_POD_RELEASE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <string>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/node/cri_client.h"

namespace kmsfleet {

inline constexpr char kStagedImageRefName[] = "image-ref.txt";
// image-ref.txt is one reference and a newline.
inline constexpr size_t kMaxImageRefFileBytes = 4096;

struct ImageStageRequest {
  std::string version;         // already staged as a kit binary
  std::string image;           // the operator's reference, pinned by digest
  std::string image_ref_file;  // the source of image_ref_text, for messages
  // The kit's image-ref.txt as the release vouches for it (ReadVouchedImageRef).
  std::string image_ref_text;
};

// What the release says the image is. `source` is the static-pod kit
// (bao-kms-provider_<v>_static-pod_linux_<arch>.tar.gz, read for its
// image-ref.txt) or an image-ref.txt, and must be listed under its file
// name in `checksums`, which this agent verified with its own keys: its
// digest is checked in the pass that reads it, so nothing the coordinator
// or a caller says names the image the pod runs. Unlisted, the file is
// taken as is only when the stage is unsigned (`is_signed` false, which
// executor.allow_unsigned admits): the operator's files are the trust then.
// Errors: IMAGE_REF_MISSING when `source` is empty; IMAGE_REF_UNVERIFIED
// (FailedPrecondition) naming the file and checksums.txt when it does not
// list the file; checksums.txt's own errors as FindChecksum gives them
// (MALFORMED_CHECKSUMS, CHECKSUM_AMBIGUOUS, ...); the kit's errors
// (kit_archive.h); CHECKSUM_MISMATCH; ARTIFACT_IO.
absl::StatusOr<std::string> ReadVouchedImageRef(const std::string& version,
                                                const std::string& source,
                                                const std::string& checksums,
                                                const std::string& checksums_path,
                                                bool is_signed, uint64_t max_kit_bytes);

// The checks of StageImage that need no runtime: both references given,
// pinned, and naming one repository and digest. Returns the image.
absl::StatusOr<ImageRef> CheckImageRequest(const ImageStageRequest& request);

// Checks `request.image` (pinned) against the kit's image-ref.txt (one
// reference, surrounding whitespace ignored): the same repository and
// digest; pulls the image through `runtime` (which checks the digest it
// holds), then records it for `version`.
// Errors: IMAGE_REF_MISSING (InvalidArgument) when the image or the file is
// not given; IMAGE_REF_NOT_PINNED / IMAGE_REF_MALFORMED naming the flag or
// the file; IMAGE_REF_MISMATCH (FailedPrecondition) naming both references;
// the pull's errors (IMAGE_PULL_FAILED, IMAGE_DIGEST_MISMATCH, CRI_*);
// ARTIFACT_IO. Nothing is recorded unless every check passed.
absl::StatusOr<ImageRef> StageImage(const std::string& state_dir, ContainerRuntime& runtime,
                                    const ImageStageRequest& request);

// Removes the image recorded for `version` (none is fine), durably. A
// restage calls it once its kit is in place and before it pulls: until
// its own image is pulled and recorded, the version then reads NOT_STAGED
// rather than pairing the new kit with the image staged before. Errors:
// INVALID_SEMVER, checked before any path is built from `version`;
// ARTIFACT_IO.
absl::Status ForgetStagedImage(const std::string& state_dir, const std::string& version);

// One digest for what a static-pod swap installs: the kit binary (its
// doctor) and the image the pod runs. Either changing changes it.
std::string StaticPodStagedDigest(std::string_view kit_sha256, std::string_view image);

// Where a static-pod swap's release, the live manifest with the staged
// image, is rendered for operation `operation_id`: in the release's
// directory, one file per operation.
std::string RenderedManifestPath(const std::string& state_dir, const std::string& version,
                                 const std::string& operation_id);

// The image recorded for `version`. Errors: NOT_STAGED when none is;
// IMAGE_REF_* when the record does not parse.
absl::StatusOr<ImageRef> FindStagedImage(const std::string& state_dir,
                                         const std::string& version);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_STATIC_POD_RELEASE_H_
