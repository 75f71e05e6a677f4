// The provider's "service" when it runs as a static pod (issue 10): the
// executor's ServiceManager seam carried out by the kubelet and read
// through the CRI, so the swap machine's steps keep their meaning.
//
//   Stop:  nothing. The kubelet stops the old container itself when the
//          manifest's image changes; stopping it earlier would only
//          lengthen the outage.
//   Start: waits until the pod's newest container is running the image
//          digest the live manifest names (a new container after an
//          install or a restore; the current one when nothing changed).
//   State: the newest container of the pod: running, created (starting),
//          exited (failed) or none (stopped); its id is the run's
//          invocation id, so a replaced container reads as a restart.
//   Restart: refused; only kube-apiserver is restarted, and never here.
// Thread-safe: the runtime is; the rest is read-only.
#ifndef KMSFLEET_NODE_STATIC_POD_SERVICE_H_
#define KMSFLEET_NODE_STATIC_POD_SERVICE_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <chrono>
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
};

// `runtime` and `steady` must outlive the manager.
std::unique_ptr<ServiceManager> NewStaticPodServiceManager(StaticPodServiceOptions options,
                                                           ContainerRuntime& runtime,
                                                           const MonotonicClock& steady);

// "static pod <namespace>/<name>", how messages name the pod.
std::string StaticPodName(const PodContainerSelector& pod);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_STATIC_POD_SERVICE_H_
