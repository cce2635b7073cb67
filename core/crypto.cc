#include "core/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace tenantsync {
namespace {

constexpr std::string_view kPrefix = "tsenc1:";
constexpr size_t kNonceLen = 12;
constexpr size_t kTagLen = 16;
constexpr size_t kKeyIdLen = 8;

struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct MacDeleter {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
};
struct MacCtxDeleter {
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};
struct EvpCipherDeleter {
  void operator()(EVP_CIPHER* c) const { EVP_CIPHER_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;
using EvpCipher = std::unique_ptr<EVP_CIPHER, EvpCipherDeleter>;
using Mac = std::unique_ptr<EVP_MAC, MacDeleter>;
using MacCtx = std::unique_ptr<EVP_MAC_CTX, MacCtxDeleter>;

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string HexPrefix(const unsigned char* bytes, size_t hex_digits) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; out.size() < hex_digits; ++i) {
    out += kHex[bytes[i] >> 4];
    out += kHex[bytes[i] & 0xf];
  }
  out.resize(hex_digits);
  return out;
}

// The algorithms, fetched once per process: an OpenSSL 3 fetch takes a lock and a lookup, which
// costs more than encrypting a short value. Fetched objects are immutable and thread-safe.
const EVP_MAC* HmacAlgorithm() {
  static const Mac mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  return mac.get();
}
const EVP_CIPHER* AesGcmAlgorithm() {
  static const EvpCipher cipher(EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr));
  return cipher.get();
}

// HMAC-SHA256(key, context | 0x00 | plaintext)[:12]: the synthetic nonce. `keyed` is an HMAC
// context already initialised with the key.
Status SyntheticNonce(const EVP_MAC_CTX* keyed, std::string_view context,
                      std::string_view plaintext, unsigned char* nonce) {
  MacCtx ctx(EVP_MAC_CTX_dup(keyed));
  if (!ctx) return Fatal("crypto: out of memory creating an HMAC context");
  const unsigned char zero = 0;
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  if (EVP_MAC_update(ctx.get(), U(context), context.size()) != 1 ||
      EVP_MAC_update(ctx.get(), &zero, 1) != 1 ||
      EVP_MAC_update(ctx.get(), U(plaintext), plaintext.size()) != 1 ||
      EVP_MAC_final(ctx.get(), out, &out_len, sizeof(out)) != 1 || out_len < kNonceLen) {
    return Fatal("crypto: HMAC-SHA256 failed");
  }
  std::memcpy(nonce, out, kNonceLen);
  OPENSSL_cleanse(out, sizeof(out));
  return Status::Ok();
}

bool IsBase64Char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

std::string TrimWhitespace(std::string s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

}  // namespace

// The per-key part of the work (HMAC key pads, AES key schedule) done once in FromBase64Key.
// Encrypt/Decrypt duplicate these templates and never modify them, so one Cipher (and its
// copies) can be used from many threads at once.
struct Cipher::KeyedContexts {
  MacCtx hmac;    // HMAC-SHA256 initialised with the key
  CipherCtx aes;  // AES-256-GCM initialised with the key, 12-byte IV length, no IV yet
};

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), U(bytes),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

StatusOr<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return InvalidArgument("base64 text has a length that is not a multiple of 4");
  }
  size_t padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '=') {
      // '=' only in the last two positions, and nothing but '=' after the first one.
      if (i + 2 < text.size()) return InvalidArgument("base64 text has '=' before its end");
      ++padding;
    } else if (padding > 0 || !IsBase64Char(c)) {
      return InvalidArgument("base64 text has a character outside the base64 alphabet");
    }
  }
  if (text.empty()) return std::string();
  std::string out(3 * (text.size() / 4), '\0');
  // EVP_DecodeBlock counts padding as zero bytes; the true length is 3/4 of the input minus
  // the number of '=' characters.
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), U(text),
                          static_cast<int>(text.size()));
  if (n < 0) return InvalidArgument("base64 text does not decode");
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

Cipher::~Cipher() { OPENSSL_cleanse(key_.data(), key_.size()); }

StatusOr<Cipher> Cipher::FromBase64Key(std::string_view base64_key) {
  std::string trimmed = TrimWhitespace(std::string(base64_key));
  StatusOr<std::string> raw = Base64Decode(trimmed);
  OPENSSL_cleanse(trimmed.data(), trimmed.size());
  if (!raw.ok() || raw->size() != 32) {
    std::string why = raw.ok() ? "it decodes to " + std::to_string(raw->size()) + " bytes, not 32"
                               : "it is not valid base64";
    if (raw.ok()) OPENSSL_cleanse(raw->data(), raw->size());
    return InvalidArgument("encryption key: " + why + "; make one with `openssl rand -base64 32`");
  }
  Cipher c;
  std::memcpy(c.key_.data(), raw->data(), 32);
  OPENSSL_cleanse(raw->data(), raw->size());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(c.key_.data(), c.key_.size(), digest, &digest_len, EVP_sha256(), nullptr) != 1) {
    return Fatal("crypto: SHA-256 failed");
  }
  c.key_id_ = HexPrefix(digest, kKeyIdLen);

  const EVP_MAC* mac = HmacAlgorithm();
  const EVP_CIPHER* aes = AesGcmAlgorithm();
  if (mac == nullptr || aes == nullptr) {
    return Fatal("crypto: HMAC-SHA256 or AES-256-GCM is not available in this OpenSSL");
  }
  auto keyed = std::make_shared<KeyedContexts>();
  keyed->hmac.reset(EVP_MAC_CTX_new(const_cast<EVP_MAC*>(mac)));
  keyed->aes.reset(EVP_CIPHER_CTX_new());
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
  };
  if (!keyed->hmac || !keyed->aes ||
      EVP_MAC_init(keyed->hmac.get(), c.key_.data(), c.key_.size(), params) != 1 ||
      EVP_EncryptInit_ex(keyed->aes.get(), aes, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(keyed->aes.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceLen, nullptr) != 1 ||
      EVP_EncryptInit_ex(keyed->aes.get(), nullptr, nullptr, c.key_.data(), nullptr) != 1) {
    return Fatal("crypto: can not set up HMAC-SHA256 / AES-256-GCM with the key");
  }
  c.keyed_ = std::move(keyed);
  return c;
}

StatusOr<Cipher> Cipher::FromKeyFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return NotFound("encryption.key_file: " + path + ": " + std::strerror(errno) +
                    "; create it with `openssl rand -base64 32 > " + path + " && chmod 600 " +
                    path + "`");
  }
  if (!S_ISREG(st.st_mode)) {
    return InvalidArgument("encryption.key_file: " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return InvalidArgument("encryption.key_file: " + path +
                           " is readable or writable by group or others; run `chmod 600 " + path +
                           "`");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return InvalidArgument("encryption.key_file: " + path +
                           " can not be read: " + std::strerror(errno));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  StatusOr<Cipher> c = FromBase64Key(text);
  OPENSSL_cleanse(text.data(), text.size());
  if (!c.ok()) return c.status().WithContext("encryption.key_file: " + path);
  return c;
}

namespace {

// One configured key: key, else key_file; `path` names it in messages ("encryption" or
// "encryption.previous_keys[2]"). When `expected_id` is set, the key must have that id: a
// config that says which key it means catches a swapped key before anything is written.
StatusOr<Cipher> LoadConfiguredKey(const std::string& path, const std::string& key,
                                   const std::string& key_file, const std::string& expected_id) {
  if (!key.empty() && !key_file.empty()) {
    return InvalidArgument(path + ": set key or key_file, not both");
  }
  StatusOr<Cipher> c = InvalidArgument(
      path + ".key: no key configured; set " + path + ".key (e.g. \"${TENANTSYNC_KEY}\") or " +
      path + ".key_file to the base64 of 32 bytes (`openssl rand -base64 32`)");
  // The loaders' messages name the current key's settings ("encryption key: ...",
  // "encryption.key_file: ..."); a previous key's message names its own entry instead.
  auto renamed = [&](const Status& st, std::string_view prefix, const std::string& name) {
    std::string m = st.message();
    if (m.rfind(prefix, 0) == 0) m = m.substr(prefix.size());
    return Status(st.code(), name + ": " + m);
  };
  if (!key.empty()) {
    c = Cipher::FromBase64Key(key);
    if (!c.ok() && path != "encryption") {
      return renamed(c.status(), "encryption key: ", path + ".key");
    }
  } else if (!key_file.empty()) {
    c = Cipher::FromKeyFile(key_file);
    if (!c.ok() && path != "encryption") {
      return renamed(c.status(), "encryption.key_file: ", path + ".key_file");
    }
  }
  if (!c.ok()) return c;
  const bool id_shaped = expected_id.size() == kKeyIdLen &&
                         std::all_of(expected_id.begin(), expected_id.end(), [](char ch) {
                           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
                         });
  if (!expected_id.empty() && !id_shaped) {
    // Not echoed: a key pasted into the wrong field must not reach a log.
    return InvalidArgument(path +
                           ".key_id: expected 8 lowercase hex digits (the configured key "
                           "has id " +
                           c->key_id() + ")");
  }
  if (!expected_id.empty() && expected_id != c->key_id()) {
    return InvalidArgument(path + ".key_id: is " + expected_id + " but the configured key has id " +
                           c->key_id() +
                           "; the key id is the first 8 hex digits of the key's "
                           "SHA-256: fix the key or the key_id");
  }
  return c;
}

}  // namespace

StatusOr<Cipher> Cipher::FromConfig(const EncryptionConfig& encryption) {
  TS_ASSIGN_OR_RETURN(Cipher current, LoadConfiguredKey("encryption", encryption.key,
                                                        encryption.key_file, encryption.key_id));
  if (encryption.previous_keys.empty()) return current;
  std::vector<Cipher> previous;
  for (size_t i = 0; i < encryption.previous_keys.size(); ++i) {
    const EncryptionKeyConfig& k = encryption.previous_keys[i];
    const std::string path = "encryption.previous_keys[" + std::to_string(i + 1) + "]";
    TS_ASSIGN_OR_RETURN(Cipher c, LoadConfiguredKey(path, k.key, k.key_file, k.key_id));
    if (c.key_id() == current.key_id()) {
      return InvalidArgument(path + ": is the current key (key id " + c.key_id() +
                             "); list only older keys under previous_keys");
    }
    for (size_t j = 0; j < previous.size(); ++j) {
      if (previous[j].key_id() == c.key_id()) {
        return InvalidArgument(path + ": the same key as encryption.previous_keys[" +
                               std::to_string(j + 1) + "] (key id " + c.key_id() +
                               "); list each key once");
      }
    }
    previous.push_back(std::move(c));
  }
  return WithPreviousKeys(current, previous);
}

StatusOr<Cipher> Cipher::WithPreviousKeys(const Cipher& current,
                                          const std::vector<Cipher>& previous) {
  if (!current.keyed_) return Fatal("crypto: Cipher used before FromBase64Key; this is a bug");
  Cipher c = current;
  auto keys = std::make_shared<std::vector<Cipher>>();
  for (const Cipher& p : previous) {
    if (!p.keyed_) return Fatal("crypto: Cipher used before FromBase64Key; this is a bug");
    if (c.HasKey(p.key_id()) || std::any_of(keys->begin(), keys->end(), [&](const Cipher& k) {
          return k.key_id() == p.key_id();
        })) {
      return InvalidArgument("encryption: key id " + p.key_id() +
                             " is configured twice; list each key once");
    }
    Cipher only = p;
    only.previous_.reset();
    keys->push_back(std::move(only));
  }
  c.previous_ = std::move(keys);
  return c;
}

std::vector<std::string> Cipher::key_ids() const {
  std::vector<std::string> ids = {key_id_};
  if (previous_) {
    for (const Cipher& p : *previous_) ids.push_back(p.key_id_);
  }
  return ids;
}

bool Cipher::HasKey(std::string_view key_id) const {
  if (key_id == key_id_) return true;
  if (!previous_) return false;
  return std::any_of(previous_->begin(), previous_->end(),
                     [&](const Cipher& p) { return p.key_id_ == key_id; });
}

std::string_view Cipher::KeyIdOf(std::string_view ciphertext) {
  if (!LooksEncrypted(ciphertext)) return {};
  return ciphertext.substr(kPrefix.size(), kKeyIdLen);
}

bool Cipher::LooksEncrypted(std::string_view text) {
  if (text.substr(0, kPrefix.size()) != kPrefix) return false;
  std::string_view rest = text.substr(kPrefix.size());
  return rest.size() > kKeyIdLen && rest[kKeyIdLen] == ':';
}

StatusOr<std::string> Cipher::Encrypt(std::string_view plaintext, std::string_view context) const {
  std::string blob(kNonceLen + plaintext.size() + kTagLen, '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(blob.data());
  if (!keyed_) return Fatal("crypto: Cipher used before FromBase64Key; this is a bug");
  TS_RETURN_IF_ERROR(SyntheticNonce(keyed_->hmac.get(), context, plaintext, nonce));

  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Fatal("crypto: out of memory creating a cipher context");
  int len = 0;
  auto* out = nonce + kNonceLen;
  if (EVP_CIPHER_CTX_copy(ctx.get(), keyed_->aes.get()) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, nullptr, nonce) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) !=
          1 ||
      EVP_EncryptUpdate(ctx.get(), out, &len, U(plaintext), static_cast<int>(plaintext.size())) !=
          1) {
    return Fatal("crypto: AES-256-GCM encryption failed");
  }
  int final_len = 0;
  if (EVP_EncryptFinal_ex(ctx.get(), out + len, &final_len) != 1 ||
      static_cast<size_t>(len + final_len) != plaintext.size() ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagLen, out + plaintext.size()) != 1) {
    return Fatal("crypto: AES-256-GCM encryption failed");
  }
  std::string result(kPrefix);
  result += key_id_;
  result += ':';
  result += Base64Encode(blob);
  return result;
}

StatusOr<std::string> Cipher::Decrypt(std::string_view ciphertext, std::string_view context) const {
  // Messages name the context (table.column) and key ids, never the text: it may be a secret's
  // ciphertext and the plaintext must not leak through a partial decode either.
  if (!LooksEncrypted(ciphertext)) {
    return Corruption(std::string(context) + ": value is not tenantsync ciphertext (tsenc1:...)");
  }
  std::string_view rest = ciphertext.substr(kPrefix.size());
  std::string_view key_id = rest.substr(0, kKeyIdLen);
  std::string_view blob = rest.substr(kKeyIdLen + 1);
  if (key_id == key_id_) return DecryptWithThisKey(blob, context);
  if (previous_) {
    for (const Cipher& p : *previous_) {
      if (p.key_id_ == key_id) return p.DecryptWithThisKey(blob, context);
    }
  }
  std::string configured;
  for (const std::string& id : key_ids()) configured += (configured.empty() ? "" : ", ") + id;
  return NotFound(std::string(context) + ": value was encrypted with key id " +
                  std::string(key_id) + ", which is not configured (configured: " + configured +
                  "); add that key to encryption.previous_keys so it can be decrypted and "
                  "`tenantsync rotate-key` can re-encrypt it with the current key");
}

StatusOr<std::string> Cipher::DecryptWithThisKey(std::string_view blob_base64,
                                                 std::string_view context) const {
  StatusOr<std::string> blob = Base64Decode(blob_base64);
  if (!blob.ok()) {
    return Corruption(std::string(context) + ": ciphertext is not valid base64");
  }
  if (blob->size() < kNonceLen + kTagLen) {
    return Corruption(std::string(context) + ": ciphertext is truncated");
  }
  const auto* nonce = reinterpret_cast<const unsigned char*>(blob->data());
  size_t ct_len = blob->size() - kNonceLen - kTagLen;
  const unsigned char* ct = nonce + kNonceLen;
  std::string tag(blob->data() + kNonceLen + ct_len, kTagLen);
  std::string plain(ct_len, '\0');

  const EVP_CIPHER* aes = AesGcmAlgorithm();
  if (aes == nullptr) return Fatal("crypto: AES-256-GCM is not available in this OpenSSL");
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  if (!ctx) return Fatal("crypto: out of memory creating a cipher context");
  int len = 0;
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  if (EVP_DecryptInit_ex(ctx.get(), aes, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceLen, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key_.data(), nonce) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(context), static_cast<int>(context.size())) !=
          1 ||
      EVP_DecryptUpdate(ctx.get(), out, &len, ct, static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagLen, tag.data()) != 1) {
    return Fatal("crypto: AES-256-GCM decryption failed");
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), out + len, &final_len) != 1) {
    OPENSSL_cleanse(plain.data(), plain.size());
    return Corruption(std::string(context) +
                      ": ciphertext fails authentication (tampered, or made for another column)");
  }
  return plain;
}

}  // namespace tenantsync
