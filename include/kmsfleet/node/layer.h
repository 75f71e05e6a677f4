// Included first by every header of the node layer (src/node). The node
// library defines KMSFLEET_LAYER_NODE for itself and everything that links
// it, so a header of this layer included from the core, which must stay
// free of adapters (architecture.md §3), fails to compile here.
#ifndef KMSFLEET_NODE_LAYER_H_
#define KMSFLEET_NODE_LAYER_H_

#ifndef KMSFLEET_LAYER_NODE
#error "a node-layer header (kmsfleet/node/) was included outside the node layer or above it"
#endif

#endif  // KMSFLEET_NODE_LAYER_H_
