// The key_id hash the provider exports as openbao_kms_status_key_id_hash
// {hash=...} (reference §3.2): unpadded base64url (RFC 4648 §5) of the
// SHA-256 of the key_id's UTF-8 bytes, always 43 characters.
// Thread-safe.
#ifndef KMSFLEET_NODE_KEY_ID_HASH_H_
#define KMSFLEET_NODE_KEY_ID_HASH_H_

#include "kmsfleet/node/layer.h"  // fails outside the node layer

#include <string>
#include <string_view>

namespace kmsfleet {

// Returns the 43-character hash of `key_id` (the full string, including the
// "obk2." prefix). An empty key_id hashes like any other string.
std::string KeyIdHash(std::string_view key_id);

// Returns `bytes` in the URL-safe base64 alphabet without '=' padding.
std::string Base64UrlNoPad(std::string_view bytes);

}  // namespace kmsfleet

#endif  // KMSFLEET_NODE_KEY_ID_HASH_H_
