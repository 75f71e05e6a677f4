// The driver of a fuzz target built without libFuzzer (gcc, the release
// preset): runs LLVMFuzzerTestOneInput on every file named on the command
// line, or in a directory named there, so that every CI run replays the
// checked-in corpus and a regression on a known input fails the build's
// tests. Inputs are read whole up to 4 MiB, like libFuzzer's -max_len cap.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr std::uintmax_t kMaxInputBytes = 4u << 20;

std::vector<std::filesystem::path> Inputs(int argc, char** argv) {
  std::vector<std::filesystem::path> out;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path p(argv[i]);
    if (!std::filesystem::is_directory(p)) {
      out.push_back(p);
      continue;
    }
    for (const auto& e : std::filesystem::recursive_directory_iterator(p)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::filesystem::path> inputs = Inputs(argc, argv);
  if (inputs.empty()) {
    std::fprintf(stderr, "%s: no inputs given\n", argv[0]);
    return 2;
  }
  for (const std::filesystem::path& p : inputs) {
    if (std::filesystem::file_size(p) > kMaxInputBytes) {
      std::fprintf(stderr, "%s: %s is over 4 MiB\n", argv[0], p.c_str());
      return 2;
    }
    std::ifstream in(p, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // A failed property traps: the name printed last is the culprit.
    std::fprintf(stderr, "replaying %s\n", p.c_str());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  std::printf("%zu inputs replayed, no property failed\n", inputs.size());
  return 0;
}
