#include "core/lsn.h"

#include <charconv>
#include <cstdio>

namespace tenantsync {

StatusOr<Lsn> Lsn::Parse(std::string_view text) {
  auto slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == text.size() || slash > 8 ||
      text.size() - slash - 1 > 8) {
    return InvalidArgument("'" + std::string(text) + "' is not an LSN; write it as X/X in hex, e.g. 0/16B3748");
  }
  uint32_t hi = 0, lo = 0;
  auto r1 = std::from_chars(text.data(), text.data() + slash, hi, 16);
  auto r2 = std::from_chars(text.data() + slash + 1, text.data() + text.size(), lo, 16);
  if (r1.ec != std::errc() || r1.ptr != text.data() + slash || r2.ec != std::errc() ||
      r2.ptr != text.data() + text.size()) {
    return InvalidArgument("'" + std::string(text) + "' is not an LSN; write it as X/X in hex, e.g. 0/16B3748");
  }
  return Lsn((uint64_t{hi} << 32) | lo);
}

std::string Lsn::ToString() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<uint32_t>(value_ >> 32),
                static_cast<uint32_t>(value_));
  return buf;
}

}  // namespace tenantsync
