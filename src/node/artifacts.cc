#include "kmsfleet/node/artifacts.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxKeyBytes = 64 << 10;
constexpr char kStagedDigestName[] = "staged.sha256";

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

absl::Status KeyError(const std::string& file, std::string_view problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                   "public key " + file + ": " + std::string(problem),
                   {{"file", file}});
}

absl::StatusOr<Pkey> LoadPublicKey(const std::string& file) {
  // The operator's own key files (docs/config.md): a symlink is followed.
  KMSFLEET_ASSIGN_OR_RETURN(std::string pem,
                            ReadBoundedFile(file, kMaxKeyBytes, Symlinks::kFollow));
  std::unique_ptr<BIO, BioFree> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Pkey key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return KeyError(file, "not a PEM public key");
  if (EVP_PKEY_is_a(key.get(), "ED25519")) return key;
  char group[64] = {};
  size_t len = 0;
  if (EVP_PKEY_is_a(key.get(), "EC") &&
      EVP_PKEY_get_group_name(key.get(), group, sizeof group, &len) == 1 &&
      std::string_view(group) == "prime256v1") {
    return key;
  }
  return KeyError(file, "only ECDSA P-256 and Ed25519 keys are accepted");
}

// Decodes base64 with or without line breaks; nullopt-like error on junk.
absl::StatusOr<std::string> DecodeBase64(std::string_view text) {
  std::unique_ptr<EVP_ENCODE_CTX, decltype(&EVP_ENCODE_CTX_free)> ctx(
      EVP_ENCODE_CTX_new(), EVP_ENCODE_CTX_free);
  std::string out(text.size(), '\0');
  int n = 0, fin = 0;
  EVP_DecodeInit(ctx.get());
  if (EVP_DecodeUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                       reinterpret_cast<const unsigned char*>(text.data()),
                       static_cast<int>(text.size())) < 0 ||
      EVP_DecodeFinal(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + n,
                      &fin) != 1 ||
      n + fin == 0) {
    return MakeError(absl::StatusCode::kPermissionDenied,
                     reason::kSignatureInvalid, "the signature is not base64");
  }
  out.resize(static_cast<size_t>(n + fin));
  return out;
}

bool Verifies(EVP_PKEY* key, std::string_view data, std::string_view sig) {
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  // Ed25519 signs the message itself (no digest); ECDSA here is over SHA-256.
  const EVP_MD* md = EVP_PKEY_is_a(key, "ED25519") ? nullptr : EVP_sha256();
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(),
                          reinterpret_cast<const unsigned char*>(sig.data()),
                          sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1;
}


// Stage reads only regular files (issue 8 §3): fs_util refuses the rest
// (NOT_REGULAR_FILE), and Stage names that as a refused source.
absl::Status AsSourceError(absl::Status s) {
  if (ReasonOf(s) != reason::kNotRegularFile) return s;
  std::string path = MetadataOf(s, "path");
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kSourceNotAllowed,
                   std::string(s.message()) + "; Stage reads only regular files",
                   {{"file", path}, {"file_type", MetadataOf(s, "file_type")}});
}

// Reads the regular file `path` (no symlink), at most `max_bytes`.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  absl::StatusOr<std::string> text = ReadBoundedFile(path, max_bytes, Symlinks::kRefuse);
  if (!text.ok()) return AsSourceError(text.status());
  return text;
}

absl::Status CheckUrlAllowed(const ArtifactStoreOptions& options, const std::string& url) {
  // A prefix bounds a path only if the path cannot climb out of it: servers
  // resolve "..", "." and their escapes before they look the file up.
  std::string lower = url;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* climb : {"/../", "/./", "%2e", "%2f", "%5c", "\\"}) {
    if (lower.find(climb) != std::string::npos || lower.ends_with("/..") ||
        lower.ends_with("/.")) {
      return MakeError(absl::StatusCode::kPermissionDenied, reason::kSourceNotAllowed,
                       "URL source " + url + " has a dot segment or an escaped '.', '/' or "
                       "'\\' in its path, so no prefix can bound it",
                       {{"url", url}});
    }
  }
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x21 || c == 0x7f) {
      return MakeError(absl::StatusCode::kPermissionDenied, reason::kSourceNotAllowed,
                       "URL source has a space or control character", {{"url", url}});
    }
  }
  for (const std::string& prefix : options.allowed_url_prefixes) {
    if (url.size() > prefix.size() && url.compare(0, prefix.size(), prefix) == 0) {
      return absl::OkStatus();
    }
  }
  return MakeError(absl::StatusCode::kPermissionDenied, reason::kSourceNotAllowed,
                   options.allowed_url_prefixes.empty()
                       ? "URL source " + url +
                             " refused: executor.allowed_url_prefixes is empty, so this "
                             "agent downloads nothing; list the release server's prefix "
                             "or stage a local file"
                       : "URL source " + url +
                             " is under none of executor.allowed_url_prefixes",
                   {{"url", url}});
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

absl::Status CheckVersion(const std::string& version) {
  KMSFLEET_ASSIGN_OR_RETURN(SemVer v, SemVer::Parse(version));
  if (v.ToString() != version || !IsSafeFileName(version)) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidSemver,
                     "version \"" + version + "\" is not canonical SemVer",
                     {{"version", version}});
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DownloadedSource> DownloadSource(const ArtifactStoreOptions& options,
                                                const std::string& url, size_t max_bytes) {
  KMSFLEET_RETURN_IF_ERROR(CheckUrlAllowed(options, url));
  const std::string name = UrlFileName(url);
  if (!IsSafeFileName(name)) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "URL " + url + " does not end in a plain file name", {{"url", url}});
  }
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options.state_dir, 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options.state_dir + "/artifacts", 0700));
  DownloadedSource out;
  std::string dir = options.state_dir + "/artifacts/.incoming-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) return DiskWriteError("cannot create", dir, errno);
  out.dir = dir;
  out.path = dir + "/" + name;
  FetchOptions fetch = options.fetch;
  fetch.max_bytes = max_bytes;
  fetch.free_space_reserve_bytes = options.free_space_reserve_bytes;
  KMSFLEET_RETURN_IF_ERROR(FetchToFile(url, out.path, fetch));
  return out;
}

DownloadedSource::~DownloadedSource() {
  if (dir.empty()) return;
  unlink(path.c_str());
  rmdir(dir.c_str());
}

DownloadedSource::DownloadedSource(DownloadedSource&& other) noexcept
    : dir(std::exchange(other.dir, "")), path(std::exchange(other.path, "")) {}

absl::StatusOr<std::string> ReadSmallSource(const ArtifactStoreOptions& options,
                                            const std::string& source, size_t max_bytes) {
  if (!IsFetchUrl(source)) return ReadRegularFile(source, max_bytes);
  KMSFLEET_ASSIGN_OR_RETURN(DownloadedSource file, DownloadSource(options, source, max_bytes));
  return ReadRegularFile(file.path, max_bytes);
}

namespace {

// Checks the signature policy; fills `out.is_signed` and `out.signer`, and
// `verified_sig` with the signature's bytes as verified (so the bytes
// stored are those, not a second read of the source).
absl::Status CheckSignature(const ArtifactStoreOptions& options,
                            const StageRequest& request,
                            const std::string& checksums, StagedArtifact& out,
                            std::string* verified_sig = nullptr) {
  if (request.signature.empty()) {
    if (options.allow_unsigned) return absl::OkStatus();
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kUnsignedRefused,
                     request.checksums +
                         " has no signature and executor.allow_unsigned is "
                         "false; pass the detached signature",
                     {{"file", request.checksums}});
  }
  KMSFLEET_ASSIGN_OR_RETURN(std::string sig,
                            ReadSmallSource(options, request.signature, kMaxSignatureBytes));
  KMSFLEET_ASSIGN_OR_RETURN(
      out.signer, VerifyDetachedSignature(checksums, sig, options.public_key_files));
  out.is_signed = true;
  if (verified_sig != nullptr) *verified_sig = std::move(sig);
  return absl::OkStatus();
}

// Copies the regular file `source` to `dest` (0755), verified against
// `expected`; a temp file of the call's own, so concurrent stages never
// share one. `named` is the source as the request gave it.
absl::StatusOr<std::string> CopyVerified(const std::string& source, const std::string& named,
                                         const std::string& dest, const std::string& expected,
                                         size_t max_bytes, uint64_t reserve_bytes) {
  absl::StatusOr<std::string> digest =
      CopyFileAtomic(source, dest, 0755, expected, max_bytes, reserve_bytes);
  if (digest.ok() || ReasonOf(digest.status()) != reason::kChecksumMismatch ||
      source == named) {
    return digest.ok() ? digest : AsSourceError(digest.status());
  }
  // A download's mismatch names the URL, not the temp file it landed in.
  std::string actual = MetadataOf(digest.status(), "actual");
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                   "SHA-256 of " + named + " is " + actual + ", expected " + expected,
                   {{"file", named}, {"expected", expected}, {"actual", actual}});
}

// Downloads `url` to `incoming`, then copies that to `dest` as CopyVerified.
absl::StatusOr<std::string> FetchAndCopy(const std::string& url, const std::string& incoming,
                                         const FetchOptions& fetch, const std::string& dest,
                                         const std::string& expected, size_t max_bytes) {
  KMSFLEET_RETURN_IF_ERROR(FetchToFile(url, incoming, fetch));
  return CopyVerified(incoming, url, dest, expected, max_bytes, fetch.free_space_reserve_bytes);
}

// Copies the source (downloading it first if it is a URL) to `dest`,
// verified against `expected`; a mismatch names the source as given.
absl::StatusOr<std::string> CopyIntoPlace(const ArtifactStoreOptions& options,
                                          const StageRequest& request,
                                          const std::string& expected,
                                          const std::string& dest) {
  if (!IsFetchUrl(request.source)) {
    return CopyVerified(request.source, request.source, dest, expected,
                        options.max_artifact_bytes, options.free_space_reserve_bytes);
  }
  // A download lands in a directory of its own (mkdtemp), so concurrent
  // stages never share the file.
  std::string incoming_dir = options.state_dir + "/artifacts/.incoming-XXXXXX";
  if (mkdtemp(incoming_dir.data()) == nullptr) {
    return DiskWriteError("cannot create", incoming_dir, errno);
  }
  std::string incoming = incoming_dir + "/download";
  FetchOptions fetch = options.fetch;
  fetch.max_bytes = options.max_artifact_bytes;
  fetch.free_space_reserve_bytes = options.free_space_reserve_bytes;
  absl::StatusOr<std::string> digest = FetchAndCopy(request.source, incoming, fetch, dest,
                                                    expected, options.max_artifact_bytes);
  unlink(incoming.c_str());
  rmdir(incoming_dir.c_str());
  return digest;
}

}  // namespace

std::string ArtifactDir(const std::string& state_dir, const std::string& version) {
  return state_dir + "/artifacts/" + version;
}

absl::StatusOr<std::string> VerifyDetachedSignature(
    std::string_view data, std::string_view signature_b64,
    const std::vector<std::string>& key_files) {
  if (key_files.empty()) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kSignatureInvalid,
                     "a signature was given but executor.public_keys is empty");
  }
  KMSFLEET_ASSIGN_OR_RETURN(std::string sig, DecodeBase64(signature_b64));
  // Every key is tried: one removed or unreadable during a key rotation
  // must not stop another from verifying. Named only if none does.
  std::string unreadable;
  for (const std::string& file : key_files) {
    absl::StatusOr<Pkey> key = LoadPublicKey(file);
    if (!key.ok()) {
      unreadable += "; " + std::string(key.status().message());
      continue;
    }
    if (Verifies(key->get(), data, sig)) return file;
  }
  return MakeError(absl::StatusCode::kPermissionDenied, reason::kSignatureInvalid,
                   "the checksums signature does not verify with any of the " +
                       std::to_string(key_files.size()) + " configured key(s)" + unreadable);
}

absl::StatusOr<VerifiedChecksums> ReadVerifiedChecksums(const ArtifactStoreOptions& options,
                                                        const StageRequest& request) {
  VerifiedChecksums out;
  KMSFLEET_ASSIGN_OR_RETURN(out.text,
                            ReadSmallSource(options, request.checksums, kMaxChecksumsBytes));
  StagedArtifact signer;
  KMSFLEET_RETURN_IF_ERROR(CheckSignature(options, request, out.text, signer));
  out.is_signed = signer.is_signed;
  return out;
}

absl::Status CheckLocalPathsAbsolute(const StageRequest& request) {
  for (const auto& [flag, path] : {std::pair{"--source", &request.source},
                                   std::pair{"--checksums", &request.checksums},
                                   std::pair{"--signature", &request.signature},
                                   std::pair{"--image-ref", &request.image_ref_file}}) {
    if (path->empty() || path->front() == '/' || IsFetchUrl(*path)) continue;
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kSourceNotAllowed,
                     std::string("stage ") + flag + " \"" + path->substr(0, 256) +
                         "\" is a relative path, which the agent would look up in its own "
                         "working directory: give an absolute path the agent can read (the "
                         "packaged unit hides /tmp, /var/tmp, /home and /root from it)",
                     {{"flag", flag}, {"path", path->substr(0, 256)}});
  }
  return absl::OkStatus();
}

absl::StatusOr<StagedArtifact> Stage(const ArtifactStoreOptions& options,
                                     const StageRequest& request) {
  KMSFLEET_RETURN_IF_ERROR(CheckLocalPathsAbsolute(request));
  KMSFLEET_RETURN_IF_ERROR(CheckVersion(request.version));
  if (IsFetchUrl(request.source)) {
    KMSFLEET_RETURN_IF_ERROR(CheckUrlAllowed(options, request.source));
  }
  StagedArtifact out;
  out.version = request.version;
  KMSFLEET_ASSIGN_OR_RETURN(std::string checksums,
                            ReadSmallSource(options, request.checksums, kMaxChecksumsBytes));
  std::string sig;
  KMSFLEET_RETURN_IF_ERROR(CheckSignature(options, request, checksums, out, &sig));
  std::string name = !request.artifact_name.empty() ? request.artifact_name
                     : IsFetchUrl(request.source)   ? UrlFileName(request.source)
                                                    : BaseName(request.source);
  if (!IsSafeFileName(name)) {
    return MakeError(absl::StatusCode::kInvalidArgument, reason::kInvalidConfig,
                     "artifact name \"" + name + "\" is not a plain file name",
                     {{"artifact", name}});
  }
  KMSFLEET_ASSIGN_OR_RETURN(std::string expected,
                            FindChecksum(checksums, name, request.checksums));
  std::string dir = ArtifactDir(options.state_dir, request.version);
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options.state_dir, 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(options.state_dir + "/artifacts", 0700));
  KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(dir, 0700));
  out.binary_path = dir + "/" + kStagedBinaryName;
  absl::StatusOr<std::string> digest = CopyIntoPlace(options, request, expected,
                                                     out.binary_path);
  if (!digest.ok()) {
    rmdir(dir.c_str());  // only if this stage created it and left it empty
    return digest.status();
  }
  out.sha256 = *digest;
  // WriteFileAtomic gives each call a temp of its own: a concurrent Stage
  // of the same version never writes into this one's temp.
  KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(dir + "/checksums.txt", checksums, 0600));
  if (out.is_signed) {
    KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(dir + "/checksums.txt.sig", sig, 0600));
  } else if (unlink((dir + "/checksums.txt.sig").c_str()) != 0 && errno != ENOENT) {
    // A signature left by an earlier signed stage would call this one signed.
    return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                     "cannot remove " + dir + "/checksums.txt.sig: " + std::strerror(errno),
                     {{"path", dir + "/checksums.txt.sig"}});
  }
  KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(dir + "/" + kStagedDigestName,
                                            out.sha256 + "  " + kStagedBinaryName + "\n", 0600));
  return out;
}

absl::StatusOr<StagedArtifact> FindStagedUnverified(const ArtifactStoreOptions& options,
                                                    const std::string& version) {
  KMSFLEET_RETURN_IF_ERROR(CheckVersion(version));
  std::string dir = ArtifactDir(options.state_dir, version);
  absl::StatusOr<std::string> line =
      ReadBoundedFile(dir + "/" + kStagedDigestName, 4096);
  if (!line.ok()) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kNotStaged,
                     "version " + version + " is not staged in " + dir,
                     {{"version", version}});
  }
  StagedArtifact out;
  KMSFLEET_ASSIGN_OR_RETURN(out.sha256,
                            FindChecksum(*line, kStagedBinaryName, dir + "/staged.sha256"));
  out.version = version;
  out.binary_path = dir + "/" + kStagedBinaryName;
  out.is_signed = access((dir + "/checksums.txt.sig").c_str(), F_OK) == 0;
  return out;
}

absl::StatusOr<StagedArtifact> FindStaged(const ArtifactStoreOptions& options,
                                          const std::string& version) {
  KMSFLEET_ASSIGN_OR_RETURN(StagedArtifact out, FindStagedUnverified(options, version));
  const std::string expected = out.sha256;
  KMSFLEET_ASSIGN_OR_RETURN(out.sha256, Sha256File(out.binary_path));
  if (out.sha256 != expected) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kChecksumMismatch,
                     "SHA-256 of " + out.binary_path + " is " + out.sha256 +
                         ", expected " + expected,
                     {{"file", out.binary_path}, {"expected", expected},
                      {"actual", out.sha256}});
  }
  return out;
}

}  // namespace kmsfleet
