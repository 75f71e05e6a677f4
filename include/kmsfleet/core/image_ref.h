// Container image references for static-pod providers (issue 10; reference
// §8.7, §8.8). kmsfleet only ever stages, runs or compares an image pinned
// by digest: `<repository>[:<tag>]@sha256:<64 lower-case hex>`, the form
// upstream's `init` requires (its regex is `@sha256:[0-9a-f]{64}`). A tag
// can be moved to other bytes at any time, so a tag-only reference is
// refused, never resolved.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_IMAGE_REF_H_
#define KMSFLEET_CORE_IMAGE_REF_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

// The longest reference accepted: a 255-byte name, a 128-byte tag and a
// sha256 digest fit with room to spare.
inline constexpr size_t kMaxImageRefBytes = 512;

struct ImageRef {
  // "ghcr.io/dc-tec/bao-kms-provider": an optional registry host[:port],
  // then lower-case path components.
  std::string repository;
  // "" when absent. Informational only: the digest decides which bytes run.
  std::string tag;
  // "sha256:<64 lower-case hex>", the manifest digest.
  std::string digest;

  // repository[:tag]@digest, the text ParseImageRef accepted, unchanged:
  // it is what manifests carry and what the runtime is asked for, and the
  // kubelet and the runtime normalise it themselves.
  std::string ToString() const;
  // repository@digest as the operator wrote it (messages, metadata). Never
  // compare by it: compare NormalizedPinned().
  std::string Pinned() const;
  // The repository by the Docker rules (distribution/reference's
  // ParseNormalizedNamed), as containerd lists it in repo_digests: a first
  // component with no '.' or ':' that is not "localhost" (or a single
  // component) is a path on "docker.io"; "index.docker.io" is read as
  // "docker.io"; a one-component path there gets "library/". So "busybox",
  // "library/busybox" and "index.docker.io/busybox" are all
  // "docker.io/library/busybox", and "myorg/app" is "docker.io/myorg/app".
  // Any other name is returned as written; no case is changed.
  std::string NormalizedRepository() const;
  // NormalizedRepository()@digest, the form to compare a reference by
  // (with another, or with a runtime's repo_digests): an operator may write
  // the short form of the very image a runtime lists fully qualified.
  std::string NormalizedPinned() const;
  bool operator==(const ImageRef&) const = default;
};

// True if `digest` is "sha256:" followed by 64 lower-case hex digits.
bool IsSha256Digest(std::string_view digest);

// Parses `text`, an image reference from `what` (a file and key, a flag),
// which both name in every error message together with the value.
// Errors (kInvalidArgument, metadata `what` and `image`):
//   IMAGE_REF_NOT_PINNED: a well-formed `repo` or `repo:tag` with no digest;
//   IMAGE_REF_MALFORMED: empty, longer than kMaxImageRefBytes, a repository
//     or tag that breaks the grammar (path components are lower-case
//     [a-z0-9] joined by '.', '_', "__" or dashes; a tag is
//     [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}), more than one '@', or a digest
//     that is not sha256 with 64 lower-case hex digits.
absl::StatusOr<ImageRef> ParseImageRef(std::string_view text, std::string_view what);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_IMAGE_REF_H_
