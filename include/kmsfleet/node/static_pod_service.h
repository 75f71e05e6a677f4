// The provider's "service" when it runs as a static pod (issue 10): the
// executor's ServiceManager seam carried out by the kubelet and read
// through the CRI, so the swap machine's steps keep their meaning.
//
//   Stop:  stops nothing: the kubelet stops the old container itself when
//          the manifest changes, and stopping it earlier would only
//          lengthen the outage. It notes the pod's newest container and
//          the live manifest's SHA-256 for the Start that follows (the
//          swap machine stops before every install and restore).
//   Start: waits until the pod's newest container is running the image
//          digest the live manifest names and, when the manifest changed
//          since Stop, is not the container Stop noted: the digest alone
//          cannot tell them apart (the same digest restaged under a new
//          tag), and the old container runs until the kubelet replaces
//          it. With the manifest unchanged (nothing was installed), or no
//          Stop before (crash recovery), the current container counts; so
//          does one both the last two Stops saw across a manifest change
//          (the kubelet never acted on that install: a restore puts back
//          the manifest it runs).
//   State: the newest container of the pod: running, created (starting),
//          exited (failed) or none (stopped); its id is the run's
//          invocation id, so a replaced container reads as a restart.
//   Restart: refused; only kube-apiserver is restarted, and never here.
// Thread-safe: the runtime is, and what Stop notes is guarded.
#ifndef KMSFLEET_NODE_STATIC_POD_SERVICE_H_
#define KMSFLEET_NODE_STATIC_POD_SERVICE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "kmsfleet/node/clock.h"
#include "kmsfleet/node/cri_client.h"
#include "kmsfleet/node/service_manager.h"

namespace kmsfleet {

struct StaticPodServiceOptions {
  std::string manifest_path;
  // The pod as the kubelet names it: the manifest's metadata.name, a dash
  // and the kubelet's node name ("bao-kms-provider-cp1").
  PodContainerSelector pod;
  std::chrono::milliseconds poll_interval{200};
  // True once the agent is stopping (kmsfleetd wires the executor's
  // Stopping()). Start then stops waiting within kStopCheckSlice and
  // returns Cancelled AGENT_STOPPING, which the executor takes as "leave
  // the operation open for the next start", as it does a verify wait cut
  // short. Empty: Start waits out its timeout.
  std::function<bool()> stopping;
};

// How long Start sleeps at most between looks at `stopping`.
inline constexpr std::chrono::milliseconds kStopCheckSlice{100};

// `runtime` and `steady` must outlive the manager. Errors, beyond the
// ServiceManager contract and the runtime's (cri_client.h):
//   Start: DeadlineExceeded POD_NOT_REPLACED naming the image and the
//     newest container; the runtime's last error when it failed the last
//     look; Cancelled AGENT_STOPPING once `stopping` says so; the live
//     manifest's errors (ARTIFACT_IO, INPUT_TOO_LARGE, the manifest_edit.h
//     and IMAGE_REF_* reasons).
//   Stop: the runtime's error when it cannot list the pod's containers
//     and this manager never listed them before (it then notes the
//     newest it saw last); otherwise OK.
std::unique_ptr<ServiceManager> NewStaticPodServiceManager(StaticPodServiceOptions options,
                                                           ContainerRuntime& runtime,
                                                           const MonotonicClock& steady);

// "static pod <namespace>/<name>", how messages name the pod.
std::string StaticPodName(const PodContainerSelector& pod);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_STATIC_POD_SERVICE_H_
