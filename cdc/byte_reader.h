// ByteReader: a bounds-checked big-endian cursor over bytes received from the server.
//
// Every read names the field it reads, so an overrun reports "pgoutput Relation: column count at
// offset 7 needs 2 bytes, 1 left" instead of a wrong value: unlike readers that return 0 on
// underflow, a short message can never decode as a plausible one. Reads never allocate more
// than the bytes actually present (ReadBytes/ReadCString copy only what is in the buffer).
//
// Lifetime: the reader borrows `data`; views returned by the *View functions point into it and
// live as long as the caller's buffer. Not thread-safe (a cursor).
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tenantsync::cdc {

class ByteReader {
 public:
  // `context` prefixes every error message ("pgoutput Insert").
  ByteReader(std::span<const uint8_t> data, std::string_view context)
      : data_(data), context_(context) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return data_.size() - pos_; }
  bool AtEnd() const { return pos_ == data_.size(); }

  StatusOr<uint8_t> ReadU8(std::string_view field) {
    TS_RETURN_IF_ERROR(Need(1, field));
    return data_[pos_++];
  }
  StatusOr<uint16_t> ReadU16(std::string_view field) { return ReadBigEndian<uint16_t>(field); }
  StatusOr<uint32_t> ReadU32(std::string_view field) { return ReadBigEndian<uint32_t>(field); }
  StatusOr<uint64_t> ReadU64(std::string_view field) { return ReadBigEndian<uint64_t>(field); }
  StatusOr<int16_t> ReadI16(std::string_view field) {
    TS_ASSIGN_OR_RETURN(uint16_t v, ReadU16(field));
    return static_cast<int16_t>(v);
  }
  StatusOr<int32_t> ReadI32(std::string_view field) {
    TS_ASSIGN_OR_RETURN(uint32_t v, ReadU32(field));
    return static_cast<int32_t>(v);
  }
  StatusOr<int64_t> ReadI64(std::string_view field) {
    TS_ASSIGN_OR_RETURN(uint64_t v, ReadU64(field));
    return static_cast<int64_t>(v);
  }

  // A NUL-terminated string; the view excludes the NUL and points into the buffer.
  // A missing terminator is kCorruption.
  StatusOr<std::string_view> ReadCStringView(std::string_view field) {
    // memchr on an empty span would get a null pointer (UB even with length 0; UBSan reports it).
    const void* nul = remaining() == 0 ? nullptr : std::memchr(data_.data() + pos_, 0, remaining());
    if (nul == nullptr) {
      return Error(field, "has no terminating NUL in the " + std::to_string(remaining()) +
                              " bytes left");
    }
    size_t len = static_cast<const uint8_t*>(nul) - (data_.data() + pos_);
    std::string_view out(reinterpret_cast<const char*>(data_.data() + pos_), len);
    pos_ += len + 1;
    return out;
  }
  StatusOr<std::string> ReadCString(std::string_view field) {
    TS_ASSIGN_OR_RETURN(std::string_view v, ReadCStringView(field));
    return std::string(v);
  }

  // Exactly `n` bytes; kCorruption (before any allocation) when fewer remain.
  StatusOr<std::string_view> ReadBytesView(size_t n, std::string_view field) {
    TS_RETURN_IF_ERROR(Need(n, field));
    std::string_view out(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    return out;
  }
  StatusOr<std::string> ReadBytes(size_t n, std::string_view field) {
    TS_ASSIGN_OR_RETURN(std::string_view v, ReadBytesView(n, field));
    return std::string(v);
  }

  // kCorruption unless at least `n` bytes remain. Use before reserving memory for a count read
  // from the wire: `n` is the least number of bytes the counted items can occupy.
  Status Need(size_t n, std::string_view field) const {
    if (n > remaining()) {
      return Error(field, "needs " + std::to_string(n) + " bytes, " +
                              std::to_string(remaining()) + " left");
    }
    return Status::Ok();
  }

  // kCorruption unless every byte was consumed (trailing garbage is a framing error).
  Status ExpectEnd() const {
    if (!AtEnd()) {
      return Corruption(std::string(context_) + ": " + std::to_string(remaining()) +
                        " unexpected trailing bytes at offset " + std::to_string(pos_));
    }
    return Status::Ok();
  }

  // A kCorruption naming the context, field and current offset.
  Status Error(std::string_view field, std::string_view what) const {
    return Corruption(std::string(context_) + ": " + std::string(field) + " at offset " +
                      std::to_string(pos_) + " " + std::string(what));
  }

 private:
  template <typename T>
  StatusOr<T> ReadBigEndian(std::string_view field) {
    TS_RETURN_IF_ERROR(Need(sizeof(T), field));
    T v = LoadBigEndian<T>(data_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }

  // Out of line: GCC 12 otherwise reports -Warray-bounds on the (unreachable) load after a
  // failed Need() when a short test buffer is inlined.
  template <typename T>
  [[gnu::noinline]] static T LoadBigEndian(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    if constexpr (sizeof(T) == 2) return static_cast<T>(__builtin_bswap16(v));
    if constexpr (sizeof(T) == 4) return static_cast<T>(__builtin_bswap32(v));
    if constexpr (sizeof(T) == 8) return static_cast<T>(__builtin_bswap64(v));
  }

  std::span<const uint8_t> data_;
  std::string_view context_;
  size_t pos_ = 0;
};

}  // namespace tenantsync::cdc
