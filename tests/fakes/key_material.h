// The fake's key identities and its stand-in for Transit encryption.
//
// key_ids have the real shape (reference §4.2: "obk2." + 43 base64url
// chars) but are derived from a scenario seed and Transit version instead of
// OpenBao metadata, so a test can predict them. Ciphertext is a reversible
// keyed XOR tagged with the key's hash: not cryptography, just enough that
// decrypting under the wrong key_id is detectable.
// Thread-safe: free functions.
#ifndef KMSFLEET_TESTS_FAKES_KEY_MATERIAL_H_
#define KMSFLEET_TESTS_FAKES_KEY_MATERIAL_H_

#include <optional>
#include <string>
#include <string_view>

namespace kmsfleet::fake {

// Chosen so that KeyIdHash(DeriveKeyId(kDefaultKeySeed, 1)) contains both
// '-' and '_', the characters that break naive label parsing (checked by
// fake_units_test).
inline constexpr char kDefaultKeySeed[] = "fake-seed-7";

// "obk2." + base64url(SHA-256(domain, seed, version)); always 48 chars.
std::string DeriveKeyId(std::string_view seed, int transit_version);

// The real ParseKeyId rule: 48 chars, "obk2." prefix, base64url body that
// decodes to 32 bytes.
bool IsWellFormedKeyId(std::string_view key_id);

// "krs1." + 43 chars: a registry state hash for rotation-plan.
std::string StateHash(std::string_view key_id, int generation);

// Reversible transform; the result starts with "fbk1:<8 chars of hash>:".
std::string FakeEncrypt(std::string_view key_id, std::string_view plaintext);

// Inverse of FakeEncrypt; nullopt when `ciphertext` was not produced under
// `key_id`.
std::optional<std::string> FakeDecrypt(std::string_view key_id,
                                       std::string_view ciphertext);

}  // namespace kmsfleet::fake

#endif  // KMSFLEET_TESTS_FAKES_KEY_MATERIAL_H_
