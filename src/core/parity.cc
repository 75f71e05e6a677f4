#include "kmsfleet/core/parity.h"

#include <map>

namespace kmsfleet {

std::string_view ParityName(Parity parity) {
  switch (parity) {
    case Parity::kMatch:
      return "match";
    case Parity::kMismatch:
      return "MISMATCH";
    case Parity::kSplit:
      return "split";
    case Parity::kUnknown:
      return "unknown";
  }
  return "unknown";
}

ParityResult ComputeParity(const std::vector<std::string>& hashes) {
  std::map<std::string, size_t> counts;
  for (const std::string& hash : hashes) {
    if (!hash.empty()) ++counts[hash];
  }
  ParityResult result;
  size_t best = 0;
  bool tie = false;
  for (const auto& [hash, count] : counts) {
    if (count > best) {
      best = count;
      result.majority_hash = hash;
      tie = false;
    } else if (count == best) {
      tie = true;
    }
  }
  if (tie) result.majority_hash.clear();
  for (const std::string& hash : hashes) {
    if (hash.empty()) {
      result.per_node.push_back(Parity::kUnknown);
    } else if (result.majority_hash.empty()) {
      result.per_node.push_back(Parity::kSplit);
    } else {
      result.per_node.push_back(hash == result.majority_hash ? Parity::kMatch
                                                             : Parity::kMismatch);
    }
  }
  result.all_match = !hashes.empty() && counts.size() == 1 &&
                     best == hashes.size();
  return result;
}

}  // namespace kmsfleet
