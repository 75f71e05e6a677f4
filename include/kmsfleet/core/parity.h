// key_id-hash parity across nodes (architecture.md §5, "Parity"): every node
// must report the same single key_id hash. Pure.
// Thread-safe: free functions over values.
#ifndef KMSFLEET_CORE_PARITY_H_
#define KMSFLEET_CORE_PARITY_H_

#include <string>
#include <string_view>
#include <vector>

namespace kmsfleet {

enum class Parity {
  kMatch,     // this node's hash is the fleet's majority hash
  kMismatch,  // a majority hash exists and this node reports another one
  kSplit,     // no hash is held by more nodes than every other: no majority
  kUnknown,   // this node reported no hash
};

// "match", "MISMATCH", "split", "unknown": shared by CLI, logs and metrics.
std::string_view ParityName(Parity parity);

struct ParityResult {
  // The hash held by strictly more nodes than any other hash; empty when
  // there is none (no hashes, or a tie).
  std::string majority_hash;
  std::vector<Parity> per_node;  // same order as the input
  // True when every node reported the same, non-empty hash.
  bool all_match = false;
};

// Computes parity over one hash per node ("" when a node has none). A single
// node with a hash matches itself.
ParityResult ComputeParity(const std::vector<std::string>& hashes);

}  // namespace kmsfleet

#endif  // KMSFLEET_CORE_PARITY_H_
