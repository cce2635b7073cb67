// AES-256-GCM for encrypted columns and organization secrets.
//
// Ciphertext text format: "tsenc1:<key id>:<base64(nonce[12] | ciphertext | tag[16])>", where the
// key id is the first 8 hex digits of SHA-256(key), so keys can rotate (rotate-key re-encrypts
// values whose key id is not the current one).
//
// Key rotation: a Cipher holds one current key, which every Encrypt uses, and any number of
// previous keys, which Decrypt uses for ciphertext carrying their key id (WithPreviousKeys, or
// encryption.previous_keys through FromConfig). A key id is not secret (32 bits of a hash of
// the key) and may appear in messages; key bytes never do.
//
// The nonce is synthetic: HMAC-SHA256(key, context | 0x00 | plaintext) truncated to 12 bytes, so
// the same plaintext in the same context (table.column) always gives the same ciphertext. That
// makes a row get the same target value whichever path carried it (DESIGN.md invariant 5) and lets
// validate compare checksums; the cost, stated in the README, is that equal plaintexts in one
// column are visibly equal. A nonce is never reused for two different plaintexts. The context is
// also the GCM additional authenticated data, so a value copied to another column fails to decrypt.
//
// Thread safety: a Cipher is immutable and safe to share; each call makes its own EVP contexts.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tenantsync {

class Cipher {
 public:
  // `base64_key` must decode to exactly 32 bytes; otherwise kInvalidArgument that says how to
  // make one (`openssl rand -base64 32`) and never echoes the key.
  static StatusOr<Cipher> FromBase64Key(std::string_view base64_key);
  // Reads a base64 key from a file; refuses a file readable by group or others.
  static StatusOr<Cipher> FromKeyFile(const std::string& path);
  // From the config's `encryption` section: the current key (key, else key_file) plus every
  // entry of previous_keys for decryption. kInvalidArgument naming encryption.key when neither is
  // set, and naming the entry (encryption.previous_keys[N]) when a previous key does not load,
  // repeats a key id, or does not have the key_id it claims.
  static StatusOr<Cipher> FromConfig(const EncryptionConfig& encryption);
  // `current` for encryption plus `previous` for decryption only. kInvalidArgument when two keys
  // share a key id (the same key listed twice, or a previous key equal to the current one).
  // Previous keys' own previous keys are ignored.
  static StatusOr<Cipher> WithPreviousKeys(const Cipher& current,
                                           const std::vector<Cipher>& previous);

  Cipher() = default;
  Cipher(const Cipher&) = default;
  Cipher& operator=(const Cipher&) = default;
  Cipher(Cipher&&) = default;
  Cipher& operator=(Cipher&&) = default;
  ~Cipher();  // wipes the key bytes

  // The current key's id: the one Encrypt writes.
  const std::string& key_id() const { return key_id_; }
  // The current key's id first, then the previous keys' ids in configuration order.
  std::vector<std::string> key_ids() const;
  // True when Decrypt can open ciphertext carrying `key_id` (the current or a previous key).
  bool HasKey(std::string_view key_id) const;

  // `context` binds the ciphertext to where it is stored ("orders.payout_email"). Always the
  // current key.
  StatusOr<std::string> Encrypt(std::string_view plaintext, std::string_view context) const;
  // With whichever configured key has the ciphertext's key id. kCorruption when the text is not
  // our format or fails authentication (wrong key, tampered); kNotFound, naming the key id, when
  // no configured key has it.
  StatusOr<std::string> Decrypt(std::string_view ciphertext, std::string_view context) const;
  static bool LooksEncrypted(std::string_view text);
  // The key id of a value in our format, or empty when the text is not our format.
  static std::string_view KeyIdOf(std::string_view ciphertext);

 private:
  struct KeyedContexts;  // HMAC and AES contexts keyed once, duplicated per call (crypto.cc)
  // Decrypt with this key alone (the key id already matched).
  StatusOr<std::string> DecryptWithThisKey(std::string_view blob_base64,
                                           std::string_view context) const;

  std::array<unsigned char, 32> key_{};
  std::string key_id_;
  std::shared_ptr<const KeyedContexts> keyed_;  // shared by copies; only read after FromBase64Key
  // Decryption-only keys, each without previous keys of its own; shared by copies, immutable.
  std::shared_ptr<const std::vector<Cipher>> previous_;
};

// Standard alphabet with '=' padding, no line breaks.
std::string Base64Encode(std::string_view bytes);
// Strict: length a multiple of 4, standard alphabet, at most two '=' at the end. Errors are
// kInvalidArgument and never echo the text (it may be a key).
StatusOr<std::string> Base64Decode(std::string_view text);

}  // namespace tenantsync
