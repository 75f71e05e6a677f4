// Stage sources an agent fetches from the coordinator before staging
// (issue 9, "Artifacts reach every node"): every coordinator:// source of
// a StageRequest is fetched (by the cluster's UploadFetcher, handed in as
// a callback so the node layer never sees the cluster) into a private
// directory under <state_dir>/artifacts/, and the request is rewritten to
// name those local files. The executor's Stage then verifies them exactly
// like files an operator placed on the node: signature and checksum with
// this node's own keys.
// Thread-compatible: one FetchedSources per Stage call.
#ifndef KMSFLEET_DAEMON_FETCHED_SOURCES_H_
#define KMSFLEET_DAEMON_FETCHED_SOURCES_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kmsfleet/core/artifact_upload.h"
#include "kmsfleet/node/artifacts.h"

namespace kmsfleet {

// Fetches the coordinator:// `source` of `kind` into the new file `dest`
// by `deadline`, or until `stop` returns an error (UploadFetcher::Fetch).
using FetchDeadline = std::chrono::system_clock::time_point;
using FetchStop = std::function<absl::Status()>;
using FetchUpload =
    std::function<absl::Status(const std::string& source, UploadKind kind,
                               const std::string& dest, FetchDeadline deadline,
                               const FetchStop& stop)>;

class FetchedSources {
 public:
  // Fetches each coordinator:// source of `request` (into
  // <state_dir>/artifacts/.fetched-XXXXXX/<kind>/<name>, so the file keeps
  // the name checksums.txt lists); other sources are left as they are.
  // Errors: SOURCE_NOT_ALLOWED when a source is coordinator:// but `fetch`
  // is empty (this listener belongs to no cluster member) or malformed;
  // the fetch's own error otherwise. Nothing is left on disk on error.
  // `deadline`: the Stage call's, passed to every fetch.
  static absl::StatusOr<std::unique_ptr<FetchedSources>> Fetch(
      const StageRequest& request, const std::string& state_dir, const FetchUpload& fetch,
      FetchDeadline deadline = FetchDeadline::max(), const FetchStop& stop = {});
  ~FetchedSources();  // removes the fetched files
  FetchedSources(const FetchedSources&) = delete;
  FetchedSources& operator=(const FetchedSources&) = delete;

  // The request with local paths in place of coordinator:// sources.
  const StageRequest& request() const { return request_; }

  // `s` with every fetched file's path in its message replaced by the
  // coordinator:// source it came from (the temp file is gone by the time
  // an operator reads it).
  absl::Status NameSources(const absl::Status& s) const;

 private:
  FetchedSources() = default;
  absl::Status FetchOne(std::string& source, UploadKind kind, const FetchUpload& fetch,
                        FetchDeadline deadline, const FetchStop& stop);

  StageRequest request_;
  std::vector<std::pair<std::string, std::string>> fetched_;  // local path, source
  std::string dir_;                                           // "" when nothing was fetched
};

}  // namespace kmsfleet

#endif  // KMSFLEET_DAEMON_FETCHED_SOURCES_H_
