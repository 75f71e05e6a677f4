// A deliberately quadratic "parser": the replay driver's --linear check
// must call it worse than linear (ctest quadratic_selftest_linear, which
// passes only when the check fails). Without this the check could be
// unable to fail and nobody would notice.
#include <algorithm>
#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Every 1024th byte rescans everything before it: about size^2 / 2048 reads.
  volatile size_t sink = 0;
  for (size_t end = 0; end < size; end += 1024) {
    sink = sink + static_cast<size_t>(std::count(data, data + end, data[end]));
  }
  return 0;
}
