#include "core/crypto.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace tenantsync {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// 32 bytes 0x00..0x1f.
std::string TestKeyBytes(unsigned char first = 0) {
  std::string k;
  for (int i = 0; i < 32; ++i) k += static_cast<char>(first + i);
  return k;
}

Cipher MakeCipher(unsigned char first = 0) {
  StatusOr<Cipher> c = Cipher::FromBase64Key(Base64Encode(TestKeyBytes(first)));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

#define ASSERT_OK_AND_ASSIGN_CIPHER(lhs, expr)                \
  StatusOr<Cipher> TS_CONCAT(cipher_or_, __LINE__) = (expr);  \
  ASSERT_TRUE(TS_CONCAT(cipher_or_, __LINE__).ok())           \
      << TS_CONCAT(cipher_or_, __LINE__).status().ToString(); \
  lhs = std::move(TS_CONCAT(cipher_or_, __LINE__)).value()

// Replaces the last base64 character of the blob with another valid one.
std::string FlipBlobByte(std::string ct, size_t pos_from_end) {
  char& c = ct[ct.size() - 1 - pos_from_end];
  c = c == 'A' ? 'B' : 'A';
  return ct;
}

TEST(Base64Test, RoundTripsEveryPaddingLength) {
  for (std::string s : {"", "a", "ab", "abc", "abcd", "abcde"}) {
    std::string enc = Base64Encode(s);
    EXPECT_EQ(enc.size() % 4, 0u);
    StatusOr<std::string> dec = Base64Decode(enc);
    ASSERT_TRUE(dec.ok()) << dec.status().ToString();
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(Base64Encode("ab"), "YWI=");
  EXPECT_EQ(Base64Encode("a"), "YQ==");
}

TEST(Base64Test, BinaryBytesRoundTrip) {
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes += static_cast<char>(i);
  StatusOr<std::string> dec = Base64Decode(Base64Encode(bytes));
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(*dec, bytes);
}

TEST(Base64Test, RejectsLengthNotMultipleOfFour) {
  StatusOr<std::string> d = Base64Decode("YWJ");
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("multiple of 4"));
}

TEST(Base64Test, RejectsCharacterOutsideAlphabet) {
  StatusOr<std::string> d = Base64Decode("YW*=");
  EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(d.status().message(), HasSubstr("alphabet"));
}

TEST(Base64Test, RejectsPaddingInTheMiddle) {
  EXPECT_EQ(Base64Decode("YQ==YWJj").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Base64Decode("Y=Q=").status().code(), StatusCode::kInvalidArgument);
}

TEST(CipherTest, RoundTrip) {
  Cipher c = MakeCipher();
  for (const std::string& plain :
       std::vector<std::string>{"", "ada@example.com", "ünïcödé ✓", std::string(100000, 'x')}) {
    StatusOr<std::string> ct = c.Encrypt(plain, "creators.payout_email");
    ASSERT_TRUE(ct.ok()) << ct.status().ToString();
    EXPECT_THAT(*ct, StartsWith("tsenc1:" + c.key_id() + ":"));
    EXPECT_TRUE(Cipher::LooksEncrypted(*ct));
    StatusOr<std::string> back = c.Decrypt(*ct, "creators.payout_email");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, plain);
  }
}

TEST(CipherTest, KeyIdIsEightHexDigitsOfSha256) {
  Cipher c = MakeCipher();
  ASSERT_EQ(c.key_id().size(), 8u);
  // SHA-256 of bytes 0x00..0x1f starts with 630dcd29 (`head -c ... | sha256sum`).
  EXPECT_EQ(c.key_id(), "630dcd29");
  EXPECT_NE(MakeCipher(1).key_id(), c.key_id());
}

// Known answer, computed independently of this code (Python: hmac + cryptography's AESGCM):
//   nonce = HMAC-SHA256(key, b"creators.payout_email" + b"\\0" + b"ada@example.com")[:12]
//   "tsenc1:" + sha256(key).hexdigest()[:8] + ":" + b64(nonce + AESGCM(key).encrypt(nonce, pt,
//   ctx))
// with key = bytes(range(32)). Pins the on-disk format: a change here breaks existing targets.
TEST(CipherTest, KnownAnswer) {
  Cipher c = MakeCipher();
  StatusOr<std::string> ct = c.Encrypt("ada@example.com", "creators.payout_email");
  ASSERT_TRUE(ct.ok());
  EXPECT_EQ(*ct, "tsenc1:630dcd29:ObkhNGa9i36MkLS5UuO7X2p5ohq4aiKnmE7zy9h6vT6T7MfiXiTTT398KA==");
}

TEST(CipherTest, DeterministicForSamePlaintextAndContext) {
  Cipher c = MakeCipher();
  StatusOr<std::string> a = c.Encrypt("secret", "t.c");
  StatusOr<std::string> b = c.Encrypt("secret", "t.c");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  // A copy of the cipher (another thread, another stage) gives the same bytes.
  Cipher copy = c;
  EXPECT_EQ(*copy.Encrypt("secret", "t.c"), *a);
}

TEST(CipherTest, ConcurrentUseOfOneCipherAgreesWithSerialUse) {
  // Snapshot workers share one Cipher; its keyed contexts are only duplicated, never modified.
  Cipher c = MakeCipher();
  std::vector<std::string> expected;
  for (int i = 0; i < 200; ++i) expected.push_back(*c.Encrypt("v" + std::to_string(i), "t.c"));
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        StatusOr<std::string> ct = c.Encrypt("v" + std::to_string(i), "t.c");
        if (!ct.ok() || *ct != expected[i]) ++mismatches;
        StatusOr<std::string> back = c.Decrypt(expected[i], "t.c");
        if (!back.ok() || *back != "v" + std::to_string(i)) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(CipherTest, DifferentContextsGiveDifferentCiphertext) {
  Cipher c = MakeCipher();
  EXPECT_NE(*c.Encrypt("secret", "customers.email"), *c.Encrypt("secret", "creators.email"));
  // The context|0x00|plaintext framing keeps ("a", "bc") and ("ab", "c") apart.
  EXPECT_NE(*c.Encrypt("bc", "a"), *c.Encrypt("c", "ab"));
}

TEST(CipherTest, DifferentPlaintextsGetDifferentNonces) {
  Cipher c = MakeCipher();
  std::string a = *c.Encrypt("one", "t.c");
  std::string b = *c.Encrypt("two", "t.c");
  std::string na = Base64Decode(a.substr(16)).value().substr(0, 12);
  std::string nb = Base64Decode(b.substr(16)).value().substr(0, 12);
  EXPECT_NE(na, nb);
}

TEST(CipherTest, WrongContextFailsAuthentication) {
  Cipher c = MakeCipher();
  std::string ct = *c.Encrypt("secret", "customers.email");
  StatusOr<std::string> d = c.Decrypt(ct, "creators.email");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(d.status().message(), HasSubstr("authentication"));
}

TEST(CipherTest, TamperedTagIsCorruption) {
  Cipher c = MakeCipher();
  std::string ct = *c.Encrypt("secret value", "t.c");
  StatusOr<std::string> d = c.Decrypt(FlipBlobByte(ct, 2), "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(d.status().message(), Not(HasSubstr("secret value")));
}

TEST(CipherTest, TamperedCiphertextBodyIsCorruption) {
  Cipher c = MakeCipher();
  std::string ct = *c.Encrypt("secret value", "t.c");
  std::string bad = ct;
  size_t body = 16 + 20;  // inside the base64 of nonce|ciphertext
  bad[body] = bad[body] == 'A' ? 'B' : 'A';
  EXPECT_EQ(c.Decrypt(bad, "t.c").status().code(), StatusCode::kCorruption);
}

TEST(CipherTest, TruncatedCiphertextIsCorruption) {
  Cipher c = MakeCipher();
  std::string ct = "tsenc1:" + c.key_id() + ":" + Base64Encode("short");
  StatusOr<std::string> d = c.Decrypt(ct, "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(d.status().message(), HasSubstr("truncated"));
}

TEST(CipherTest, BadBase64InCiphertextIsCorruption) {
  Cipher c = MakeCipher();
  StatusOr<std::string> d = c.Decrypt("tsenc1:" + c.key_id() + ":***", "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(d.status().message(), HasSubstr("base64"));
}

TEST(CipherTest, NotOurFormatIsCorruption) {
  Cipher c = MakeCipher();
  StatusOr<std::string> d = c.Decrypt("plain text", "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(d.status().message(), HasSubstr("t.c"));
  EXPECT_THAT(d.status().message(), Not(HasSubstr("plain text")));
  EXPECT_FALSE(Cipher::LooksEncrypted("plain text"));
  EXPECT_FALSE(Cipher::LooksEncrypted("tsenc1:short"));
}

TEST(CipherTest, OtherKeyIdIsNotFound) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  std::string ct = *a.Encrypt("secret", "t.c");
  StatusOr<std::string> d = b.Decrypt(ct, "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("key id " + a.key_id()));
  EXPECT_THAT(d.status().message(), HasSubstr("encryption.previous_keys"));
  EXPECT_THAT(d.status().message(), HasSubstr("rotate-key"));
}

TEST(CipherTest, WrongKeyWithForgedKeyIdIsCorruption) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  std::string ct = *a.Encrypt("secret", "t.c");
  std::string forged = "tsenc1:" + b.key_id() + ct.substr(15);
  EXPECT_EQ(b.Decrypt(forged, "t.c").status().code(), StatusCode::kCorruption);
}

TEST(CipherTest, KeyOfWrongLengthIsRejectedWithoutEchoingIt) {
  std::string key = Base64Encode("0123456789abcdef");  // 16 bytes
  StatusOr<Cipher> c = Cipher::FromBase64Key(key);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("16 bytes, not 32"));
  EXPECT_THAT(c.status().message(), HasSubstr("openssl rand -base64 32"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(key)));
}

TEST(CipherTest, KeyThatIsNotBase64IsRejectedWithoutEchoingIt) {
  std::string key = "not-base64-key-material!";
  StatusOr<Cipher> c = Cipher::FromBase64Key(key);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("not valid base64"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(key)));
}

TEST(CipherTest, KeyWithTrailingNewlineIsAccepted) {
  StatusOr<Cipher> c = Cipher::FromBase64Key(Base64Encode(TestKeyBytes()) + "\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->key_id(), MakeCipher().key_id());
}

class KeyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tenantsync_keyXXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
    std::ofstream(path_) << Base64Encode(TestKeyBytes()) << "\n";
  }
  void TearDown() override { unlink(path_.c_str()); }
  std::string path_;
};

TEST_F(KeyFileTest, PrivateFileIsRead) {
  ASSERT_EQ(chmod(path_.c_str(), 0600), 0);
  StatusOr<Cipher> c = Cipher::FromKeyFile(path_);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->key_id(), MakeCipher().key_id());
}

TEST_F(KeyFileTest, WorldReadableFileIsRefused) {
  ASSERT_EQ(chmod(path_.c_str(), 0644), 0);
  StatusOr<Cipher> c = Cipher::FromKeyFile(path_);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("chmod 600"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(Base64Encode(TestKeyBytes()))));
}

TEST_F(KeyFileTest, GroupReadableFileIsRefused) {
  ASSERT_EQ(chmod(path_.c_str(), 0640), 0);
  EXPECT_EQ(Cipher::FromKeyFile(path_).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(KeyFileTest, MissingFileIsNotFound) {
  StatusOr<Cipher> c = Cipher::FromKeyFile(path_ + ".missing");
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("openssl rand -base64 32"));
}

TEST_F(KeyFileTest, BadKeyInFileNamesTheFileNotTheKey) {
  std::ofstream(path_) << "c2hvcnQ=\n";
  ASSERT_EQ(chmod(path_.c_str(), 0600), 0);
  StatusOr<Cipher> c = Cipher::FromKeyFile(path_);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr(path_));
  EXPECT_THAT(c.status().message(), Not(HasSubstr("c2hvcnQ")));
}

TEST(CipherFromConfigTest, NoKeyNamesTheSetting) {
  StatusOr<Cipher> c = Cipher::FromConfig(EncryptionConfig{});
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("encryption.key"));
}

// --- Key rotation: one current key encrypts, previous keys decrypt by key id.

TEST(KeyringTest, DecryptsValuesOfEveryConfiguredKeyAndEncryptsWithTheCurrentOne) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  std::string under_a = *a.Encrypt("secret", "t.c");
  ASSERT_OK_AND_ASSIGN_CIPHER(Cipher ring, Cipher::WithPreviousKeys(b, {a}));
  EXPECT_EQ(ring.key_id(), b.key_id());
  EXPECT_EQ(ring.key_ids(), (std::vector<std::string>{b.key_id(), a.key_id()}));
  EXPECT_TRUE(ring.HasKey(a.key_id()));
  EXPECT_TRUE(ring.HasKey(b.key_id()));
  EXPECT_FALSE(ring.HasKey(MakeCipher(2).key_id()));
  StatusOr<std::string> back = ring.Decrypt(under_a, "t.c");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "secret");
  // Encrypt is the current key's, byte for byte (deterministic across paths, invariant 5).
  EXPECT_EQ(*ring.Encrypt("secret", "t.c"), *b.Encrypt("secret", "t.c"));
  EXPECT_EQ(*ring.Decrypt(*ring.Encrypt("x", "t.c"), "t.c"), "x");
  // Copies share the keyring.
  Cipher copy = ring;
  EXPECT_EQ(*copy.Decrypt(under_a, "t.c"), "secret");
}

TEST(KeyringTest, UnknownKeyIdIsNotFoundNamingTheIdAndTheRemedy) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  Cipher c = MakeCipher(2);
  std::string under_c = *c.Encrypt("secret", "t.c");
  ASSERT_OK_AND_ASSIGN_CIPHER(Cipher ring, Cipher::WithPreviousKeys(b, {a}));
  StatusOr<std::string> d = ring.Decrypt(under_c, "t.c");
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(d.status().message(), HasSubstr("key id " + c.key_id()));
  EXPECT_THAT(d.status().message(), HasSubstr(a.key_id()));
  EXPECT_THAT(d.status().message(), HasSubstr("encryption.previous_keys"));
  EXPECT_THAT(d.status().message(), Not(HasSubstr(Base64Encode(TestKeyBytes(2)))));
  EXPECT_THAT(d.status().message(), Not(HasSubstr("\n")));
}

TEST(KeyringTest, WrongPreviousKeyWithForgedIdIsCorruption) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  Cipher c = MakeCipher(2);
  std::string under_c = *c.Encrypt("secret", "t.c");
  std::string forged = "tsenc1:" + a.key_id() + under_c.substr(15);
  ASSERT_OK_AND_ASSIGN_CIPHER(Cipher ring, Cipher::WithPreviousKeys(b, {a}));
  EXPECT_EQ(ring.Decrypt(forged, "t.c").status().code(), StatusCode::kCorruption);
}

TEST(KeyringTest, SameKeyTwiceIsRefused) {
  Cipher a = MakeCipher(0);
  Cipher b = MakeCipher(1);
  EXPECT_EQ(Cipher::WithPreviousKeys(b, {b}).status().code(), StatusCode::kInvalidArgument);
  StatusOr<Cipher> twice = Cipher::WithPreviousKeys(b, {a, a});
  EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.status().message(), HasSubstr(a.key_id()));
}

TEST(KeyringTest, KeyIdOf) {
  Cipher a = MakeCipher(0);
  EXPECT_EQ(Cipher::KeyIdOf(*a.Encrypt("v", "t.c")), a.key_id());
  EXPECT_EQ(Cipher::KeyIdOf("plain"), "");
  EXPECT_EQ(Cipher::KeyIdOf("tsenc1:short"), "");
}

class KeyringConfigTest : public KeyFileTest {};

TEST_F(KeyringConfigTest, PreviousKeysFromKeyAndKeyFile) {
  ASSERT_EQ(chmod(path_.c_str(), 0600), 0);  // holds TestKeyBytes(0)
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.key_id = MakeCipher(1).key_id();
  e.previous_keys.push_back({MakeCipher(0).key_id(), "", path_});
  e.previous_keys.push_back({"", Base64Encode(TestKeyBytes(2)), ""});
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->key_id(), MakeCipher(1).key_id());
  EXPECT_EQ(c->key_ids(), (std::vector<std::string>{MakeCipher(1).key_id(), MakeCipher(0).key_id(),
                                                    MakeCipher(2).key_id()}));
  EXPECT_EQ(*c->Decrypt(*MakeCipher(2).Encrypt("v", "t.c"), "t.c"), "v");
}

TEST_F(KeyringConfigTest, PreviousKeyFileReadableByOthersNamesTheEntry) {
  ASSERT_EQ(chmod(path_.c_str(), 0644), 0);
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.previous_keys.push_back({"", "", path_});
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), StartsWith("encryption.previous_keys[1].key_file: "));
  EXPECT_THAT(c.status().message(), HasSubstr("chmod 600"));
}

TEST(KeyringFromConfigTest, BadPreviousKeyNamesTheEntryWithoutEchoingIt) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.previous_keys.push_back({"", Base64Encode(TestKeyBytes(0)), ""});
  e.previous_keys.push_back({"", Base64Encode("sixteen bytes...."), ""});
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), StartsWith("encryption.previous_keys[2].key: "));
  EXPECT_THAT(c.status().message(), HasSubstr("not 32"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(Base64Encode("sixteen bytes...."))));
}

TEST(KeyringFromConfigTest, PreviousKeyEqualToTheCurrentOneIsRefused) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.previous_keys.push_back({"", Base64Encode(TestKeyBytes(1)), ""});
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("encryption.previous_keys[1]: is the current key"));
}

TEST(KeyringFromConfigTest, SamePreviousKeyTwiceIsRefused) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.previous_keys.push_back({"", Base64Encode(TestKeyBytes(0)), ""});
  e.previous_keys.push_back({"", Base64Encode(TestKeyBytes(0)), ""});
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("encryption.previous_keys[2]: the same key as "
                                              "encryption.previous_keys[1]"));
}

TEST(KeyringFromConfigTest, KeyIdThatDoesNotMatchTheKeyIsRefused) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.key_id = MakeCipher(0).key_id();
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(),
              AllOf(HasSubstr("encryption.key_id: is " + MakeCipher(0).key_id()),
                    HasSubstr("has id " + MakeCipher(1).key_id())));
  e.key_id.clear();
  e.previous_keys.push_back({MakeCipher(1).key_id(), Base64Encode(TestKeyBytes(0)), ""});
  c = Cipher::FromConfig(e);
  EXPECT_THAT(c.status().message(), StartsWith("encryption.previous_keys[1].key_id: is "));
}

TEST(KeyringFromConfigTest, KeyIdThatIsNotAnIdIsNotEchoed) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes(1));
  e.key_id = Base64Encode(TestKeyBytes(0));  // a key pasted into the wrong field
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(c.status().message(), HasSubstr("8 lowercase hex digits"));
  EXPECT_THAT(c.status().message(), Not(HasSubstr(e.key_id)));
}

TEST(CipherFromConfigTest, KeyIsUsed) {
  EncryptionConfig e;
  e.key = Base64Encode(TestKeyBytes());
  StatusOr<Cipher> c = Cipher::FromConfig(e);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->key_id(), MakeCipher().key_id());
}

}  // namespace
}  // namespace tenantsync
