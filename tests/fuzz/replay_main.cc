// The driver of a fuzz target built without libFuzzer (gcc, the release
// preset): runs LLVMFuzzerTestOneInput on every file named on the command
// line, or in a directory named there, so that every CI run replays the
// checked-in corpus and a regression on a known input fails the build's
// tests. Inputs are read whole up to 4 MiB, like libFuzzer's -max_len cap.
//
// With --linear first, it checks instead that no input takes more than
// linear time: from every corpus file it builds inputs from 16 KiB to
// 1 MiB (the file repeated, and its longest line repeated) and times the
// target on each. Eight times the bytes must take well under the 64 times
// a quadratic parser would need. Times below a floor are noise, not
// evidence, and pass.
#include <malloc.h>

#include <algorithm>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr std::uintmax_t kMaxInputBytes = 4u << 20;

std::vector<std::filesystem::path> Inputs(int argc, char** argv, int first) {
  std::vector<std::filesystem::path> out;
  for (int i = first; i < argc; ++i) {
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

std::string ReadInput(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// `unit` repeated up to `size` bytes (cut at the end).
std::string RepeatTo(const std::string& unit, size_t size) {
  std::string out;
  out.reserve(size);
  while (out.size() < size) out.append(unit, 0, std::min(unit.size(), size - out.size()));
  return out;
}

std::string LongestLine(const std::string& data) {
  std::string best;
  size_t start = 0;
  while (start < data.size()) {
    size_t end = data.find('\n', start);
    end = end == std::string::npos ? data.size() : end + 1;
    if (end - start > best.size()) best = data.substr(start, end - start);
    start = end;
  }
  return best;
}

double ThreadCpuMs() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

// The fastest of three runs, in CPU milliseconds of this thread: time the
// machine spent on other work is not counted against the parser.
double BestMs(const std::string& data) {
  double best = 1e18;
  for (int i = 0; i < 3; ++i) {
    const double t0 = ThreadCpuMs();
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    best = std::min(best, ThreadCpuMs() - t0);
  }
  return best;
}

// Sizes compared, eight times apart: many parsers refuse inputs above a
// bound below 1 MiB, so the smaller pairs test them below their bound.
constexpr std::pair<size_t, size_t> kSizePairs[] = {
    {16u << 10, 128u << 10}, {64u << 10, 512u << 10}, {128u << 10, 1u << 20}};
// Linear is 8x, n log n about 9x, quadratic 64x; caches and the
// allocator make linear code look worse than 8x, never 32x.
constexpr double kMaxGrowth = 32;
// Below this an input is plainly not slow, whatever the ratio says.
constexpr double kNoiseFloorMs = 20;

// Fails (returns false) if `unit` grown from small to large takes more
// than kMaxGrowth times as long; `slowest_ms` keeps the largest time seen.
bool GrowsLinearly(const std::filesystem::path& p, const std::string& unit,
                   double& slowest_ms) {
  bool ok = true;
  for (const auto& [small, large] : kSizePairs) {
    const double small_ms = BestMs(RepeatTo(unit, small));
    const double large_ms = BestMs(RepeatTo(unit, large));
    slowest_ms = std::max(slowest_ms, large_ms);
    const double growth = large_ms / std::max(small_ms, 0.001);
    if (large_ms >= kNoiseFloorMs && growth > kMaxGrowth) {
      std::fprintf(stderr, "%s repeated to %zu KiB took %.1f ms, %.1fx the time of %zu KiB: "
                   "worse than linear\n", p.c_str(), large >> 10, large_ms, growth, small >> 10);
      ok = false;
    }
  }
  return ok;
}

int CheckLinear(const std::vector<std::filesystem::path>& inputs) {
  // Memory the parser frees stays mapped for the next run. Otherwise glibc
  // hands every buffer over 128 KiB back to the kernel, each run of a large
  // input pays a page fault per fresh 4 KiB page again, and on a VM where
  // a fault is slow that alone made a linear parser look 50 times slower
  // at 8 times the size. First touches are the kernel's cost, not the
  // parser's: the best of three runs (BestMs) now measures the parser.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  int failures = 0;
  double slowest_ms = 0;
  for (const std::filesystem::path& p : inputs) {
    const std::string data = ReadInput(p);
    for (const std::string& unit : {data, LongestLine(data)}) {
      if (!unit.empty() && !GrowsLinearly(p, unit, slowest_ms)) ++failures;
    }
  }
  std::printf("%zu inputs grown to 1 MiB; slowest %.1f ms; %d worse than linear\n",
              inputs.size(), slowest_ms, failures);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool linear = argc > 1 && std::string(argv[1]) == "--linear";
  std::vector<std::filesystem::path> inputs = Inputs(argc, argv, linear ? 2 : 1);
  if (inputs.empty()) {
    std::fprintf(stderr, "%s: no inputs given\n", argv[0]);
    return 2;
  }
  if (linear) return CheckLinear(inputs);
  for (const std::filesystem::path& p : inputs) {
    if (std::filesystem::file_size(p) > kMaxInputBytes) {
      std::fprintf(stderr, "%s: %s is over 4 MiB\n", argv[0], p.c_str());
      return 2;
    }
    std::string data = ReadInput(p);
    // A failed property traps: the name printed last is the culprit.
    std::fprintf(stderr, "replaying %s\n", p.c_str());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  std::printf("%zu inputs replayed, no property failed\n", inputs.size());
  return 0;
}
