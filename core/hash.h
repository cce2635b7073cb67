// FNV-1a, 64 bit: stable across builds and platforms (unlike std::hash), for fingerprints and
// names that must not change between versions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tenantsync {

struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  // The bytes as they are.
  void Bytes(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ull;
    }
  }
  // A field followed by a separator, so ("ab", "c") and ("a", "bc") differ.
  void Field(std::string_view s) {
    Bytes(s.data(), s.size());
    const unsigned char sep = 0xff;
    Bytes(&sep, 1);
  }
};

}  // namespace tenantsync
