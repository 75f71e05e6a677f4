// The provider's static-pod manifest (reference §8.7) edited the way a
// careful operator edits it by hand: only the provider container's `image`
// scalar changes, and every other byte (comments, key order, quoting,
// indentation, line endings) stays where it was. The static-pod installer
// (architecture.md §4, issue 10) renders its releases with it.
//
// The scalar is found through yaml-cpp's node marks and replaced in the
// original text, in the style it was written in (plain, 'single' or
// "double" quoted). What cannot be replaced that way (a block scalar, a
// scalar over several lines, an escape, a tag, an anchor or alias) is
// refused rather than rewritten. The result is parsed again and must equal
// the input everywhere but that image.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_MANIFEST_EDIT_H_
#define KMSFLEET_CORE_MANIFEST_EDIT_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// Real manifests are a few KiB; this bounds a read of one.
inline constexpr size_t kMaxManifestBytes = 256 * 1024;
// The container name upstream's manifest and `init` use (reference §8.7).
inline constexpr char kDefaultProviderContainer[] = "bao-kms-provider";

// Returns the `image` of the container named `container` in
// `spec.containers` of the v1 Pod manifest `text`. `file` names the
// manifest in messages. Errors (FailedPrecondition unless noted; each
// message names the file, the key and the value found):
//   INPUT_TOO_LARGE (InvalidArgument): more than kMaxManifestBytes;
//   MANIFEST_MALFORMED: not YAML, NUL bytes or a UTF-16 encoding, not
//     exactly one document, a root or `spec` that is not a mapping,
//     `spec.containers` not a sequence, a duplicate key on the way to the
//     image, or (through aliases) too many nodes to compare;
//   MANIFEST_NOT_A_POD: `apiVersion` is not `v1` or `kind` is not `Pod`;
//   MANIFEST_CONTAINER_NOT_FOUND: no container of that name, or several;
//   MANIFEST_IMAGE_UNEDITABLE: the container has no `image`, or it is not
//     a scalar.
absl::StatusOr<std::string> ObserveManifestImage(
    std::string_view text, std::string_view file,
    std::string_view container = kDefaultProviderContainer);

// Refuses a manifest whose provider container has `imagePullPolicy:
// Always` (IMAGE_PULL_POLICY_ALWAYS, naming the file, line and key): the
// kubelet would pull even the image the runtime holds, so a failed swap
// could not restore the provider while the registry is down. IfNotPresent
// and Never pass; so does no policy, unless the image's tag is `latest`,
// which Kubernetes then defaults to Always. Errors: those of
// ObserveManifestImage too.
absl::Status CheckPullPolicyRestorable(std::string_view text, std::string_view file,
                                       std::string_view container = kDefaultProviderContainer);

// Returns `text` with that container's image replaced by `new_image`,
// written in the style the old value was written in; nothing else changes.
// Errors: those of ObserveManifestImage, and
//   MANIFEST_IMAGE_INVALID (InvalidArgument): `new_image` is empty, longer
//     than 512 bytes, does not start with a letter or digit, or holds a
//     byte other than [A-Za-z0-9._/:@-] (so it needs no quoting or escape
//     in any style);
//   MANIFEST_IMAGE_UNEDITABLE: the old value is a block scalar, spans
//     lines, holds a backslash escape or a doubled quote, or carries a tag,
//     an anchor or an alias (its bytes are not exactly its value);
//   MANIFEST_EDIT_UNVERIFIED (Internal): the edited text, parsed again,
//     differs from the input somewhere else. A bug: nothing is returned.
absl::StatusOr<std::string> ReplaceManifestImage(
    std::string_view text, std::string_view new_image, std::string_view file,
    std::string_view container = kDefaultProviderContainer);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_MANIFEST_EDIT_H_
