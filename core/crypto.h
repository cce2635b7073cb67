// AES-256-GCM for encrypted columns and organization secrets.
//
// Ciphertext text format: "tsenc1:<key id>:<base64(nonce[12] | ciphertext | tag[16])>", where the
// key id is the first 8 hex digits of SHA-256(key), so keys can rotate (rotate-key re-encrypts
// values whose key id is not the current one).
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
  // From the config's `encryption` section: key, else key_file. kInvalidArgument naming
  // encryption.key when neither is set.
  static StatusOr<Cipher> FromConfig(const EncryptionConfig& encryption);

  Cipher() = default;
  Cipher(const Cipher&) = default;
  Cipher& operator=(const Cipher&) = default;
  Cipher(Cipher&&) = default;
  Cipher& operator=(Cipher&&) = default;
  ~Cipher();  // wipes the key bytes

  const std::string& key_id() const { return key_id_; }

  // `context` binds the ciphertext to where it is stored ("orders.payout_email").
  StatusOr<std::string> Encrypt(std::string_view plaintext, std::string_view context) const;
  // kCorruption when the text is not our format or fails authentication (wrong key, tampered);
  // kNotFound when it was made with another key id.
  StatusOr<std::string> Decrypt(std::string_view ciphertext, std::string_view context) const;
  static bool LooksEncrypted(std::string_view text);

 private:
  struct KeyedContexts;  // HMAC and AES contexts keyed once, duplicated per call (crypto.cc)
  std::array<unsigned char, 32> key_{};
  std::string key_id_;
  std::shared_ptr<const KeyedContexts> keyed_;  // shared by copies; only read after FromBase64Key
};

// Standard alphabet with '=' padding, no line breaks.
std::string Base64Encode(std::string_view bytes);
// Strict: length a multiple of 4, standard alphabet, at most two '=' at the end. Errors are
// kInvalidArgument and never echo the text (it may be a key).
StatusOr<std::string> Base64Decode(std::string_view text);

}  // namespace tenantsync
