// kmsfleet_sha256_bench MODE FILE [DEST]: times the staging verification
// path on one file and prints "<hex digest> <seconds> <MB/s>".
//   hash: Sha256File (what FindStaged and PrepareTarget do)
//   copy: CopyFileAtomic to DEST, hashing while copying (what Stage does)
#include <chrono>
#include <cstdio>
#include <string>
#include <sys/stat.h>

#include "kmsfleet/node/fs_util.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s hash|copy FILE [DEST]\n", argv[0]);
    return 2;
  }
  std::string mode = argv[1], file = argv[2];
  struct stat st {};
  if (stat(file.c_str(), &st) != 0) return 2;
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::string> digest =
      mode == "copy" && argc > 3
          ? kmsfleet::CopyFileAtomic(file, argv[3], 0600, "", SIZE_MAX)
          : kmsfleet::Sha256File(file);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!digest.ok()) {
    std::fprintf(stderr, "%s\n", std::string(digest.status().message()).c_str());
    return 1;
  }
  std::printf("%s %.3f %.1f\n", digest->c_str(), secs,
              static_cast<double>(st.st_size) / 1e6 / secs);
  return 0;
}
