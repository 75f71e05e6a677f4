// Where the executor's journals live (architecture.md §4): one record per
// operation, written durably before each phase runs.
// Thread-safe: implementations serialise their own writers.
#ifndef KMSFLEET_NODE_JOURNAL_STORE_H_
#define KMSFLEET_NODE_JOURNAL_STORE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/swap_machine.h"

namespace kmsfleet {

class JournalStore {
 public:
  virtual ~JournalStore() = default;
  // Durably replaces the record of `journal.operation_id`.
  virtual absl::Status Save(const SwapJournal& journal) = 0;
  // Errors: NotFound, OPERATION_NOT_FOUND; DataLoss, JOURNAL_CORRUPT
  // naming the record.
  virtual absl::StatusOr<SwapJournal> Load(const std::string& operation_id) = 0;
  // Removes the record of `operation_id` (none is no error), durably when
  // OK. Only for a record whose operation never started.
  virtual absl::Status Remove(const std::string& operation_id) = 0;
  // Every record, and the ones that could not be read (neither the hand-off
  // query nor crash recovery may take an unreadable journal for "never
  // started").
  struct Scan {
    std::vector<SwapJournal> journals;
    std::vector<std::string> unreadable;  // path and why
  };
  virtual Scan LoadAll() = 0;
};

// More journals than this in the directory are not read by one scan (a
// scan reads each, up to 256 KiB): the scan then reports the rest as
// unreadable, and the hand-off query keeps the slot until an operator
// moves closed journals of past plans away.
inline constexpr size_t kMaxJournalsScanned = 10000;

// `<state_dir>/journal/<operation>.json`, written with fsync + rename, the
// directories created 0700 with their parent fsynced.
std::unique_ptr<JournalStore> NewFileJournalStore(std::string state_dir,
                                                  size_t max_scanned = kMaxJournalsScanned);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_JOURNAL_STORE_H_
