// Release files an operator uploaded to this agent (Fleet.UploadArtifact),
// held in <state_dir>/uploads/<sha256>/<name> until the agents have
// fetched them (Fleet.FetchArtifact). Chunks are checked by the pure rules
// of core/artifact_upload.h; an upload becomes visible only whole: it is
// received into a temp file of its own, fsynced, hashed and renamed into
// place, so a refused or broken stream leaves nothing behind.
// At most UploadLimits::max_streams writers exist at once (Begin refuses
// more): each holds a server thread and an open temp file.
// Thread-safe: each Writer is one stream's; Find is a pure lookup; Prune
// removes only what is older than a writer could be using, and runs alone:
// never during a Commit, nor while a HoldUploads lock is held.
#ifndef KMSFLEET_CLUSTER_UPLOAD_STORE_H_
#define KMSFLEET_CLUSTER_UPLOAD_STORE_H_

#include "kmsfleet/cluster/layer.h"  // fails outside the cluster layer

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/node/fs_util.h"
#include "kmsfleet/v1/fleet.pb.h"

namespace kmsfleet {

// Free space an upload may not take: the agent's journals and election
// state live on the same filesystem, and a full disk would stop them.
inline constexpr uint64_t kUploadFreeSpaceReserveBytes = uint64_t{256} << 20;

// How long an upload is kept for the plan it was sent for: older ones are
// removed when a new upload arrives while no plan is under way.
inline constexpr std::chrono::hours kUploadKeepFor{1};

class UploadStore {
 public:
  // `state_dir`: the agent's; uploads live in its uploads/ directory.
  // `reserve_bytes`: free space every write must leave there.
  // `limits`: how many uploads at once; the idle bound is its callers'.
  explicit UploadStore(std::string state_dir,
                       uint64_t reserve_bytes = kUploadFreeSpaceReserveBytes,
                       UploadLimits limits = {});

  // One upload being received. Destroying a writer that was not committed
  // removes its temp file; destroying any frees its slot. A writer must not
  // outlive its store.
  class Writer {
   public:
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    // Checks `chunk` (AcceptUploadChunk) and appends its data. Errors as
    // AcceptUploadChunk; ARTIFACT_IO when the write fails or would leave
    // less than the reserve free.
    absl::Status Append(const v1::ArtifactChunk& chunk);
    // Checks the whole (FinishUpload against `declared_sha256`), then
    // moves it to uploads/<sha256>/<name>; `node` names this agent in the
    // returned source. On any error nothing is stored. Waits for a running
    // Prune, and keeps the next one waiting until it returns.
    absl::StatusOr<v1::ArtifactRef> Commit(std::string_view declared_sha256,
                                           const std::string& node);
    // What the chunks appended so far said: the file's name, how much.
    const UploadProgress& progress() const { return progress_; }

   private:
    friend class UploadStore;  // only Begin makes one: it holds a slot
    Writer(const UploadStore& store, std::string temp, ScopedFd fd);
    absl::Status CheckRoomFor(size_t bytes) const;

    const UploadStore& store_;
    std::string temp_;
    ScopedFd fd_;
    UploadProgress progress_;
    bool committed_ = false;
  };

  // Starts an upload (creating uploads/ mode 0700). Errors: ARTIFACT_IO;
  // ResourceExhausted UPLOAD_BUSY while max_streams writers exist.
  absl::StatusOr<std::unique_ptr<Writer>> Begin() const;
  const UploadLimits& limits() const { return limits_; }

  // The path of the held upload `sha256`/`name` (a regular file, no
  // symlink). Errors: InvalidArgument UPLOAD_BAD_NAME for a malformed
  // digest or name; NotFound UPLOAD_NOT_FOUND when it is not held.
  absl::StatusOr<std::string> Find(std::string_view sha256, std::string_view name) const;

  // While the returned lock is held, Prune waits, so an upload found
  // meanwhile (Find) stays. A plan's start holds it from its check that the
  // uploads it names are here until the plan is committed, from when
  // Prune's `may_prune` sees the plan. Any number may be held at once. A
  // holder must not call Prune or Commit: it would wait for itself.
  [[nodiscard]] std::shared_lock<std::shared_mutex> HoldUploads() const;

  // Removes every upload (uploads/<sha256>/) and leftover temp file last
  // changed before `cutoff`, except the upload `keep_sha256`. Returns how
  // many were removed; what could not be removed is named in `errors`.
  // Runs alone: it waits for every Commit and HoldUploads lock under way,
  // then asks `may_prune` (when set) with none able to start, and removes
  // nothing when it answers false.
  int Prune(std::chrono::system_clock::time_point cutoff, std::string_view keep_sha256,
            std::vector<std::string>& errors,
            const std::function<bool()>& may_prune = nullptr) const;

  const std::string& dir() const { return dir_; }

 private:
  void EndStream() const;

  std::string state_dir_, dir_;
  uint64_t reserve_bytes_;
  UploadLimits limits_;
  mutable std::mutex streams_mu_;
  mutable int streams_ = 0;  // writers that exist, under streams_mu_
  // Shared by each Commit and HoldUploads, exclusive for Prune: see there.
  mutable std::shared_mutex prune_mu_;
};

}  // namespace kmsfleet

#endif  // KMSFLEET_CLUSTER_UPLOAD_STORE_H_
