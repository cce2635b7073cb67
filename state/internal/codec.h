// Byte-level helpers for the state directory's keys and records.
//
// Keys use fixed-width big-endian integers so that RocksDB's bytewise order is numeric order
// (commit LSN order for the journal). Values use a length-prefixed layout: varints for lengths and
// counts, fixed-width big-endian integers for LSNs, times and fingerprints.
//
// ByteReader never reads past its span: every getter returns false on underflow and leaves the
// output unspecified, so a decoder can turn any malformed record into kCorruption (STYLE.md: a
// short read is never indistinguishable from a real 0).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tenantsync::state::internal {

// Appends `v` as 8 big-endian bytes.
void PutFixed64BE(std::string* out, uint64_t v);
void PutFixed32BE(std::string* out, uint32_t v);
// Appends a LEB128 varint (1..10 bytes).
void PutVarint64(std::string* out, uint64_t v);
// Appends varint length, then the bytes.
void PutLengthPrefixed(std::string* out, std::string_view s);

// Decodes 8 big-endian bytes. REQUIRES: 8 readable bytes at p.
uint64_t DecodeFixed64BE(const char* p);

// A 8-byte big-endian key.
std::string Key64(uint64_t v);
// A 16-byte key: `hi` then `lo`, both big-endian.
std::string Key64x2(uint64_t hi, uint64_t lo);
// The same key written over `*out` (reusing its capacity: no allocation per journaled change).
void AssignKey64x2(std::string* out, uint64_t hi, uint64_t lo);

class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}

  bool ReadU8(uint8_t* v);
  bool ReadFixed32BE(uint32_t* v);
  bool ReadFixed64BE(uint64_t* v);
  bool ReadVarint64(uint64_t* v);
  // A varint length followed by that many bytes; the view points into the input.
  bool ReadLengthPrefixed(std::string_view* v);

  size_t remaining() const { return data_.size() - pos_; }
  bool done() const { return pos_ == data_.size(); }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

// "0x00000000000016b3..." style hex of a key, for error messages.
std::string HexKey(std::string_view key);

}  // namespace tenantsync::state::internal
