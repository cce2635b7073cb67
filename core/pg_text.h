// PostgreSQL's own text output of dates and timestamps (DateStyle ISO), parsed exactly; hex
// digits; big-endian appends for its binary formats. Pure functions, unit-tested in
// pg_text_test.cc.
//
// Only what the server's output functions write is accepted: "YYYY-MM-DD" with a four-digit year
// 0001-9999 (no " BC", no infinity), "HH:MM:SS" with at most six fraction digits, an offset
// "+HH[:MM[:SS]]" or "-..." up to 15:59:59. Every field is range-checked (February 29th only in
// leap years). Anything else returns false, so a caller can leave the value to the server.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tenantsync {

// "YYYY-MM-DD" -> days since 1970-01-01.
bool ParseIsoDate(std::string_view text, int64_t* unix_days);

// "YYYY-MM-DD HH:MM:SS[.ffffff]", followed by the offset when `with_offset` (timestamptz_out)
// and by nothing otherwise (timestamp_out) -> microseconds since 1970-01-01 00:00 (UTC when the
// offset is given).
bool ParseIsoTimestamp(std::string_view text, bool with_offset, int64_t* unix_micros);

// 0-15 for a hex digit (either case), -1 for any other character.
inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline void AppendBigEndian32(uint32_t v, std::string* out) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}

inline void AppendBigEndian64(uint64_t v, std::string* out) {
  AppendBigEndian32(static_cast<uint32_t>(v >> 32), out);
  AppendBigEndian32(static_cast<uint32_t>(v), out);
}

}  // namespace tenantsync
