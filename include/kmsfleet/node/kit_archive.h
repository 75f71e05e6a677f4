// One small file read out of a release kit: a gzip-compressed tar such as
// upstream's bao-kms-provider_<version>_static-pod_linux_<arch>.tar.gz,
// whose image-ref.txt names the image the static pod runs (reference
// §8.8). The kit is trusted only through its line in the release's
// checksums.txt, so the whole file is hashed in the same pass that reads
// it, and nothing read is returned unless that digest matches.
#ifndef KMSFLEET_NODE_KIT_ARCHIVE_H_
#define KMSFLEET_NODE_KIT_ARCHIVE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kmsfleet {

struct KitRead {
  std::string path;             // the kit (a regular file; symlinks refused)
  std::string expected_sha256;  // of the whole kit, from checksums.txt
  std::string name;             // e.g. "image-ref.txt"
  size_t max_file_bytes = 4096;
  uint64_t max_kit_bytes = uint64_t{1} << 30;       // compressed
  uint64_t max_unpacked_bytes = uint64_t{2} << 30;  // read before `name` is found
};

// The content of the kit's file `name`, at the top of the archive or in
// its one top directory (`<dir>/name`), read in one pass that also hashes
// the kit. Handles ustar names with a prefix and GNU long names.
// Errors: ARTIFACT_IO (cannot open or read; not a regular file),
// CHECKSUM_MISMATCH (the kit is not the one checksums.txt lists; nothing
// read from it is used), KIT_MALFORMED (not gzip, a damaged tar header,
// over a bound, or no such file, naming the kit and `name`).
absl::StatusOr<std::string> ReadFileFromKit(const KitRead& read);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_KIT_ARCHIVE_H_
