#include "kmsfleet/node/cri_client.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "k8s/cri/runtime/v1/api.grpc.pb.h"
#include "kmsfleet/core/image_ref.h"
#include "kmsfleet/core/reasons.h"
#include "kmsfleet/core/status.h"
#include "kmsfleet/core/status_macros.h"

namespace kmsfleet {
namespace {

namespace cri = ::runtime::v1;

CriContainerState FromCri(cri::ContainerState state) {
  switch (state) {
    case cri::CONTAINER_CREATED: return CriContainerState::kCreated;
    case cri::CONTAINER_RUNNING: return CriContainerState::kRunning;
    case cri::CONTAINER_EXITED: return CriContainerState::kExited;
    default: return CriContainerState::kUnknown;
  }
}

std::string LabelOf(const google::protobuf::Map<std::string, std::string>& labels,
                    const std::string& key) {
  auto it = labels.find(key);
  return it == labels.end() ? "" : it->second;
}

// The digest of a digested reference, or "" for anything else (an image
// id, a tag): only a digest reference says which manifest runs.
std::string DigestOf(const std::string& image_ref) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(image_ref, "image_ref");
  return ref.ok() ? ref->digest : "";
}

CriImage FromCri(const cri::Image& image) {
  CriImage out;
  out.id = image.id();
  out.repo_digests.assign(image.repo_digests().begin(), image.repo_digests().end());
  out.repo_tags.assign(image.repo_tags().begin(), image.repo_tags().end());
  out.size_bytes = image.size();
  return out;
}

CriContainer FromCri(const cri::Container& c) {
  CriContainer out;
  out.id = c.id();
  out.pod_name = LabelOf(c.labels(), kPodNameLabel);
  out.pod_namespace = LabelOf(c.labels(), kPodNamespaceLabel);
  out.container_name = c.metadata().name();
  out.attempt = c.metadata().attempt();
  out.state = FromCri(c.state());
  out.image = c.image().image();
  out.image_ref = c.image_ref();
  out.image_digest = DigestOf(out.image_ref);
  out.image_id = c.image_id();
  out.created_at_ns = c.created_at();
  return out;
}

CriContainer FromCri(const cri::ContainerStatus& s) {
  CriContainer out;
  out.id = s.id();
  out.pod_name = LabelOf(s.labels(), kPodNameLabel);
  out.pod_namespace = LabelOf(s.labels(), kPodNamespaceLabel);
  out.container_name = s.metadata().name();
  out.attempt = s.metadata().attempt();
  out.state = FromCri(s.state());
  out.image = s.image().image();
  out.image_ref = s.image_ref();
  out.image_digest = DigestOf(out.image_ref);
  out.image_id = s.image_id();
  out.created_at_ns = s.created_at();
  out.started_at_ns = s.started_at();
  return out;
}

// `pinned` as repo digests are compared: normalised when it is a digest
// reference, else as written (an image id matches only itself).
std::string ComparableRepoDigest(std::string_view pinned) {
  absl::StatusOr<ImageRef> ref = ParseImageRef(pinned, "repo digest");
  return ref.ok() ? ref->NormalizedPinned() : std::string(pinned);
}

// Whether `repo_digests` lists `pinned`, both sides normalised: containerd
// lists docker.io/library/busybox@... for a pull of busybox@..., the same
// image, and a runtime may list a short name itself.
bool ListsRepoDigest(const std::vector<std::string>& repo_digests, std::string_view pinned) {
  const std::string wanted = ComparableRepoDigest(pinned);
  return std::any_of(repo_digests.begin(), repo_digests.end(), [&](const std::string& listed) {
    return ComparableRepoDigest(listed) == wanted;
  });
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out.empty() ? "(none)" : out;
}

class CriClient final : public ContainerRuntime {
 public:
  explicit CriClient(CriOptions options) : options_(std::move(options)) {}

  // kmsfleet::ContainerRuntime
  absl::StatusOr<CriImage> PullImage(std::string_view image) override;
  absl::StatusOr<std::optional<CriImage>> ImageStatus(std::string_view image) override;
  absl::StatusOr<std::vector<CriContainer>> ListContainers(
      const PodContainerSelector& selector) override;
  absl::StatusOr<CriContainer> ContainerStatus(std::string_view container_id) override;

 private:
  // "CRI <call> on <socket>: ", the start of every error message.
  std::string Where(std::string_view call) const;
  absl::Status Error(absl::StatusCode code, std::string_view reason, std::string_view call,
                     const std::string& problem) const;
  // Fails fast, naming the socket, when there is nothing to dial.
  absl::Status CheckSocket(std::string_view call) const;
  std::shared_ptr<grpc::Channel> Dial() const;
  absl::Status FromGrpc(std::string_view call, const grpc::Status& status,
                        std::chrono::milliseconds timeout) const;
  void SetDeadline(grpc::ClientContext& context, std::chrono::milliseconds timeout) const {
    context.set_deadline(std::chrono::system_clock::now() + timeout);
  }
  absl::StatusOr<std::optional<CriImage>> QueryImage(const ImageRef& ref);

  const CriOptions options_;
};

std::string CriClient::Where(std::string_view call) const {
  return "CRI " + std::string(call) + " on " + options_.socket_path + ": ";
}

absl::Status CriClient::Error(absl::StatusCode code, std::string_view reason,
                              std::string_view call, const std::string& problem) const {
  return MakeError(code, reason, Where(call) + problem,
                   {{"socket", options_.socket_path}, {"call", std::string(call)}});
}

absl::Status CriClient::CheckSocket(std::string_view call) const {
  struct stat info {};
  if (::stat(options_.socket_path.c_str(), &info) != 0) {
    return Error(absl::StatusCode::kUnavailable, reason::kCriUnreachable, call,
                 std::string("cannot use the socket: ") + std::strerror(errno) +
                     " (is the container runtime running, and is the path right?)");
  }
  if (!S_ISSOCK(info.st_mode)) {
    return Error(absl::StatusCode::kUnavailable, reason::kCriUnreachable, call,
                 "the path is not a unix socket");
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> CriClient::Dial() const {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxCriMessageBytes);
  return grpc::CreateCustomChannel("unix:" + options_.socket_path,
                                   grpc::InsecureChannelCredentials(), args);
}

absl::Status CriClient::FromGrpc(std::string_view call, const grpc::Status& status,
                                 std::chrono::milliseconds timeout) const {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return absl::OkStatus();
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Error(absl::StatusCode::kDeadlineExceeded, reason::kTimeout, call,
                   "no answer within " + std::to_string(timeout.count()) + " ms");
    case grpc::StatusCode::UNAVAILABLE:
      return Error(absl::StatusCode::kUnavailable, reason::kCriUnreachable, call,
                   "the runtime does not answer: " + status.error_message());
    case grpc::StatusCode::NOT_FOUND:
      return Error(absl::StatusCode::kNotFound, reason::kCriCallFailed, call,
                   "not found: " + status.error_message());
    default:
      return Error(absl::StatusCode::kUnavailable, reason::kCriCallFailed, call,
                   "the runtime answered " + std::to_string(status.error_code()) + ": " +
                       status.error_message());
  }
}

absl::StatusOr<std::optional<CriImage>> CriClient::QueryImage(const ImageRef& ref) {
  KMSFLEET_RETURN_IF_ERROR(CheckSocket("ImageStatus"));
  auto stub = cri::ImageService::NewStub(Dial());
  grpc::ClientContext context;
  SetDeadline(context, options_.call_timeout);
  cri::ImageStatusRequest request;
  request.mutable_image()->set_image(ref.ToString());
  cri::ImageStatusResponse response;
  KMSFLEET_RETURN_IF_ERROR(FromGrpc(
      "ImageStatus", stub->ImageStatus(&context, request, &response), options_.call_timeout));
  if (!response.has_image()) return std::nullopt;
  return FromCri(response.image());
}

absl::StatusOr<std::optional<CriImage>> CriClient::ImageStatus(std::string_view image) {
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef ref, ParseImageRef(image, "CRI ImageStatus image"));
  return QueryImage(ref);
}

absl::StatusOr<CriImage> CriClient::PullImage(std::string_view image) {
  // A tag-only or malformed reference never reaches the runtime.
  KMSFLEET_ASSIGN_OR_RETURN(ImageRef ref, ParseImageRef(image, "CRI PullImage image"));
  KMSFLEET_RETURN_IF_ERROR(CheckSocket("PullImage"));
  auto stub = cri::ImageService::NewStub(Dial());
  grpc::ClientContext context;
  SetDeadline(context, options_.pull_timeout);
  cri::PullImageRequest request;
  request.mutable_image()->set_image(ref.ToString());
  cri::PullImageResponse response;
  grpc::Status pulled = stub->PullImage(&context, request, &response);
  if (!pulled.ok() && pulled.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED &&
      pulled.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return MakeError(absl::StatusCode::kUnavailable, reason::kImagePullFailed,
                     Where("PullImage") + "pulling " + ref.ToString() +
                         " failed: " + pulled.error_message(),
                     {{"socket", options_.socket_path}, {"call", "PullImage"},
                      {"image", ref.ToString()}});
  }
  KMSFLEET_RETURN_IF_ERROR(FromGrpc("PullImage", pulled, options_.pull_timeout));
  // The pull's answer is no manifest digest (containerd answers the image
  // id), so the digest is read back from the image the runtime now holds.
  KMSFLEET_ASSIGN_OR_RETURN(std::optional<CriImage> held, QueryImage(ref));
  auto mismatch = [&](const std::string& problem, const std::string& observed) {
    return MakeError(absl::StatusCode::kFailedPrecondition, reason::kImageDigestMismatch,
                     Where("PullImage") + "pulled " + ref.ToString() + " but " + problem +
                         "; the image is not used",
                     {{"socket", options_.socket_path}, {"call", "PullImage"},
                      {"image", ref.ToString()}, {"expected_digest", ref.digest},
                      {"observed", observed}});
  };
  if (!held.has_value()) {
    return mismatch("the runtime does not list it afterwards", "(absent)");
  }
  if (!ListsRepoDigest(held->repo_digests, ref.Pinned())) {
    return mismatch("the runtime holds it with digests " + Join(held->repo_digests),
                    Join(held->repo_digests));
  }
  // containerd answers the image id, CRI-O its first repo digest
  // (repo@sha256:...): either names what the runtime holds.
  const std::string& answered = response.image_ref();
  if (!answered.empty() && answered != held->id &&
      !ListsRepoDigest(held->repo_digests, answered)) {
    return mismatch("the pull answered image " + response.image_ref() +
                        " while the runtime lists " + held->id,
                    response.image_ref());
  }
  return *std::move(held);
}

absl::StatusOr<std::vector<CriContainer>> CriClient::ListContainers(
    const PodContainerSelector& selector) {
  KMSFLEET_RETURN_IF_ERROR(CheckSocket("ListContainers"));
  auto stub = cri::RuntimeService::NewStub(Dial());
  grpc::ClientContext context;
  SetDeadline(context, options_.call_timeout);
  cri::ListContainersRequest request;
  auto& labels = *request.mutable_filter()->mutable_label_selector();
  labels[kPodNameLabel] = selector.pod_name;
  labels[kPodNamespaceLabel] = selector.pod_namespace;
  if (!selector.container_name.empty()) {
    labels[kContainerNameLabel] = selector.container_name;
  }
  cri::ListContainersResponse response;
  KMSFLEET_RETURN_IF_ERROR(FromGrpc("ListContainers",
                                    stub->ListContainers(&context, request, &response),
                                    options_.call_timeout));
  std::vector<CriContainer> out;
  for (const cri::Container& c : response.containers()) {
    // A runtime that ignored the filter must not hand us another pod.
    bool matches = std::all_of(labels.begin(), labels.end(), [&](const auto& label) {
      return LabelOf(c.labels(), label.first) == label.second;
    });
    if (matches) out.push_back(FromCri(c));
  }
  std::sort(out.begin(), out.end(), [](const CriContainer& a, const CriContainer& b) {
    return a.created_at_ns != b.created_at_ns ? a.created_at_ns > b.created_at_ns
                                              : a.id < b.id;
  });
  return out;
}

absl::StatusOr<CriContainer> CriClient::ContainerStatus(std::string_view container_id) {
  KMSFLEET_RETURN_IF_ERROR(CheckSocket("ContainerStatus"));
  auto stub = cri::RuntimeService::NewStub(Dial());
  grpc::ClientContext context;
  SetDeadline(context, options_.call_timeout);
  cri::ContainerStatusRequest request;
  request.set_container_id(std::string(container_id));
  cri::ContainerStatusResponse response;
  grpc::Status status = stub->ContainerStatus(&context, request, &response);
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return MakeError(absl::StatusCode::kNotFound, reason::kCriContainerNotFound,
                     Where("ContainerStatus") + "no container " + std::string(container_id),
                     {{"socket", options_.socket_path}, {"call", "ContainerStatus"},
                      {"container_id", std::string(container_id)}});
  }
  KMSFLEET_RETURN_IF_ERROR(FromGrpc("ContainerStatus", status, options_.call_timeout));
  if (!response.has_status()) {
    return Error(absl::StatusCode::kUnavailable, reason::kCriCallFailed, "ContainerStatus",
                 "the answer for " + std::string(container_id) + " has no status");
  }
  return FromCri(response.status());
}

}  // namespace

std::string_view CriStateName(CriContainerState state) {
  switch (state) {
    case CriContainerState::kCreated: return "CONTAINER_CREATED";
    case CriContainerState::kRunning: return "CONTAINER_RUNNING";
    case CriContainerState::kExited: return "CONTAINER_EXITED";
    case CriContainerState::kUnknown: return "CONTAINER_UNKNOWN";
  }
  return "CONTAINER_UNKNOWN";
}

std::unique_ptr<ContainerRuntime> NewCriClient(CriOptions options) {
  return std::make_unique<CriClient>(std::move(options));
}

}  // namespace kmsfleet
