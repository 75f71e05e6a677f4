// Included first by every header of the cluster layer (src/cluster). The
// cluster library defines KMSFLEET_LAYER_CLUSTER for itself and everything
// that links it, so a header of this layer included from the core or the
// node layer, which know no peer (architecture.md §3), fails to compile.
#ifndef KMSFLEET_CLUSTER_LAYER_H_
#define KMSFLEET_CLUSTER_LAYER_H_

#ifndef KMSFLEET_LAYER_CLUSTER
#error "a cluster-layer header (kmsfleet/cluster/) was included below the cluster layer"
#endif

#endif  // KMSFLEET_CLUSTER_LAYER_H_
