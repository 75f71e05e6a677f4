// Whether something listens at a TCP address on this node, asked without
// sending anything: the executor looks every millisecond for a restarted
// provider's health listener (Executor::Verify), where a full observation
// would cost a few milliseconds of CPU each time.
#ifndef KMSFLEET_NODE_LISTENER_CHECK_H_
#define KMSFLEET_NODE_LISTENER_CHECK_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <optional>

#include "kmsfleet/node/http_get.h"

namespace kmsfleet {

// Connects to `url`'s host and port and closes the connection at once.
// True when the connection was accepted; false when it was refused;
// nullopt when that is not known within a millisecond (a host name,
// which this never resolves, or an address that does not answer at once:
// not one on this node).
std::optional<bool> ListenerAccepts(const HttpUrl& url);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_LISTENER_CHECK_H_
