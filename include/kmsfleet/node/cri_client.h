// The node's container runtime through the CRI (issue 10; reference §8.7):
// stage a provider image by digest and find the static pod's container and
// the image it runs. ContainerRuntime is the seam the executor depends on;
// NewCriClient() speaks CRI runtime.v1 gRPC over the runtime's unix socket
// (proto/k8s/cri/runtime/v1/api.proto).
// Thread-safe: the gRPC client opens a fresh channel per call, so a
// restarted runtime is seen at once and no call waits behind a reconnect
// backoff.
#ifndef KMSFLEET_NODE_CRI_CLIENT_H_
#define KMSFLEET_NODE_CRI_CLIENT_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kmsfleet {

// containerd's CRI socket, the default of kubeadm clusters.
inline constexpr char kDefaultCriSocket[] = "/run/containerd/containerd.sock";

// Largest CRI response accepted. The calls ask about one image or one
// pod's containers, a few KiB; anything far larger is refused, not buffered.
inline constexpr int kMaxCriMessageBytes = 4 << 20;

// The labels the kubelet puts on every container (and fake-cri honours).
inline constexpr char kPodNameLabel[] = "io.kubernetes.pod.name";
inline constexpr char kPodNamespaceLabel[] = "io.kubernetes.pod.namespace";
inline constexpr char kContainerNameLabel[] = "io.kubernetes.container.name";

struct CriOptions {
  std::string socket_path = kDefaultCriSocket;
  // Deadline of ImageStatus, ListContainers and ContainerStatus.
  std::chrono::milliseconds call_timeout{std::chrono::seconds(10)};
  // Deadline of PullImage, which downloads the image.
  std::chrono::milliseconds pull_timeout{std::chrono::minutes(5)};
};

// CRI ContainerState. Persisted nowhere; printed by CriStateName().
enum class CriContainerState { kCreated, kRunning, kExited, kUnknown };

// "CONTAINER_RUNNING" etc., the upstream enum names (as crictl prints them).
std::string_view CriStateName(CriContainerState state);

struct CriImage {
  std::string id;                         // the runtime's image id
  std::vector<std::string> repo_digests;  // "repo@sha256:<manifest digest>"
  std::vector<std::string> repo_tags;
  uint64_t size_bytes = 0;
};

// Which containers to list: all three labels must match; an empty
// container_name matches every container of the pod.
struct PodContainerSelector {
  std::string pod_name;
  std::string pod_namespace;
  std::string container_name;
};

struct CriContainer {
  std::string id;
  std::string pod_name;        // from the kubelet's labels
  std::string pod_namespace;
  std::string container_name;  // metadata.name
  uint32_t attempt = 0;        // restarts in this sandbox
  CriContainerState state = CriContainerState::kUnknown;
  // The image as the pod spec names it (CRI ImageSpec.image).
  std::string image;
  // The runtime's reference to the image in use. From ContainerStatus it is
  // the digested reference, "repo@sha256:<manifest digest>", on containerd
  // and the image id on CRI-O; from ListContainers it is often the image id.
  std::string image_ref;
  // "sha256:<hex>" when image_ref is a digest reference, else "". This is
  // what the swap compares with the requested digest.
  std::string image_digest;
  std::string image_id;
  int64_t created_at_ns = 0;
  int64_t started_at_ns = 0;   // ContainerStatus only; 0 when not started
};

// Every error names the socket and the CRI call in its message and in
// metadata (`socket`, `call`). Errors common to all calls:
//   Unavailable, CRI_UNREACHABLE: no socket at the path, or nothing answers;
//   DeadlineExceeded, TIMEOUT: no answer within the call's deadline;
//   Unavailable, CRI_CALL_FAILED: the runtime answered with an error (code
//     NotFound when it said NOT_FOUND), or with a response lacking what the
//     call promises or larger than kMaxCriMessageBytes.
class ContainerRuntime {
 public:
  virtual ~ContainerRuntime() = default;

  // Pulls `image`, which must be pinned by digest, then checks through
  // ImageStatus that the runtime now holds that very digest for that
  // repository (repo_digests lists ref.NormalizedPinned(), each entry
  // normalised too: containerd lists busybox as docker.io/library/busybox)
  // under the id the pull
  // answered. Returns the image. On a refusal nothing else is done: a wrong
  // image that was pulled stays in the runtime's store, unused.
  // Errors, besides the common ones:
  //   InvalidArgument, IMAGE_REF_NOT_PINNED / IMAGE_REF_MALFORMED: refused
  //     before any call;
  //   Unavailable, IMAGE_PULL_FAILED: the runtime failed the pull;
  //   FailedPrecondition, IMAGE_DIGEST_MISMATCH: the image held is absent,
  //     or another digest or id than requested and answered.
  virtual absl::StatusOr<CriImage> PullImage(std::string_view image) = 0;

  // The runtime's record of `image` (pinned by digest, refused as for
  // PullImage otherwise), or nullopt if the runtime does not hold it.
  virtual absl::StatusOr<std::optional<CriImage>> ImageStatus(std::string_view image) = 0;

  // The containers of `selector`'s pod (any state), newest first. Filters on
  // the runtime side by label and checks the labels of what comes back.
  virtual absl::StatusOr<std::vector<CriContainer>> ListContainers(
      const PodContainerSelector& selector) = 0;

  // One container's status. Errors, besides the common ones:
  //   NotFound, CRI_CONTAINER_NOT_FOUND: the runtime does not know the id.
  virtual absl::StatusOr<CriContainer> ContainerStatus(std::string_view container_id) = 0;
};

// The CRI gRPC client over `options.socket_path`.
std::unique_ptr<ContainerRuntime> NewCriClient(CriOptions options);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_CRI_CLIENT_H_
