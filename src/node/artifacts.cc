#include "kmsfleet/artifacts.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <memory>

#include "kmsfleet/fs_util.h"
#include "kmsfleet/checksums.h"
#include "kmsfleet/reasons.h"
#include "kmsfleet/semver.h"
#include "kmsfleet/status.h"
#include "kmsfleet/status_macros.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxSignatureBytes = 64 << 10;
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
  KMSFLEET_ASSIGN_OR_RETURN(std::string pem,
                            ReadBoundedFile(file, kMaxKeyBytes));
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

// Checks the signature policy; fills `out.is_signed` and `out.signer`.
absl::Status CheckSignature(const ArtifactStoreOptions& options,
                            const StageRequest& request,
                            const std::string& checksums, StagedArtifact& out) {
  if (request.signature.empty()) {
    if (options.allow_unsigned) return absl::OkStatus();
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kUnsignedRefused,
                     request.checksums +
                         " has no signature and executor.allow_unsigned is "
                         "false; pass the detached signature",
                     {{"file", request.checksums}});
  }
  KMSFLEET_ASSIGN_OR_RETURN(
      std::string sig, ReadBoundedFile(request.signature, kMaxSignatureBytes));
  KMSFLEET_ASSIGN_OR_RETURN(
      out.signer, VerifyDetachedSignature(checksums, sig, options.public_key_files));
  out.is_signed = true;
  return absl::OkStatus();
}

// Copies the source (downloading it first if it is a URL) to `dest`,
// verified against `expected`; a mismatch names the source as given.
absl::StatusOr<std::string> CopyIntoPlace(const ArtifactStoreOptions& options,
                                          const StageRequest& request,
                                          const std::string& expected,
                                          const std::string& dest) {
  std::string from = request.source;
  std::string incoming;
  if (IsFetchUrl(request.source)) {
    incoming = options.state_dir + "/artifacts/.incoming-" + std::to_string(getpid());
    unlink(incoming.c_str());  // left by a crashed stage of this pid number
    FetchOptions fetch = options.fetch;
    fetch.max_bytes = options.max_artifact_bytes;
    KMSFLEET_RETURN_IF_ERROR(FetchToFile(request.source, incoming, fetch));
    from = incoming;
  }
  absl::StatusOr<std::string> digest =
      CopyFileAtomic(from, dest, 0755, expected, options.max_artifact_bytes);
  if (!incoming.empty()) unlink(incoming.c_str());
  if (ReasonOf(digest.status()) == reason::kChecksumMismatch && !incoming.empty()) {
    std::string actual = MetadataOf(digest.status(), "actual");
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                     "SHA-256 of " + request.source + " is " + actual +
                         ", expected " + expected,
                     {{"file", request.source}, {"expected", expected}, {"actual", actual}});
  }
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
  for (const std::string& file : key_files) {
    KMSFLEET_ASSIGN_OR_RETURN(Pkey key, LoadPublicKey(file));
    if (Verifies(key.get(), data, sig)) return file;
  }
  return MakeError(absl::StatusCode::kPermissionDenied, reason::kSignatureInvalid,
                   "the checksums signature does not verify with any of the " +
                       std::to_string(key_files.size()) + " configured key(s)");
}

absl::StatusOr<StagedArtifact> Stage(const ArtifactStoreOptions& options,
                                     const StageRequest& request) {
  KMSFLEET_RETURN_IF_ERROR(CheckVersion(request.version));
  StagedArtifact out;
  out.version = request.version;
  KMSFLEET_ASSIGN_OR_RETURN(
      std::string checksums,
      ReadBoundedFile(request.checksums, kMaxChecksumsBytes));
  KMSFLEET_RETURN_IF_ERROR(CheckSignature(options, request, checksums, out));
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
  KMSFLEET_RETURN_IF_ERROR(
      WriteFileAtomic(dir + "/checksums.txt", checksums, 0600));
  if (out.is_signed) {
    KMSFLEET_ASSIGN_OR_RETURN(
        std::string sig,
        ReadBoundedFile(request.signature, kMaxSignatureBytes));
    KMSFLEET_RETURN_IF_ERROR(
        WriteFileAtomic(dir + "/checksums.txt.sig", sig, 0600));
  }
  KMSFLEET_RETURN_IF_ERROR(WriteFileAtomic(
      dir + "/" + kStagedDigestName,
      out.sha256 + "  " + kStagedBinaryName + "\n", 0600));
  return out;
}

absl::StatusOr<StagedArtifact> FindStaged(const ArtifactStoreOptions& options,
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
  KMSFLEET_ASSIGN_OR_RETURN(std::string expected,
                            FindChecksum(*line, kStagedBinaryName, dir + "/staged.sha256"));
  StagedArtifact out;
  out.version = version;
  out.binary_path = dir + "/" + kStagedBinaryName;
  KMSFLEET_ASSIGN_OR_RETURN(out.sha256, Sha256File(out.binary_path));
  if (out.sha256 != expected) {
    return MakeError(absl::StatusCode::kFailedPrecondition,
                     reason::kChecksumMismatch,
                     "SHA-256 of " + out.binary_path + " is " + out.sha256 +
                         ", expected " + expected,
                     {{"file", out.binary_path}, {"expected", expected},
                      {"actual", out.sha256}});
  }
  out.is_signed = access((dir + "/checksums.txt.sig").c_str(), F_OK) == 0;
  return out;
}

}  // namespace kmsfleet
