#include "kmsfleet/cluster/upload_fetch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "kmsfleet/cluster/peer_tls.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"
#include "kmsfleet/node/fs_util.h"

namespace kmsfleet {
namespace {

// Unavailable: asked again (the plan re-sends the Stage); FailedPrecondition
// for what asking again cannot change, so the plan halts and says why.
absl::Status FetchFailed(const CoordinatorSource& source, std::string_view why,
                         absl::StatusCode code = absl::StatusCode::kUnavailable) {
  return MakeError(code, reason::kArtifactFetchFailed,
                   "cannot fetch " + FormatCoordinatorSource(source) + " from " + source.node +
                       ": " + std::string(why),
                   {{"node", source.node}, {"name", source.name}});
}

// The bytes received must hash to the digest the source names.
absl::Status CheckFetchedDigest(const CoordinatorSource& source, int fd, const std::string& dest) {
  KMSFLEET_ASSIGN_OR_RETURN(std::string actual, Sha256File(dest));
  if (actual == source.sha256) return absl::OkStatus();
  struct stat st {};
  const std::string size = ::fstat(fd, &st) == 0 ? std::to_string(st.st_size) : "?";
  return MakeError(absl::StatusCode::kFailedPrecondition, reason::kUploadDigestMismatch,
                   "fetch of " + FormatCoordinatorSource(source) + " from " + source.node +
                       " refused: the " + size + " bytes received hash to " + actual +
                       ", the source names " + source.sha256,
                   {{"node", source.node}, {"name", source.name},
                    {"expected", source.sha256}, {"actual", actual}});
}

absl::Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return DiskWriteError("cannot write", path, n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

UploadFetcher::UploadFetcher(const std::map<std::string, std::string>& addresses,
                             std::shared_ptr<grpc::ChannelCredentials> credentials,
                             std::chrono::milliseconds timeout, uint64_t reserve_bytes)
    : timeout_(timeout), reserve_bytes_(reserve_bytes) {
  for (const auto& [node, address] : addresses) {
    stubs_[node] = v1::Fleet::NewStub(
        grpc::CreateCustomChannel(address, credentials, PeerChannelArguments(node, PeerKeepalive{})));
  }
}

absl::Status UploadFetcher::Fetch(const std::string& text, UploadKind kind,
                                  const std::string& dest, Deadline deadline, const Stop& stop) {
  absl::StatusOr<CoordinatorSource> source = ParseCoordinatorSource(text);
  if (!source.ok()) return source.status();
  int fd = ::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return DiskWriteError("cannot create", dest, errno);
  ScopedFd closer(fd);
  absl::Status s = Receive(*source, kind, fd, dest, deadline, stop);
  if (s.ok() && ::fsync(fd) != 0) s = DiskWriteError("cannot fsync", dest, errno);
  if (s.ok()) s = CheckFetchedDigest(*source, fd, dest);
  if (!s.ok()) ::unlink(dest.c_str());
  return s;
}

namespace {

// Cancels `context` once `stop` says so (checked every 100 ms) until it
// is destroyed; what `stop` said is kept. A read blocked on a holder that
// sends nothing ends too, not only one between chunks.
class StopWatch {
 public:
  StopWatch(grpc::ClientContext& context, const UploadFetcher::Stop& stop) {
    if (!stop) return;
    thread_ = std::thread([this, &context, stop] {
      std::unique_lock lock(mu_);
      while (!done_) {
        if (absl::Status s = stop(); !s.ok()) {
          said_ = s;
          context.TryCancel();
          return;
        }
        cv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return done_; });
      }
    });
  }
  ~StopWatch() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  absl::Status said() {
    std::lock_guard lock(mu_);
    return said_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  absl::Status said_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace

absl::Status UploadFetcher::Receive(const CoordinatorSource& source, UploadKind kind, int fd,
                                    const std::string& dest, Deadline deadline,
                                    const Stop& stop) {
  auto stub = stubs_.find(source.node);
  if (stub == stubs_.end()) {
    return FetchFailed(source,
                       "no cluster address is configured for it (a node absent from peers)",
                       absl::StatusCode::kFailedPrecondition);
  }
  grpc::ClientContext context;
  context.set_deadline(std::min(deadline, std::chrono::system_clock::now() + timeout_));
  v1::FetchArtifactRequest request;
  request.set_sha256(source.sha256);
  request.set_name(source.name);
  auto reader = stub->second->FetchArtifact(&context, request);
  StopWatch watch(context, stop);
  UploadProgress progress;
  v1::ArtifactChunk chunk;
  absl::Status s;
  while (s.ok() && reader->Read(&chunk)) {
    // The node sends no kind: this agent bounds the file by the field it
    // asked for, whatever the node claims.
    const std::string& name = chunk.name().empty() ? source.name : chunk.name();
    s = name != source.name ? FetchFailed(source, "it answered with the file " + chunk.name(),
                                 absl::StatusCode::kFailedPrecondition)
                            : AcceptUploadChunk(progress, name, UploadKindName(kind),
                                                chunk.offset(), chunk.data().size());
    if (s.ok()) s = CheckFreeSpace(DirOf(dest), chunk.data().size(), reserve_bytes_);
    if (s.ok()) s = WriteAll(fd, chunk.data(), dest);
  }
  if (!s.ok()) {
    context.TryCancel();
    reader->Finish().IgnoreError();
    return s;
  }
  grpc::Status end = reader->Finish();
  if (absl::Status stopped = watch.said(); !stopped.ok()) return stopped;
  if (!end.ok()) {
    absl::Status answer = FromGrpcStatus(end, source.node);
    if (ReasonOf(answer) == reason::kAgentUnreachable) {
      return FetchFailed(source, end.error_message());
    }
    // The holder's own refusal (UPLOAD_NOT_FOUND: "this agent holds no
    // upload ...") keeps its reason, said of the holder by name.
    return MakeError(answer.code(), ReasonOf(answer),
                     "fetching " + FormatCoordinatorSource(source) + ": " + source.node +
                         " answered: " + std::string(answer.message()),
                     {{"node", source.node}, {"name", source.name}});
  }
  return absl::OkStatus();
}

}  // namespace kmsfleet
