// Reading one file out of a release kit (kit_archive.h): zlib inflates,
// a small ustar reader walks the headers, SHA-256 covers every byte read.
#include "kmsfleet/node/kit_archive.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

constexpr size_t kBlock = 512;
constexpr size_t kMaxLongName = 4096;     // a GNU long name or a pax path
constexpr size_t kMaxPaxHeader = 65536;

absl::Status Malformed(const KitRead& r, const std::string& problem) {
  return MakeError(absl::StatusCode::kInvalidArgument, reason::kKitMalformed,
                   "release kit " + r.path + ": " + problem,
                   {{"file", r.path}, {"name", r.name}});
}

absl::Status Io(const KitRead& r, const std::string& what, int err) {
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kArtifactIo,
                   what + " " + r.path + ": " + std::strerror(err), {{"file", r.path}});
}

// An octal tar number field (NUL or space ended); nullopt if malformed.
std::optional<uint64_t> Octal(std::string_view field) {
  uint64_t v = 0;
  size_t i = 0;
  while (i < field.size() && field[i] == ' ') ++i;
  bool any = false;
  for (; i < field.size() && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v > (UINT64_MAX >> 3)) return std::nullopt;
    v = v * 8 + static_cast<uint64_t>(field[i] - '0');
    any = true;
  }
  for (; i < field.size(); ++i) {
    if (field[i] != ' ' && field[i] != '\0') return std::nullopt;
  }
  return any ? std::optional<uint64_t>(v) : std::nullopt;
}

std::string CString(std::string_view field) {
  return std::string(field.substr(0, std::min(field.size(), field.find('\0'))));
}

// Whether an archive path names `name` at the top or in one top directory.
bool NamesFile(std::string path, std::string_view name) {
  while (path.rfind("./", 0) == 0) path.erase(0, 2);
  if (path == name) return true;
  const size_t slash = path.find('/');
  return slash != std::string::npos && slash > 0 && path.substr(slash + 1) == name;
}

// The value of the "path" record of a pax extended header, or "".
std::string PaxPath(std::string_view records) {
  while (!records.empty()) {
    const size_t space = records.find(' ');
    if (space == std::string_view::npos) break;
    uint64_t n = 0;  // the record's length, its own digits included
    for (char c : records.substr(0, space)) {
      if (c < '0' || c > '9' || n > kMaxPaxHeader) return "";
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    if (n < space + 2 || n > records.size()) return "";
    std::string_view record = records.substr(space + 1, n - space - 2);  // no '\n'
    if (record.rfind("path=", 0) == 0) return std::string(record.substr(5));
    records.remove_prefix(n);
  }
  return "";
}

// Walks tar headers over the inflated stream, fed in pieces.
class TarScanner {
 public:
  explicit TarScanner(const KitRead& r) : r_(r) {}

  absl::Status Feed(std::string_view data) {
    while (!data.empty() && !done_) {
      if (skip_ > 0) {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_, data.size()));
        if (collect_) body_.append(data.substr(0, std::min(n, body_want_ - body_.size())));
        skip_ -= n;
        data.remove_prefix(n);
        if (skip_ == 0) KMSFLEET_RETURN_IF_ERROR(EntryEnd());
        continue;
      }
      const size_t n = std::min(kBlock - header_.size(), data.size());
      header_.append(data.substr(0, n));
      data.remove_prefix(n);
      if (header_.size() == kBlock) KMSFLEET_RETURN_IF_ERROR(Header());
    }
    return absl::OkStatus();
  }

  bool done() const { return done_; }
  const std::optional<std::string>& found() const { return found_; }

 private:
  enum class Body { kSkip, kLongName, kPax, kWanted };

  absl::Status Header() {
    const std::string h = std::move(header_);
    header_.clear();
    if (h.find_first_not_of('\0') == std::string::npos) {
      done_ = true;  // the end-of-archive block
      return absl::OkStatus();
    }
    std::optional<uint64_t> sum = Octal(std::string_view(h).substr(148, 8));
    uint64_t actual = 0;
    for (size_t i = 0; i < kBlock; ++i) {
      actual += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    }
    std::optional<uint64_t> size = Octal(std::string_view(h).substr(124, 12));
    if (!sum || *sum != actual || !size) return Malformed(r_, "a damaged tar header");
    const char type = h[156];
    std::string path = CString(std::string_view(h).substr(0, 100));
    const std::string prefix = CString(std::string_view(h).substr(345, 155));
    if (h.compare(257, 5, "ustar") == 0 && !prefix.empty()) path = prefix + "/" + path;
    if (!next_name_.empty()) path = std::exchange(next_name_, "");
    Body body = Body::kSkip;
    if (type == 'L') body = Body::kLongName;
    if (type == 'x') body = Body::kPax;
    if ((type == '0' || type == '\0') && NamesFile(path, r_.name)) body = Body::kWanted;
    return StartBody(body, *size);
  }

  absl::Status StartBody(Body body, uint64_t size) {
    const size_t cap = body == Body::kWanted    ? r_.max_file_bytes
                       : body == Body::kPax     ? kMaxPaxHeader
                       : body == Body::kLongName ? kMaxLongName
                                                 : 0;
    if (body != Body::kSkip && size > cap) {
      return Malformed(r_, (body == Body::kWanted ? r_.name : std::string("a tar name")) +
                               " is " + std::to_string(size) + " bytes, over " +
                               std::to_string(cap));
    }
    body_kind_ = body;
    collect_ = body != Body::kSkip;
    body_.clear();
    body_want_ = static_cast<size_t>(collect_ ? size : 0);
    skip_ = (size + kBlock - 1) / kBlock * kBlock;
    if (skip_ == 0) return EntryEnd();
    return absl::OkStatus();
  }

  absl::Status EntryEnd() {
    collect_ = false;
    switch (body_kind_) {
      case Body::kLongName: next_name_ = CString(body_); break;
      case Body::kPax: next_name_ = PaxPath(body_); break;
      case Body::kWanted:
        found_ = std::move(body_);
        done_ = true;
        break;
      case Body::kSkip: break;
    }
    body_kind_ = Body::kSkip;
    return absl::OkStatus();
  }

  const KitRead& r_;
  std::string header_, body_, next_name_;
  Body body_kind_ = Body::kSkip;
  bool collect_ = false;
  size_t body_want_ = 0;
  uint64_t skip_ = 0;
  bool done_ = false;
  std::optional<std::string> found_;
};

struct Inflater {
  z_stream z{};
  bool open = false;
  ~Inflater() {
    if (open) inflateEnd(&z);
  }
};

}  // namespace

absl::StatusOr<std::string> ReadFileFromKit(const KitRead& r) {
  const ScopedFd file(::open(r.path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  const int fd = file.get();
  if (fd < 0) return Io(r, "open", errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) return Io(r, "stat", errno);
  if (!S_ISREG(st.st_mode)) return Io(r, "read (not a regular file)", EINVAL);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  Inflater in;
  if (!sha || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1 ||
      inflateInit2(&in.z, 16 + MAX_WBITS) != Z_OK) {
    return Malformed(r, "cannot start reading it");
  }
  in.open = true;
  TarScanner tar(r);
  bool stream_end = false;
  uint64_t read_bytes = 0, unpacked = 0;
  std::array<unsigned char, 65536> chunk{};
  std::array<unsigned char, 65536> out{};
  for (;;) {
    const ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Io(r, "read", errno);
    if (n == 0) break;
    read_bytes += static_cast<uint64_t>(n);
    if (read_bytes > r.max_kit_bytes) {
      return Malformed(r, "over " + std::to_string(r.max_kit_bytes) + " bytes");
    }
    EVP_DigestUpdate(sha.get(), chunk.data(), static_cast<size_t>(n));
    in.z.next_in = chunk.data();
    in.z.avail_in = static_cast<uInt>(n);
    while (in.z.avail_in > 0 && !stream_end && !tar.done()) {
      in.z.next_out = out.data();
      in.z.avail_out = static_cast<uInt>(out.size());
      const int rc = inflate(&in.z, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) return Malformed(r, "not a gzip stream");
      stream_end = rc == Z_STREAM_END;
      const size_t got = out.size() - in.z.avail_out;
      unpacked += got;
      if (unpacked > r.max_unpacked_bytes) {
        return Malformed(r, "unpacks to over " + std::to_string(r.max_unpacked_bytes) +
                                " bytes before " + r.name);
      }
      KMSFLEET_RETURN_IF_ERROR(tar.Feed(std::string_view(reinterpret_cast<char*>(out.data()), got)));
    }
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned md_len = 0;
  EVP_DigestFinal_ex(sha.get(), md.data(), &md_len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string actual;
  for (unsigned i = 0; i < md_len; ++i) {
    actual += kHex[md[i] >> 4];
    actual += kHex[md[i] & 0xf];
  }
  if (actual != r.expected_sha256) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kChecksumMismatch,
                     "SHA-256 of " + r.path + " is " + actual + ", expected " +
                         r.expected_sha256,
                     {{"file", r.path}, {"expected", r.expected_sha256}, {"actual", actual}});
  }
  if (!tar.found()) return Malformed(r, "has no " + r.name + " at its top");
  return *tar.found();
}

}  // namespace kmsfleet
