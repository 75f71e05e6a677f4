#include "key_material.h"

#include <string>

#include "kmsfleet/node/key_id_hash.h"

namespace kmsfleet::fake {
namespace {

constexpr std::string_view kKeyIdPrefix = "obk2.";
constexpr std::string_view kCiphertextTag = "fbk1:";

// A keystream long enough for any plaintext: SHA-256 blocks over a counter.
char KeystreamByte(std::string_view key_id, size_t index) {
  // Re-hashing per 32-byte block keeps this free of state; speed is
  // irrelevant for KMS payloads of a few hundred bytes.
  std::string block = kmsfleet::KeyIdHash(std::string(key_id) + "/stream/" +
                                          std::to_string(index / 32));
  return block[index % 32];
}

std::string Xor(std::string_view key_id, std::string_view input) {
  std::string out(input);
  for (size_t i = 0; i < out.size(); ++i) out[i] ^= KeystreamByte(key_id, i);
  return out;
}

std::string CiphertextHeader(std::string_view key_id) {
  return std::string(kCiphertextTag) + kmsfleet::KeyIdHash(key_id).substr(0, 8) +
         ":";
}

}  // namespace

std::string DeriveKeyId(std::string_view seed, int transit_version) {
  std::string input = "fake-bao-kms-provider/key-id/v1";
  input += '\0';
  input += seed;
  input += '\0';
  input += std::to_string(transit_version);
  input += '\0';
  return std::string(kKeyIdPrefix) + kmsfleet::KeyIdHash(input);
}

bool IsWellFormedKeyId(std::string_view key_id) {
  if (key_id.size() != 48 || key_id.substr(0, 5) != kKeyIdPrefix) return false;
  for (char c : key_id.substr(5)) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string StateHash(std::string_view key_id, int generation) {
  return "krs1." + kmsfleet::KeyIdHash("fake-state/" + std::string(key_id) +
                                       "/" + std::to_string(generation));
}

std::string FakeEncrypt(std::string_view key_id, std::string_view plaintext) {
  return CiphertextHeader(key_id) + Xor(key_id, plaintext);
}

std::optional<std::string> FakeDecrypt(std::string_view key_id,
                                       std::string_view ciphertext) {
  std::string header = CiphertextHeader(key_id);
  if (ciphertext.substr(0, header.size()) != header) return std::nullopt;
  return Xor(key_id, ciphertext.substr(header.size()));
}

}  // namespace kmsfleet::fake
