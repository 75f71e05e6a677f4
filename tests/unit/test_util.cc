#include "test_util.h"

#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace kmsfleet::testing {

std::string ReadTestData(std::string_view name) {
  const std::string path =
      std::string(KMSFLEET_TESTDATA_DIR) + "/" + std::string(name);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read fixture " << path;
    return "";
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

}  // namespace kmsfleet::testing
