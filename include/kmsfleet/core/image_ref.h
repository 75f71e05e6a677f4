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

  // repository[:tag]@digest, the text ParseImageRef accepted.
  std::string ToString() const;
  // repository@digest, the form a runtime lists in an image's repo_digests.
  std::string Pinned() const;
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
