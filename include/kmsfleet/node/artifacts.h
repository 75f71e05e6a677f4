// Staged provider releases in <state-dir>/artifacts/<version>/
// (architecture.md §4 "Stage"; reference §8.9): the binary, verified
// against its line in the release's checksums.txt, whose detached signature
// is verified with the operator's public keys first.
//
// Layout per version (directories 0700): bao-kms-provider (0755),
// checksums.txt and checksums.txt.sig as given, and staged.sha256, one
// sha256sum line for the binary, re-checked before every use.
// Thread-safe: free functions; the executor serialises operations.
#ifndef KMSFLEET_NODE_ARTIFACTS_H_
#define KMSFLEET_NODE_ARTIFACTS_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/http_fetch.h"

namespace kmsfleet {

inline constexpr char kStagedBinaryName[] = "bao-kms-provider";

struct ArtifactStoreOptions {
  std::string state_dir;
  // PEM public keys (ECDSA P-256 or Ed25519) trusted to sign checksums.txt.
  std::vector<std::string> public_key_files;
  // Only then is a checksums file without a signature accepted.
  bool allow_unsigned = false;
  size_t max_artifact_bytes = size_t{1} << 30;
  // For http(s):// sources; fetch.max_bytes follows max_artifact_bytes.
  FetchOptions fetch;
  // A URL source must start with one of these (config
  // executor.allowed_url_prefixes); empty = every URL is refused.
  std::vector<std::string> allowed_url_prefixes;
  // What every download and copy into state_dir must leave free there
  // (CheckFreeSpace); fetch.free_space_reserve_bytes follows it.
  uint64_t free_space_reserve_bytes = kStateFreeSpaceReserveBytes;
};

struct StageRequest {
  std::string version;    // strict SemVer
  // Local path of the release binary, or an http(s):// URL under one of
  // the allowed prefixes (downloaded into a fresh mkdtemp directory
  // <state_dir>/artifacts/.incoming-XXXXXX/ first, then verified). Local
  // files (this one, checksums and signature) must be regular files: a
  // symlink, FIFO, device or directory is refused (SOURCE_NOT_ALLOWED)
  // without blocking.
  std::string source;
  std::string checksums;  // local path of checksums.txt
  std::string signature;  // local path of the base64 signature; "" if none
  // The release file name looked up in checksums.txt; "" means the source's
  // base name (the URL's last path segment).
  std::string artifact_name;
  // Static-pod nodes only (static_pod_release.h): the image to run, pinned
  // by digest, and the local path of the kit's image-ref.txt.
  std::string image;
  std::string image_ref_file;
};

struct StagedArtifact {
  std::string version;
  std::string binary_path;
  std::string sha256;
  bool is_signed = false;
  std::string signer;  // the key file that verified, when signed
  // Executor::Stage only: what a swap to this version would install, as
  // one digest (Executor::StagedDigest), as this very call staged it.
  std::string staged_digest{};
};

// "<state_dir>/artifacts/<version>"; the version must already be valid.
std::string ArtifactDir(const std::string& state_dir, const std::string& version);

// Verifies `data` against the base64 (of DER for ECDSA) `signature_b64`
// with each key in turn; returns the file of the key that verified.
// Errors: InvalidArgument, INVALID_CONFIG for an unreadable key or one that
// is not P-256 or Ed25519; PermissionDenied, SIGNATURE_INVALID when no key
// verifies or the signature is not base64.
absl::StatusOr<std::string> VerifyDetachedSignature(
    std::string_view data, std::string_view signature_b64,
    const std::vector<std::string>& key_files);

// A release file downloaded from a URL under executor.allowed_url_prefixes
// into a fresh <state_dir>/artifacts/.incoming-XXXXXX/<url file name>,
// removed with this value. Errors: SOURCE_NOT_ALLOWED, the fetch's errors
// (http_fetch.h), ARTIFACT_IO.
struct DownloadedSource {
  DownloadedSource() = default;
  DownloadedSource(DownloadedSource&& other) noexcept;
  DownloadedSource& operator=(DownloadedSource&&) = delete;
  ~DownloadedSource();
  std::string dir, path;
};
absl::StatusOr<DownloadedSource> DownloadSource(const ArtifactStoreOptions& options,
                                                const std::string& url, size_t max_bytes);

// A small release file (checksums.txt, its signature): a local regular
// file, or a URL downloaded as DownloadSource does; at most `max_bytes`.
absl::StatusOr<std::string> ReadSmallSource(const ArtifactStoreOptions& options,
                                            const std::string& source, size_t max_bytes);

// The request's checksums.txt, read and verified as Stage verifies it: its
// signature with this agent's keys, or unsigned where allowed. Errors as
// Stage's (ARTIFACT_IO, UNSIGNED_REFUSED, SIGNATURE_INVALID).
struct VerifiedChecksums {
  std::string text;
  bool is_signed = false;
};
absl::StatusOr<VerifiedChecksums> ReadVerifiedChecksums(const ArtifactStoreOptions& options,
                                                        const StageRequest& request);

// Stages a release. Order: version, URL prefix, signature, checksum line,
// then the copy (into its own mkstemp temp file, hashed while copied,
// renamed into place only on a match), so concurrent stages never share a
// temp file. On any failure the new file is removed and nothing else
// changes.
// Errors: INVALID_SEMVER; SOURCE_NOT_ALLOWED (a URL outside the allowed
// prefixes: PermissionDenied; a file that is not regular: InvalidArgument); UNSIGNED_REFUSED (FailedPrecondition) without a
// signature unless allowed; SIGNATURE_INVALID; MALFORMED_CHECKSUMS,
// CHECKSUM_NOT_LISTED, CHECKSUM_AMBIGUOUS; CHECKSUM_MISMATCH naming the
// file, expected and actual digest; ARTIFACT_IO.
absl::StatusOr<StagedArtifact> Stage(const ArtifactStoreOptions& options,
                                     const StageRequest& request);

// InvalidArgument, SOURCE_NOT_ALLOWED naming the flag and the path, when a
// local path of `request` (source, checksums, signature, image_ref_file)
// is relative: the agent would resolve it against its own working
// directory, not the operator's. Stage checks this first.
absl::Status CheckLocalPathsAbsolute(const StageRequest& request);

// The staged binary of `version`, re-hashed against staged.sha256.
// Errors: NOT_STAGED (FailedPrecondition) when absent; CHECKSUM_MISMATCH
// when it changed on disk.
absl::StatusOr<StagedArtifact> FindStaged(const ArtifactStoreOptions& options,
                                          const std::string& version);

// The staged binary of `version` with the digest staged.sha256 records,
// not re-hashed: for a caller that verifies the file against that digest
// itself before it uses it (a swap's CheckTarget step), so that an 8-30 MB
// binary is not hashed twice on the way to the provider's stop.
// Errors: NOT_STAGED when absent.
absl::StatusOr<StagedArtifact> FindStagedUnverified(const ArtifactStoreOptions& options,
                                                    const std::string& version);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_ARTIFACTS_H_
