// Journals as files: <state_dir>/journal/<operation>.json.
#include "kmsfleet/node/journal_store.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

constexpr size_t kMaxJournalFileBytes = 256 << 10;
class FileJournalStore final : public JournalStore {
 public:
  FileJournalStore(std::string state_dir, size_t max_scanned)
      : state_dir_(std::move(state_dir)), dir_(state_dir_ + "/journal"),
        max_scanned_(max_scanned) {}

  // kmsfleet::JournalStore
  absl::Status Save(const SwapJournal& j) override {
    std::lock_guard<std::mutex> lock(mu_);
    KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(state_dir_, 0700));
    KMSFLEET_RETURN_IF_ERROR(EnsurePrivateDir(dir_, 0700));
    return WriteFileAtomic(Path(j.operation_id), SerializeJournal(j), 0600);
  }

  absl::StatusOr<SwapJournal> Load(const std::string& id) override {
    std::string path = Path(id);
    absl::StatusOr<std::string> text = ReadBoundedFile(path, kMaxJournalFileBytes);
    if (!text.ok() && absl::IsNotFound(text.status())) {
      return MakeError(absl::StatusCode::kNotFound, reason::kOperationNotFound,
                       "no operation " + id + " (" + path + ")",
                       {{"operation_id", id}});
    }
    if (!text.ok()) return text.status();
    return ParseJournal(*text, path);
  }

  absl::Status Remove(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string path = Path(id);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return DiskWriteError("remove", path, errno);
    return FsyncDir(dir_);
  }

  Scan LoadAll() override {
    Scan scan;
    DIR* d = opendir(dir_.c_str());
    if (d == nullptr) {
      if (errno != ENOENT) scan.unreadable.push_back(dir_ + ": " + std::strerror(errno));
      return scan;
    }
    size_t scanned = 0;
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.size() < 6 || name.substr(name.size() - 5) != ".json") continue;
      if (++scanned > max_scanned_) {
        // The rest is unread, an open or RollbackFailed one among them
        // maybe: say so, so the hand-off keeps the slot rather than
        // answering from part of the history.
        scan.unreadable.push_back(
            dir_ + ": more than " + std::to_string(max_scanned_) +
            " journals; the rest were not read. Move closed journals (\"open\": false) "
            "of past plans out of the directory, keeping the newest");
        break;
      }
      absl::StatusOr<SwapJournal> j = Load(name.substr(0, name.size() - 5));
      if (j.ok()) {
        scan.journals.push_back(*std::move(j));
      } else {
        scan.unreadable.push_back(dir_ + "/" + name + ": " + std::string(j.status().message()));
      }
    }
    closedir(d);
    return scan;
  }

 private:
  std::string Path(const std::string& id) const { return dir_ + "/" + id + ".json"; }

  std::string state_dir_, dir_;
  const size_t max_scanned_;
  std::mutex mu_;
};

}  // namespace

std::unique_ptr<JournalStore> NewFileJournalStore(std::string state_dir, size_t max_scanned) {
  return std::make_unique<FileJournalStore>(std::move(state_dir), max_scanned);
}

}  // namespace kmsfleet
