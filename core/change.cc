#include "core/change.h"

namespace tenantsync {

namespace {

// FNV-1a, 64 bit: stable across builds and platforms, unlike std::hash.
struct Fnv {
  uint64_t h = 1469598103934665603ull;
  void Add(std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // separator, so ("ab","c") != ("a","bc")
    h *= 1099511628211ull;
  }
};

}  // namespace

uint64_t Relation::Fingerprint() const {
  Fnv f;
  f.Add(std::to_string(oid));
  f.Add(schema);
  f.Add(name);
  f.Add(std::string_view(&replica_identity, 1));
  for (const auto& c : columns) {
    f.Add(c.name);
    f.Add(c.type_name);
    f.Add(std::to_string(c.type_oid));
    f.Add(std::to_string(c.type_modifier));
    f.Add(c.is_key ? "k" : "-");
  }
  return f.h;
}

}  // namespace tenantsync
