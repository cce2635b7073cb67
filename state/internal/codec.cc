#include "state/internal/codec.h"

namespace tenantsync::state::internal {

void PutFixed64BE(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 8);
}

void PutFixed32BE(std::string* out, uint32_t v) {
  char buf[4];
  for (int i = 3; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 4);
}

void PutVarint64(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutVarint64(out, s.size());
  out->append(s.data(), s.size());
}

uint64_t DecodeFixed64BE(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

std::string Key64(uint64_t v) {
  std::string k;
  k.reserve(8);
  PutFixed64BE(&k, v);
  return k;
}

std::string Key64x2(uint64_t hi, uint64_t lo) {
  std::string k;
  AssignKey64x2(&k, hi, lo);
  return k;
}

void AssignKey64x2(std::string* out, uint64_t hi, uint64_t lo) {
  out->clear();
  out->reserve(16);
  PutFixed64BE(out, hi);
  PutFixed64BE(out, lo);
}

bool ByteReader::ReadU8(uint8_t* v) {
  if (remaining() < 1) return false;
  *v = static_cast<uint8_t>(data_[pos_++]);
  return true;
}

bool ByteReader::ReadFixed32BE(uint32_t* v) {
  if (remaining() < 4) return false;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r = (r << 8) | static_cast<unsigned char>(data_[pos_ + i]);
  pos_ += 4;
  *v = r;
  return true;
}

bool ByteReader::ReadFixed64BE(uint64_t* v) {
  if (remaining() < 8) return false;
  *v = DecodeFixed64BE(data_.data() + pos_);
  pos_ += 8;
  return true;
}

bool ByteReader::ReadVarint64(uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63; shift += 7) {
    if (remaining() < 1) return false;
    uint8_t b = static_cast<uint8_t>(data_[pos_++]);
    if (shift == 63 && (b & 0xfe) != 0) return false;  // more than 64 bits
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = r;
      return true;
    }
  }
  return false;
}

bool ByteReader::ReadLengthPrefixed(std::string_view* v) {
  uint64_t n = 0;
  if (!ReadVarint64(&n)) return false;
  if (n > remaining()) return false;
  *v = data_.substr(pos_, n);
  pos_ += n;
  return true;
}

std::string HexKey(std::string_view key) {
  static const char kHex[] = "0123456789abcdef";
  std::string s = "0x";
  for (unsigned char c : key) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 0xf]);
  }
  return s;
}

}  // namespace tenantsync::state::internal
