// Lsn: a PostgreSQL WAL position (XLogRecPtr). A type, not a string or a bare integer
// (STYLE.md rule 6): parse and format "X/X", compare, subtract for lag in bytes.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tenantsync {

class Lsn {
 public:
  constexpr Lsn() = default;  // 0/0, InvalidXLogRecPtr
  constexpr explicit Lsn(uint64_t value) : value_(value) {}

  // Parses "16/B374D848" (hex, upper or lower case). Anything else is kInvalidArgument.
  static StatusOr<Lsn> Parse(std::string_view text);

  constexpr uint64_t value() const { return value_; }
  constexpr bool valid() const { return value_ != 0; }
  std::string ToString() const;  // "16/B374D848"

  // Bytes from `older` to this position; 0 when `older` is ahead.
  constexpr uint64_t BytesSince(Lsn older) const {
    return value_ > older.value_ ? value_ - older.value_ : 0;
  }

  constexpr auto operator<=>(const Lsn&) const = default;

 private:
  uint64_t value_ = 0;
};

}  // namespace tenantsync
