// Fuzzes the static-pod kit reader (kit_archive.h) on tar bytes: the harness
// gzips the input into a file, since the reader walks tar headers of a kit
// before its digest is known to match. Whatever the bytes, the read ends
// with the file's content within its bound, or a reason.
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <string>

#include "fuzz_check.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/node/kit_archive.h"

using kmsfleet::fuzz::CheckError;
using kmsfleet::fuzz::Require;

namespace {

std::string Gzip(const uint8_t* data, size_t size) {
  z_stream z{};
  Require(deflateInit2(&z, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, size) + 64, '\0');
  z.next_in = const_cast<uint8_t*>(data);
  z.avail_in = static_cast<uInt>(size);
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  Require(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char dir[] = "/tmp/fuzz-kit-XXXXXX";
    Require(mkdtemp(dir) != nullptr);
    return std::string(dir) + "/kit.tar.gz";
  }();
  const std::string kit = Gzip(data, size);
  Require(kmsfleet::WriteFileAtomic(path, kit, 0600).ok());
  absl::StatusOr<std::string> read = kmsfleet::ReadFileFromKit(
      {.path = path, .expected_sha256 = kmsfleet::Sha256Hex(kit), .name = "image-ref.txt"});
  if (read.ok()) {
    Require(read->size() <= 4096);
    return 0;
  }
  CheckError(read.status());
  Require(kmsfleet::ReasonOf(read.status()) == kmsfleet::reason::kKitMalformed);
  return 0;
}
