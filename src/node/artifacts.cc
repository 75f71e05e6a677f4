#include "kmsfleet/node/artifacts.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "kmsfleet/core/checksums.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/semver.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

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

// An open file descriptor, closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

absl::Status SourceError(const std::string& path, std::string_view why) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kSourceNotAllowed,
                   path + ": " + std::string(why) + "; Stage reads only regular files",
                   {{"file", path}});
}

std::string_view FileTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  return "not a regular file";
}

// Opens `path` for reading only if it is a regular file. Non-blocking, so
// that a FIFO cannot hang the open, and without following a symlink; the
// type is checked on the opened file, so it cannot be swapped in between.
absl::StatusOr<std::unique_ptr<Fd>> OpenRegularFile(const std::string& path) {
  auto fd = std::make_unique<Fd>(
      open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
  if (fd->get() < 0) {
    int err = errno;
    if (err == ELOOP) return SourceError(path, "is a symbolic link");
    return MakeError(err == ENOENT ? absl::StatusCode::kNotFound
                                   : absl::StatusCode::kUnavailable,
                     reason::kArtifactIo,
                     "cannot open " + path + ": " + std::strerror(err), {{"file", path}});
  }
  struct stat st {};
  if (fstat(fd->get(), &st) != 0) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                     "cannot stat " + path + ": " + std::strerror(errno), {{"file", path}});
  }
  if (!S_ISREG(st.st_mode)) return SourceError(path, "is " + std::string(FileTypeName(st.st_mode)));
  return fd;
}

// Reads all of `fd` (the file `path`), at most `max_bytes`.
absl::StatusOr<std::string> ReadAllBounded(int fd, const std::string& path,
                                           size_t max_bytes) {
  std::string out;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                       "cannot read " + path + ": " + std::strerror(errno), {{"file", path}});
    }
    if (n == 0) return out;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      return MakeError(absl::StatusCode::kResourceExhausted, reason::kInputTooLarge,
                       path + " is larger than " + std::to_string(max_bytes) + " bytes",
                       {{"file", path}});
    }
    out.append(buffer, static_cast<size_t>(n));
  }
}

// Reads the regular file `path`, at most `max_bytes`.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  KMSFLEET_ASSIGN_OR_RETURN(std::unique_ptr<Fd> fd, OpenRegularFile(path));
  return ReadAllBounded(fd->get(), path, max_bytes);
}

absl::Status CheckUrlAllowed(const ArtifactStoreOptions& options, const std::string& url) {
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
  KMSFLEET_ASSIGN_OR_RETURN(std::string sig,
                            ReadRegularFile(request.signature, kMaxSignatureBytes));
  KMSFLEET_ASSIGN_OR_RETURN(
      out.signer, VerifyDetachedSignature(checksums, sig, options.public_key_files));
  out.is_signed = true;
  return absl::OkStatus();
}

absl::Status IoError(std::string_view what, const std::string& path, int err) {
  return MakeError(absl::StatusCode::kUnavailable, reason::kArtifactIo,
                   "cannot " + std::string(what) + " " + path + ": " + std::strerror(err),
                   {{"file", path}});
}

// Copies the open regular file `in` (named `source`) to `dest` through a
// temp file of its own (mkstemp: concurrent stages never share one),
// hashing what it copies; renames it into place only when the digest is
// `expected`. Returns the hex SHA-256.
absl::StatusOr<std::string> CopyVerified(int in, const std::string& source,
                                         const std::string& dest,
                                         const std::string& expected, size_t max_bytes) {
  std::string tmp = dest + ".tmp.XXXXXX";
  Fd out(mkostemp(tmp.data(), O_CLOEXEC));
  if (out.get() < 0) return IoError("create a temp file for", dest, errno);
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  absl::Status s = ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1
                       ? absl::OkStatus()
                       : IoError("hash", source, EINVAL);
  size_t total = 0;
  std::vector<char> buffer(1 << 20);
  while (s.ok()) {
    ssize_t n = read(in, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) s = IoError("read", source, errno);
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    if (total > max_bytes) {
      s = MakeError(absl::StatusCode::kResourceExhausted, reason::kInputTooLarge,
                    source + " is larger than " + std::to_string(max_bytes) + " bytes",
                    {{"file", source}});
      break;
    }
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(n));
    for (ssize_t done = 0; s.ok() && done < n;) {
      ssize_t w = write(out.get(), buffer.data() + done, static_cast<size_t>(n - done));
      if (w < 0 && errno != EINTR) s = IoError("write", tmp, errno);
      if (w > 0) done += w;
    }
  }
  std::string actual;
  if (s.ok()) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < len; ++i) {
      actual += kHex[md[i] >> 4];
      actual += kHex[md[i] & 15];
    }
    if (actual != expected) {
      s = MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                    "SHA-256 of " + source + " is " + actual + ", expected " + expected,
                    {{"file", source}, {"expected", expected}, {"actual", actual}});
    }
  }
  if (s.ok() && fchmod(out.get(), 0755) != 0) s = IoError("chmod", tmp, errno);
  if (s.ok() && fsync(out.get()) != 0) s = IoError("fsync", tmp, errno);
  if (s.ok() && rename(tmp.c_str(), dest.c_str()) != 0) s = IoError("rename", tmp, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  size_t slash = dest.rfind('/');
  KMSFLEET_RETURN_IF_ERROR(FsyncDir(slash == std::string::npos ? "." : dest.substr(0, slash)));
  return actual;
}

// Writes `content` to `path` through a temp file of its own (mkstemp), then
// fsync, rename and fsync the directory.
absl::Status WriteUniqueAtomic(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp.XXXXXX";
  absl::Status s;
  {
    Fd out(mkostemp(tmp.data(), O_CLOEXEC));
    if (out.get() < 0) return IoError("create a temp file for", path, errno);
    for (size_t done = 0; s.ok() && done < content.size();) {
      ssize_t w = write(out.get(), content.data() + done, content.size() - done);
      if (w < 0 && errno != EINTR) s = IoError("write", tmp, errno);
      if (w > 0) done += static_cast<size_t>(w);
    }
    if (s.ok() && fsync(out.get()) != 0) s = IoError("fsync", tmp, errno);
  }
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) s = IoError("rename", tmp, errno);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  size_t slash = path.rfind('/');
  return FsyncDir(slash == std::string::npos ? "." : path.substr(0, slash));
}

// Downloads `url` to `incoming`, then copies that to `dest` as CopyVerified.
absl::StatusOr<std::string> FetchAndCopy(const std::string& url, const std::string& incoming,
                                         const FetchOptions& fetch, const std::string& dest,
                                         const std::string& expected, size_t max_bytes) {
  KMSFLEET_RETURN_IF_ERROR(FetchToFile(url, incoming, fetch));
  KMSFLEET_ASSIGN_OR_RETURN(std::unique_ptr<Fd> in, OpenRegularFile(incoming));
  return CopyVerified(in->get(), url, dest, expected, max_bytes);
}

// Copies the source (downloading it first if it is a URL) to `dest`,
// verified against `expected`; a mismatch names the source as given.
absl::StatusOr<std::string> CopyIntoPlace(const ArtifactStoreOptions& options,
                                          const StageRequest& request,
                                          const std::string& expected,
                                          const std::string& dest) {
  if (!IsFetchUrl(request.source)) {
    KMSFLEET_ASSIGN_OR_RETURN(std::unique_ptr<Fd> in, OpenRegularFile(request.source));
    return CopyVerified(in->get(), request.source, dest, expected,
                        options.max_artifact_bytes);
  }
  // A download lands in a directory of its own (mkdtemp), so concurrent
  // stages never share the file.
  std::string incoming_dir = options.state_dir + "/artifacts/.incoming-XXXXXX";
  if (mkdtemp(incoming_dir.data()) == nullptr) return IoError("create", incoming_dir, errno);
  std::string incoming = incoming_dir + "/download";
  FetchOptions fetch = options.fetch;
  fetch.max_bytes = options.max_artifact_bytes;
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
  if (IsFetchUrl(request.source)) {
    KMSFLEET_RETURN_IF_ERROR(CheckUrlAllowed(options, request.source));
  }
  StagedArtifact out;
  out.version = request.version;
  KMSFLEET_ASSIGN_OR_RETURN(std::string checksums,
                            ReadRegularFile(request.checksums, kMaxChecksumsBytes));
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
  // Every file goes through a temp of its own: a concurrent Stage of the
  // same version never writes into this one's temp.
  KMSFLEET_RETURN_IF_ERROR(WriteUniqueAtomic(dir + "/checksums.txt", checksums));
  if (out.is_signed) {
    KMSFLEET_ASSIGN_OR_RETURN(std::string sig,
                              ReadRegularFile(request.signature, kMaxSignatureBytes));
    KMSFLEET_RETURN_IF_ERROR(WriteUniqueAtomic(dir + "/checksums.txt.sig", sig));
  }
  KMSFLEET_RETURN_IF_ERROR(WriteUniqueAtomic(dir + "/" + kStagedDigestName,
                                              out.sha256 + "  " + kStagedBinaryName + "\n"));
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
